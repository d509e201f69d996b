"""FlashAttention 4's Hopper tile configs for golf's document-masked attention, on real documents.

FA4 picks its sm90 tiles by head dim alone (flash_attn/cute/interface.py `_tile_size_fwd_sm90`,
`_tile_size_bwd_sm90`, tuned on H100 at fixed sequence lengths): 192 x 128 forward and 128 x 128 backward
at head dim 64. golf's micro-batches are packed documents (model.doc_masked_attention), most far shorter
than the 2,048-token row, so a document's last tile is often mostly empty; smaller tiles would waste less
of it. They did not pay: on the H200 FA4's defaults were the fastest of every config here (BENCHMARKS.md,
eighteenth session).
This sweep times the varlen forward and backward, as golf/kernels/fa4.py calls them, for a set of
configs on the cu_seqlens golf's loader builds from a tokens folder, and prints GPU kernel time per call
(torch.profiler, every kernel the call launches: the backward's preprocess, accumulator fills and
postprocess included), fastest first, with TFLOP/s counted on the causal pairs inside documents and the
largest difference from the default config's outputs.

    python bench/fa4_configs.py --tokens data/tokens           # the h100 preset's micro-batch: 48 x 2,048
    python bench/fa4_configs.py --tokens data/tokens --quick   # 3 timed walks per config

The forward takes its tiles as arguments (`tile_mn`, `mma_pv_is_rs`, `intra_wg_overlap`); the
backward's sm90 config is not an argument, so the sweep swaps FA4's `_tile_size_bwd_sm90` for the
duration of one config. Each config is its own CuTe JIT compile (seconds each). Needs a Hopper GPU
and flash-attn-4.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
from pathlib import Path

import numpy as np
import torch
from kernel_time import kernel_us

# (tile_m, tile_n, P @ V from registers, intra-warpgroup overlap); the first is FA4's head-dim-64 default
FWD_CONFIGS = [(192, 128, True, True), (128, 128, True, True), (128, 192, True, True), (128, 160, True, True),
               (128, 176, True, True), (128, 128, True, False), (64, 128, True, True), (192, 192, True, False)]

# FA4's BwdConfig fields past the tiles: (tile_m, tile_n, Q stages, dO stages, PdS stages, SdP swapAB, dKV swapAB,
# dQ swapAB, AtomLayoutMSdP, AtomLayoutNdKV, AtomLayoutMdQ); the first is FA4's head-dim-64 default, the rest
# from its feasibility search (flash_attn/cute/sm90_config_search.py --mode bwd --headdim 64). Left out: tile_m
# 80 and 112 (dQ swapAB), which abort the process in flash-attn-4 4.0.0b36 (eighteenth session)
BWD_CONFIGS = [(128, 128, 2, 2, 2, True, False, False, 1, 2, 2), (64, 128, 2, 2, 2, True, False, False, 1, 2, 1),
               (64, 128, 2, 2, 2, True, False, True, 1, 2, 2), (96, 128, 2, 2, 2, True, False, True, 1, 2, 2),
               (128, 96, 2, 2, 2, False, True, False, 2, 2, 2), (128, 64, 2, 2, 2, False, True, False, 2, 2, 2),
               (64, 96, 2, 2, 2, False, True, False, 1, 2, 1)]


def micro_batches(tokens_dir: Path, seqs: int, seq_len: int, count: int) -> list[torch.Tensor]:
    """cu_seqlens (int32, CUDA) of the first `count` micro-batches golf's loader draws at seed 42, step 0."""
    from golf.artifact.shards import list_shards, read_shard
    from golf.train.data import WindowLoader

    bos = json.loads((tokens_dir / "manifest.json").read_text())["bos_id"]
    tokens = np.concatenate([read_shard(p) for p in list_shards(tokens_dir, "train")])
    loader = WindowLoader(tokens, seq_len, seqs * count, count, 0, 1, 42, torch.device("cpu"), bos_id=bos)
    return [cu.cuda() for _, _, cu in loader.batch(0)]


def pair_flops(cus: list[torch.Tensor], heads: int, head_dim: int) -> float:
    """Forward FLOPs per call: 2 matmuls x 2 x heads x head_dim per causal pair inside a document, averaged."""
    n = [torch.diff(cu.long()).double() for cu in cus]
    return sum(4 * heads * head_dim * float((x * (x + 1) / 2).sum()) for x in n) / len(cus)


@contextlib.contextmanager
def sm90_bwd_tiles(config: tuple):
    """FA4's Hopper backward config replaced by `config` (BwdConfig's fields in order) while the block runs.
    Its compile cache keys on every field swept here (flash_attn/cute/interface.py `_flash_attn_bwd`), so
    each config compiles its own kernel."""
    import flash_attn.cute.interface as fi

    names = [f.name for f in dataclasses.fields(fi.BwdConfig)]
    original = fi._tile_size_bwd_sm90
    fi._tile_size_bwd_sm90 = lambda *args, **kwargs: fi.BwdConfig(**dict(zip(names, config)))
    try:
        yield
    finally:
        fi._tile_size_bwd_sm90 = original


