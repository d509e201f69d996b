"""The record's GEMMs with a short K (the attention projections and the CE head's logits), which ran at
470-575 TFLOP/s in golf's step against 690-780 for the rest (BENCHMARKS.md, fourteenth session): cuBLAS
(torch.mm, as inductor calls it) against quack's Hopper GEMM (its own pick for the shape), GPU kernel time
and TFLOP/s per call, with the MLP's proj forward (K = 2,048) as a fast reference, and q, k, v as one GEMM
(N or K = 1,024; the eighth session tried it in the step and reverted it) for what fusing them would give.

    python bench/bench_proj_gemm.py [--iters 10] [--no-quack]

Operands as training has them: x (M, K) row-major times W^T of an nn.Linear weight W (N, K) (`nt`), or
the backward's dy (M, N) times W (`nn`, dx). Kernel time from torch.profiler (bench/bench_kernels.py
`gpu_ms`), the mean over --iters calls. Needs a Hopper GPU; quack's columns need quack-kernels (the gpu
extra). The last column compares quack's output with cuBLAS's.
"""

from __future__ import annotations

import argparse

import torch
from bench_kernels import gpu_ms

# name: (M, K, N, layout, what it is in the record's step)
SHAPES = {
    "q_fwd": (98_304, 512, 512, "nt", "q / out projection forward"),
    "q_dx": (98_304, 512, 512, "nn", "q / out projection dx"),
    "kv_fwd": (98_304, 512, 256, "nt", "k or v projection forward"),
    "kv_dx": (98_304, 256, 512, "nn", "k or v projection dx"),
    "qkv_fwd": (98_304, 512, 1_024, "nt", "q, k, v as one GEMM forward (not golf's step)"),
    "qkv_dx": (98_304, 1_024, 512, "nn", "q, k, v as one GEMM dx (not golf's step)"),
    "head_logits": (16_384, 512, 8_192, "nt", "the CE head's logits, one chunk"),
    "mlp_proj_fwd": (98_304, 2_048, 512, "nt", "MLP proj forward (reference)"),
}


def operands(m: int, k: int, n: int, layout: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(A (M, K) row-major, B (K, N): W^T, a column-major view, for nt; a row-major W for nn), bf16."""
    a = torch.randn(m, k, device="cuda", dtype=torch.bfloat16)
    if layout == "nt":
        return a, (torch.randn(n, k, device="cuda", dtype=torch.bfloat16) * k ** -0.5).t()
    return a, torch.randn(k, n, device="cuda", dtype=torch.bfloat16) * k ** -0.5


def tflops(m: int, k: int, n: int, ms: float) -> float:
    return 2 * m * k * n / ms / 1e9


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--iters", type=int, default=20, help="calls per variant under the profiler")
    ap.add_argument("--no-quack", action="store_true", help="cuBLAS only")
    a = ap.parse_args()
    if not torch.cuda.is_available() or torch.cuda.get_device_capability()[0] != 9:
        raise SystemExit("bench_proj_gemm needs a Hopper GPU (compute capability 9)")
    print(torch.cuda.get_device_name(), f"GPU kernel ms per call, mean of {a.iters}")
    print("\n| GEMM | M x K x N, layout | cuBLAS ms | TFLOP/s | quack ms | TFLOP/s | max |diff| / max |out| |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for name, (m, k, n, layout, what) in SHAPES.items():
        x, b = operands(m, k, n, layout)
        ref = torch.mm(x, b)
        cublas = gpu_ms(lambda: torch.mm(x, b), a.iters)
        cells = ["", "", ""]
        if not a.no_quack:
            from quack.gemm_interface import gemm

            out = gemm(x, b, tuned=False)  # also its JIT compile
            diff = ((out.float() - ref.float()).abs().max() / ref.float().abs().max()).item()
            ms = gpu_ms(lambda: gemm(x, b, tuned=False), a.iters)
            cells = [f"{ms:.3f}", f"{tflops(m, k, n, ms):.0f}", f"{diff:.1e}"]
        print(f"| {name}: {what} | {m} x {k} x {n}, {layout} | {cublas:.3f} | {tflops(m, k, n, cublas):.0f} | "
              + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
