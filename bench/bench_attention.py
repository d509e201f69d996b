"""Causal GQA attention kernels at the record's shape (forward + backward), one GPU.

    python bench/bench_attention.py            # B=48 T=2048 H=8 Hkv=4 D=64 bf16, 20 timed iterations
    python bench/bench_attention.py --quick    # 5 iterations

Compares SDPA's flash, memory-efficient and cuDNN kernels (with enable_gqa, and with K/V expanded
to every query head as golf's "cudnn" backend does) and any flash-attn package that imports.
FLOPs: causal attention forward = 2 matmuls x 2 x B x H x T^2 x D / 2; backward = 2.5 x forward.
"""

from __future__ import annotations

import argparse
import contextlib
import json

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


def time_ms(fn, q, k, v, iters: int) -> float:
    """Median ms of forward + backward (grad of sum(y * dy))."""
    dy = torch.randn_like(q)
    times = []
    for i in range(iters + 3):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        y = fn(q, k, v)
        torch.autograd.backward(y, dy)
        end.record()
        torch.cuda.synchronize()
        if i >= 3:
            times.append(start.elapsed_time(end))
    return sorted(times)[len(times) // 2]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch", type=int, default=48)
    ap.add_argument("--seq", type=int, default=2048)
    ap.add_argument("--heads", type=int, default=8)
    ap.add_argument("--kv-heads", type=int, default=4)
    ap.add_argument("--head-dim", type=int, default=64)
    ap.add_argument("--iters", type=int, default=20)
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

    for name in ("fa3", "fa4", "fa2"):
        fn = _load(name)
        if fn is not None:
            variants[name] = lambda q, k, v, fn=fn: (lambda y: y[0] if isinstance(y, tuple) else y)(fn(q, k, v, causal=True))
    print(torch.cuda.get_device_name(), "torch", torch.__version__, "cudnn", torch.backends.cudnn.version())
    print(f"B={b} T={t} H={h} Hkv={hk} D={d} bf16 causal, forward + backward, median of {iters}")
    print("| kernel | ms | TFLOP/s |\n|---|---:|---:|")
    out = {}
    for name, fn in variants.items():
        try:
            ms = time_ms(fn, q, k, v, iters)
        except Exception as e:  # a kernel that cannot run this shape says so and the rest go on
            print(f"| {name} | unsupported: {str(e).splitlines()[0][:80]} | |")
            continue
        out[name] = ms
        print(f"| {name} | {ms:.2f} | {flops / ms / 1e9:.0f} |")
    print(json.dumps(out))


if __name__ == "__main__":
    main()