def sweep(label: str, configs: list, run, calls: int, reps: int, flop: float) -> list[dict]:
    """Each config's kernel us per FA4 call (`run` makes `calls`), its TFLOP/s and its outputs' max
    |difference| from the first config's."""
    rows, want = [], None
    for cfg in configs:
        row = {"config": cfg}
        try:
            out = run(cfg)  # also the JIT compile
            want = out if want is None else want
            row["max_diff"] = max(float((a.float() - b.float()).abs().max()) for a, b in zip(out, want))
            row["us"] = kernel_us(lambda: run(cfg), reps)[0] / calls
            row["tflops"] = flop / row["us"] / 1e6
        except Exception as e:  # a config this FA4 cannot build says why; the rest go on
            row["error"] = f"{type(e).__name__}: {str(e).splitlines()[0][:100] if str(e) else ''}"
        rows.append(row)
        print(f"  {label} {cfg}: " + (f"{row['us']:.1f} us" if "us" in row else row["error"]), flush=True)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tokens", type=Path, required=True, help="a golf tokens folder (manifest.json, train shards)")
    ap.add_argument("--seqs", type=int, default=48, help="rows per micro-batch (h100 preset: 48)")
    ap.add_argument("--seq-len", type=int, default=2048, help="tokens per row")
    ap.add_argument("--micro", type=int, default=4, help="distinct micro-batches' documents each timing walks")
    ap.add_argument("--heads", type=int, default=8)
    ap.add_argument("--kv-heads", type=int, default=4)
    ap.add_argument("--head-dim", type=int, default=64)
    ap.add_argument("--reps", type=int, default=10, help="timed walks over the micro-batches per config")
    ap.add_argument("--quick", action="store_true", help="3 walks per config")
    ap.add_argument("--json", type=Path, help="also write the rows here")
    a = ap.parse_args()
    reps = 3 if a.quick else a.reps
    if not torch.cuda.is_available() or torch.cuda.get_device_capability()[0] != 9:
        raise SystemExit("fa4_configs needs a Hopper GPU (compute capability 9)")
    from flash_attn.cute.interface import _flash_attn_bwd, _flash_attn_fwd

    cus = micro_batches(a.tokens, a.seqs, a.seq_len, a.micro)
    n = a.seqs * a.seq_len
    g = torch.Generator(device="cuda").manual_seed(0)
    rand = lambda h: torch.randn(n, h, a.head_dim, device="cuda", generator=g).to(torch.bfloat16)  # noqa: E731
    q, k, v = rand(a.heads), rand(a.kv_heads), rand(a.kv_heads)
    dout = rand(a.heads)
    kw = dict(max_seqlen_q=a.seq_len, max_seqlen_k=a.seq_len, causal=True)
    fwd_outs = [_flash_attn_fwd(q, k, v, cu_seqlens_q=cu, cu_seqlens_k=cu, return_lse=True, **kw)[:2] for cu in cus]

    def fwd(cfg):
        tm, tn, rs, overlap = cfg
        return [_flash_attn_fwd(q, k, v, cu_seqlens_q=cu, cu_seqlens_k=cu, tile_mn=(tm, tn), mma_pv_is_rs=rs,
                                intra_wg_overlap=overlap, **kw)[0] for cu in cus]

    def bwd(cfg):
        with sm90_bwd_tiles(cfg):
            return [t for cu, (o, lse) in zip(cus, fwd_outs)
                    for t in _flash_attn_bwd(q, k, v, o, dout, lse, cu_seqlens_q=cu, cu_seqlens_k=cu, **kw)[:3]]

    flop = pair_flops(cus, a.heads, a.head_dim)
    docs = sum(len(cu) - 1 for cu in cus) / len(cus)
    print(f"{torch.cuda.get_device_name()}: {a.micro} micro-batches of {a.seqs} x {a.seq_len} tokens from {a.tokens}, "
          f"{docs:.0f} documents each (row starts count), H={a.heads} Hkv={a.kv_heads} D={a.head_dim}; "
          f"kernel us per call, mean of {reps} walks")
    rows = {"fwd": sweep("fwd", FWD_CONFIGS, fwd, len(cus), reps, flop),
            "bwd": sweep("bwd", BWD_CONFIGS, bwd, len(cus), reps, 2.5 * flop)}
    for kind, label in (("fwd", "forward (tile_m, tile_n, rs, overlap)"),
                        ("bwd", "backward (tile_m, tile_n, stages Q/dO/PdS, swapAB SdP/dKV/dQ, atoms SdP/dKV/dQ)")):
        print(f"\n| {label} | us per call | TFLOP/s | vs default | max abs diff from default |")
        print("|---|---:|---:|---:|---:|")
        base = rows[kind][0].get("us")
        for r in sorted(rows[kind], key=lambda r: r.get("us", float("inf"))):
            name = str(r["config"]) + (" (FA4's default)" if r is rows[kind][0] else "")
            if "error" in r:
                print(f"| {name} | failed: {r['error']} | | | |")
            else:
                ratio = f"{base / r['us']:.3f}x" if base else ""
                print(f"| {name} | {r['us']:.1f} | {r['tflops']:.0f} | {ratio} | {r['max_diff']:.2e} |")
    if a.json:
        a.json.write_text(json.dumps({k: [{**r, "config": list(r["config"])} for r in v] for k, v in rows.items()},
                                     indent=1))


if __name__ == "__main__":
    main()
