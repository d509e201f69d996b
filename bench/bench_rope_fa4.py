"""golf::rope_fa4's backward (golf/kernels/rope_fa4.py: dQ / dK read from FA4's fp32 accumulators) against
FA4's backward then golf::qk_rope_backward on the bf16 dq / dk FA4 writes (what train.fused_qk_fa4 = false
runs), on the documents of golf's own micro-batches at the record's shapes (48 x 2,048 tokens, q 8 heads and
k, v 4 heads of 64 dims, 16 rotated): the kernels' device us per call (torch.profiler, bench/kernel_time.py),
the kernels whose time differs, and how far apart the two paths' d q / d k are.

    python bench/bench_rope_fa4.py --tokens .device-data/tokens
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from fa4_configs import micro_batches
from kernel_time import kernel_us

from golf.artifact.model.attention import Rotary
from golf.kernels import fa4, rope_fa4
from golf.kernels.qk_rope import _qk_rope_backward, rope_tables
from golf.kernels.rope_fa4 import _flat as flat

ROPE_DIMS = 16


def differing(fused: dict[str, float], separate: dict[str, float]) -> str:
    """'name us separate -> us fused, ...' for the kernels whose time per call differs by over 2 us (names cut to
    50 characters): FA4's postprocess runs 3 times a call in the separate path, once in the fused one."""
    names = sorted(set(fused) | set(separate), key=lambda n: -abs(fused.get(n, 0) - separate.get(n, 0)))
    return "; ".join(f"{n[:50]} {separate.get(n, 0):.0f} -> {fused.get(n, 0):.0f}" for n in names
                     if abs(fused.get(n, 0) - separate.get(n, 0)) > 2)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tokens", type=Path, required=True, help="a golf tokens folder (manifest.json, train shards)")
    ap.add_argument("--seqs", type=int, default=48, help="rows per micro-batch")
    ap.add_argument("--seq-len", type=int, default=2048, help="tokens per row")
    ap.add_argument("--micro", type=int, default=2, help="micro-batches timed (each its own documents)")
    a = ap.parse_args()
    if not fa4.available():
        raise SystemExit(f"bench_rope_fa4: {fa4.unavailable_reason()}")
    dev, t = torch.device("cuda"), a.seq_len
    cos, sin = rope_tables(Rotary(ROPE_DIMS, 10000.0).to(dev)(t, dev))
    gain = torch.full((8,), 5.0, device=dev)
    q = torch.randn(a.seqs, t, 8, 64, device=dev, dtype=torch.bfloat16)
    k, v = (torch.randn(a.seqs, t, 4, 64, device=dev, dtype=torch.bfloat16) for _ in range(2))
    print(f"{torch.cuda.get_device_name()}: {a.micro} micro-batches of {a.seqs} x {t} tokens from {a.tokens}\n")
    print("| micro-batch (documents) | FA4 bwd + qk_rope bwd us | rope_fa4 bwd us | kernels that differ, us | "
          "d q, d k apart (rel. norm) |\n|---|---:|---:|---|---|")
    for i, cu in enumerate(micro_batches(a.tokens, a.seqs, t, a.micro)):
        out, lse, qr, kr = rope_fa4.rope_fa4(q, k, v, cos, sin, gain, cu, ROPE_DIMS)
        dout = torch.randn_like(out)

        def separate():
            dq, dk, _ = fa4.fa4_bwd(flat(qr), flat(kr), flat(v), flat(out), flat(dout), lse, cu, t)
            return (_qk_rope_backward(q, dq.view(q.shape), cos, sin, gain, ROPE_DIMS)[0],
                    _qk_rope_backward(k, dk.view(k.shape), cos, sin, None, ROPE_DIMS)[0])

        def fused():
            return rope_fa4.rope_fa4_bwd(q, k, v, qr, kr, out, dout, lse, cos, sin, gain, cu, ROPE_DIMS)[:2]

        apart = ", ".join(f"{float((x.float() - y.float()).norm() / y.float().norm()):.1e}"
                          for x, y in zip(fused(), separate()))
        (sep_us, sep_k), (fused_us, fused_k) = kernel_us(separate), kernel_us(fused)
        print(f"| {i} ({cu.numel() - 1}) | {sep_us:.0f} | {fused_us:.0f} | {differing(fused_k, sep_k)} | {apart} |")


if __name__ == "__main__":
    main()
