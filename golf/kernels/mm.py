"""bf16 GEMMs with an fp32 result, for the gradients that training sums in fp32 (issue 17).

A weight's gradient is one GEMM over all of a micro-batch's tokens (K = 98,304 at the record shape) and
goes into an fp32 .grad. Rounding that GEMM's fp32 accumulator to bf16 and casting it back costs a
write, a cast kernel and eight bits of the sum; cuBLAS can write the accumulator as fp32 instead.
"""

from __future__ import annotations

import torch


def mm_fp32(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """a @ b of bf16 operands as an fp32 tensor. On CUDA cuBLAS writes its fp32 accumulator
    (aten::mm.dtype, which has no CPU kernel); elsewhere the bf16 product is cast."""
    if a.is_cuda:
        return torch.mm(a, b, out_dtype=torch.float32)
    return (a @ b).float()
