"""Codec benchmark: size and encode/decode time of our container per codec, shuffle on/off,
per-group vs whole, against plain brotli-11 over torch.save's bytes, on a synthetic quantized
model shaped like the records' (11 layers, d=512, MLP 4x, GQA: ~31.7M int6 codes from Gaussian
weights with k=12.85 std clipping, plus an 8192x512 int7 embedding with k=14).

    python bench/bench_codecs.py            # record size (slow on CPU: brotli-11 ~1 MB/s)
    python bench/bench_codecs.py --quick    # d=256, 2 layers, vocab 1024 (~1.7M codes)
    python bench/bench_codecs.py --workers 16 --chunked   # record size: the per-group layout only,
                                            # one stream per section vs 4 MiB chunks, each codec
    python bench/bench_codecs.py --qmodel artifacts/prune_to_budget/qmodel.safetensors --workers 16
                                            # a real quantized model (or a model.golf artifact):
                                            # plain brotli-11 vs the compress stage's settings
                                            # (params.yaml), at each --chunks size
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import time
from pathlib import Path

import brotli
import torch

from golf.artifact.container import decode
from golf.compress import container
from golf.compress.config import CompressConfig


def quantize(w: torch.Tensor, k: float, r: int) -> tuple[torch.Tensor, torch.Tensor]:
    s = (k * w.std(dim=1) / r).clamp_min(1e-10).half()
    return torch.clamp(torch.round(w / s.float()[:, None]), -r, r).to(torch.int8), s


def model(dim: int, layers: int, vocab: int, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    t = {}
    t["tok_emb.weight.q"], t["tok_emb.weight.scale"] = quantize(torch.randn(vocab, dim, generator=g), 14.0, 63)
    kv = dim // 2
    shapes = {"attn.c_q": (dim, dim), "attn.c_k": (kv, dim), "attn.c_v": (kv, dim), "attn.proj": (dim, dim),
              "mlp.fc": (4 * dim, dim), "mlp.proj": (dim, 4 * dim)}
    for i in range(layers):
        for name, shape in shapes.items():
            w = torch.randn(*shape, generator=g) * (0.5 + torch.rand(shape[0], 1, generator=g))
            t[f"blocks.{i}.{name}.weight.q"], t[f"blocks.{i}.{name}.weight.scale"] = quantize(w, 12.85, 31)
        for n in ("attn_scale", "mlp_scale", "q_gain"):
            t[f"blocks.{i}.{n}"] = (1 + 0.1 * torch.randn(dim, generator=g)).half()
    return t


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--chunked", action="store_true", help="per-group only: whole sections vs 4 MiB chunks")
    ap.add_argument("--qmodel", help="a golf.qmodel file (quantize/prune output) or a model.golf artifact instead "
                                     "of the synthetic model; compares plain brotli-11 with params.yaml's compress "
                                     "settings only")
    ap.add_argument("--chunks", default="", help="with --qmodel: comma-separated chunk_bytes to try "
                                                 "(default: params.yaml's)")
    ap.add_argument("--params", default="params.yaml", help="with --qmodel: whose `compress` section to use")
    ap.add_argument("--no-plain", action="store_true", help="skip plain brotli-11 over torch.save (slow)")
    a = ap.parse_args()
    base = CompressConfig(codec="brotli", brotli_quality=11, brotli_lgwin=24, zstd_level=22, lzma_preset=9,
                          lzma_extreme=False, byte_shuffle_stride=2, transpose=True, per_group=True,
                          workers=a.workers, chunk_bytes=0)
    if a.qmodel:
        from golf.params import load_section
        from golf.quant.qmodel import load_qmodel

        if a.qmodel.endswith(".golf"):
            t, header = decode(Path(a.qmodel).read_bytes(), a.workers)
        else:
            t, header = load_qmodel(a.qmodel)
        base = dataclasses.replace(load_section(Path(a.params), "compress", CompressConfig), workers=a.workers)
        what = a.qmodel
    else:
        dim, layers, vocab = (256, 2, 1024) if a.quick else (512, 11, 8192)
        t = model(dim, layers, vocab)
        header = {"format": "golf.qmodel", "version": 1, "model": {"dim": dim, "layers": layers}}
        what = f"synthetic model ({'quick' if a.quick else 'record size'})"
    codes = sum(v.numel() for k, v in t.items() if k.endswith(".q"))
    print(f"{what}: {codes:,} int8 codes, workers={a.workers}\n")
    print("| layout | codec | shuffle | transpose | chunk | bytes | bits/code | vs plain | encode s | decode s |")
    print("|---|---|---|---|---:|---:|---:|---:|---:|---:|")
    plain = b""
    if not a.no_plain:
        buf = io.BytesIO()
        torch.save({"w": t, "m": header}, buf)
        t0 = time.perf_counter()
        plain = brotli.compress(buf.getvalue(), quality=11, lgwin=24)
        enc = time.perf_counter() - t0
        t0 = time.perf_counter()
        brotli.decompress(plain)
        dec = time.perf_counter() - t0
        print(f"| torch.save | brotli-11 | - | - | - | {len(plain):,} | {8 * len(plain) / codes:.3f} | 1.0000 | "
              f"{enc:.2f} | {dec:.2f} |")
    if a.qmodel:
        chunks = [int(c) for c in a.chunks.split(",")] if a.chunks else [base.chunk_bytes]
        grid = [(base.per_group, base.codec, base.byte_shuffle_stride, base.transpose, c) for c in chunks]
    elif a.chunked:
        grid = [(True, codec, 2, True, chunk) for codec in ("brotli", "zstd", "lzma") for chunk in (0, 4 << 20)]
    else:
        grid = [(per_group, codec, stride, tr, 0) for per_group in (False, True)
                for codec in ("brotli", "zstd", "lzma", "auto") for stride in (1, 2)
                for tr in ((False, True) if per_group and stride == 2 else (per_group,))]
    for per_group, codec, stride, tr, chunk in grid:
        cfg = dataclasses.replace(base, codec=codec, per_group=per_group, byte_shuffle_stride=stride,
                                  transpose=tr, chunk_bytes=chunk)
        t0 = time.perf_counter()
        blob = container.encode(t, header, cfg)
        enc = time.perf_counter() - t0
        t0 = time.perf_counter()
        back, _ = decode(blob, a.workers)
        dec = time.perf_counter() - t0
        assert all(torch.equal(back[k], v) for k, v in t.items())
        vs_plain = len(blob) / len(plain) if plain else float("nan")
        print(f"| {'per-group' if per_group else 'whole'} | {codec} | {stride} | {tr} | {chunk:,} | {len(blob):,} | "
              f"{8 * len(blob) / codes:.3f} | {vs_plain:.4f} | {enc:.2f} | {dec:.2f} |", flush=True)


if __name__ == "__main__":
    main()
