"""Causal GQA attention kernels at the record's shape (forward + backward), one GPU.

    python bench/bench_attention.py            # B=48 T=2048 H=8 Hkv=4 D=64 bf16, 20 timed iterations
    python bench/bench_attention.py --quick    # 5 iterations

Compares SDPA's flash, memory-efficient and cuDNN kernels (with enable_gqa, and with K/V expanded
to every query head as golf's "cudnn" backend does), any flash-attn package that imports, and
FlashAttention 4 both through golf's custom ops (golf/kernels/fa4.py, what training runs) and
through its own graph-breaking autograd.Function: the difference is the ops' overhead. With
documents of --doc-len tokens (model.doc_masked_attention): FA4 varlen and SDPA with the boolean
document mask (the fallback), their TFLOP/s counted on the work inside documents only; FA4 varlen also
with K/V expanded to every query head (the copy and the gradient's sum timed with it).
FLOPs: causal attention forward = 2 matmuls x 2 x B x H x T^2 x D / 2; backward = 2.5 x forward.
`host ms`: the CPU time to issue one forward + backward (Python and launch overhead; when it is
above the GPU time, the GPU waits on the CPU).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import time

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel


def sdpa(kernel: SDPBackend | None, expand: bool):
    def run(q, k, v):
        if expand:
            g = q.size(2) // k.size(2)
            k, v = k.repeat_interleave(g, dim=2), v.repeat_interleave(g, dim=2)
        with sdpa_kernel(kernel) if kernel is not None else contextlib.nullcontext():
            y = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2),
                                               is_causal=True, enable_gqa=q.size(2) != k.size(2))
        return y.transpose(1, 2)
    return run


def time_ms(fn, q, k, v, iters: int) -> tuple[float, float]:
    """Median (GPU ms, host ms) of forward + backward (grad of sum(y * dy))."""
    dy = torch.randn_like(q)
    times, host = [], []
    for i in range(iters + 3):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        t0 = time.perf_counter()
        y = fn(q, k, v)
        torch.autograd.backward(y, dy)
        host_ms = (time.perf_counter() - t0) * 1e3
        end.record()
        torch.cuda.synchronize()
        if i >= 3:
            times.append(start.elapsed_time(end))
            host.append(host_ms)
    return sorted(times)[len(times) // 2], sorted(host)[len(host) // 2]


def documents(b: int, t: int, doc_len: int) -> tuple[torch.Tensor, torch.Tensor, float]:
    """(cu_seqlens over the flattened rows, the (B, 1, T, T) SDPA mask, causal pairs inside documents)
    for rows cut into documents of doc_len tokens (the last of each row shorter)."""
    from golf.artifact.model.attention import doc_cu_seqlens, doc_mask

    idx = torch.zeros(b, t, dtype=torch.long, device="cuda")
    idx[:, ::doc_len] = 1  # BOS
    lens = [min(doc_len, t - s) for s in range(0, t, doc_len)]
    return doc_cu_seqlens(idx, 1), doc_mask(idx, 1), b * sum(n * (n + 1) / 2 for n in lens)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch", type=int, default=48)
    ap.add_argument("--seq", type=int, default=2048)
    ap.add_argument("--heads", type=int, default=8)
    ap.add_argument("--kv-heads", type=int, default=4)
    ap.add_argument("--head-dim", type=int, default=64)
    ap.add_argument("--iters", type=int, default=20)
    ap.add_argument("--doc-len", type=int, default=512, help="tokens per document for the masked kernels")
    ap.add_argument("--quick", action="store_true")
    a = ap.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("bench_attention needs a CUDA GPU")
    iters = 5 if a.quick else a.iters
    b, t, h, hk, d = a.batch, a.seq, a.heads, a.kv_heads, a.head_dim
    g = torch.Generator(device="cuda").manual_seed(0)
    mk = lambda n: torch.randn(b, t, n, d, device="cuda", dtype=torch.bfloat16, generator=g).requires_grad_()  # noqa: E731
    q, k, v = mk(h), mk(hk), mk(hk)
    flops = 3.5 * 2 * 2 * b * h * t * t * d / 2
    variants = {"sdpa default (gqa)": sdpa(None, False),  # torch's own pick: what golf's "sdpa" backend gets
                "sdpa flash (gqa)": sdpa(SDPBackend.FLASH_ATTENTION, False),
                "sdpa efficient (gqa)": sdpa(SDPBackend.EFFICIENT_ATTENTION, False),
                "sdpa cudnn (gqa)": sdpa(SDPBackend.CUDNN_ATTENTION, False),
                "sdpa cudnn (K/V expanded)": sdpa(SDPBackend.CUDNN_ATTENTION, True),
                "sdpa flash (K/V expanded)": sdpa(SDPBackend.FLASH_ATTENTION, True)}
    from golf.artifact.model.attention import _load
    from golf.kernels import fa4

    first = lambda y: y[0] if isinstance(y, tuple) else y  # noqa: E731 (some versions also return the LSE)
    for name in ("fa3", "fa2"):
        fn = _load(name)
        if fn is not None:
            variants[name] = lambda q, k, v, fn=fn: first(fn(q, k, v, causal=True))
    if fa4.available():
        from flash_attn.cute import flash_attn_func

        variants["fa4 (golf.kernels.fa4 op)"] = fa4.attention
        variants["fa4 (flash_attn.cute autograd.Function)"] = lambda q, k, v: first(flash_attn_func(q, k, v, causal=True))
    cu, mask, pairs = documents(b, t, a.doc_len)
    doc_flops = 3.5 * 2 * 2 * h * d * pairs
    flat = lambda x: x.reshape(b * t, *x.shape[2:])  # noqa: E731
    if fa4.available():
        variants[f"fa4 varlen, {a.doc_len}-token docs"] = \
            lambda q, k, v: fa4.varlen_attention(flat(q), flat(k), flat(v), cu, t).view(q.shape)
        # every query head its own K/V (the copies timed with it): FA4's backward then stores dK and dV
        # directly, without GQA's fp32 accumulators, their zero fills and their postprocess
        variants[f"fa4 varlen, K/V expanded, {a.doc_len}-token docs"] = \
            lambda q, k, v: fa4.varlen_attention(flat(q), *(flat(x.repeat_interleave(h // hk, 2)) for x in (k, v)),
                                                 cu, t).view(q.shape)
    variants[f"sdpa + document mask, {a.doc_len}-token docs"] = lambda q, k, v: F.scaled_dot_product_attention(
        q.transpose(1, 2), *(x.repeat_interleave(h // hk, 2).transpose(1, 2) for x in (k, v)),
        attn_mask=mask).transpose(1, 2)
    work = {name: doc_flops if "docs" in name else flops for name in variants}
    print(torch.cuda.get_device_name(), "torch", torch.__version__, "cudnn", torch.backends.cudnn.version())
    print(f"B={b} T={t} H={h} Hkv={hk} D={d} bf16 causal, forward + backward, median of {iters}")
    print("| kernel | ms | TFLOP/s | host ms |\n|---|---:|---:|---:|")
    out = {}
    for name, fn in variants.items():
        try:
            ms, host = time_ms(fn, q, k, v, iters)
        except Exception as e:  # a kernel that cannot run this shape says so and the rest go on
            print(f"| {name} | unsupported: {str(e).splitlines()[0][:80]} | | |")
            continue
        out[name] = {"ms": ms, "host_ms": host}
        print(f"| {name} | {ms:.2f} | {work[name] / ms / 1e9:.0f} | {host:.2f} |")
    print(json.dumps(out))


if __name__ == "__main__":
    main()
