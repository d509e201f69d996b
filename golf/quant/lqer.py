"""LQER: a quantized rank-r correction of the quantization error E = W − Q·s (docs/techniques.md §4.4).

E ≈ A·B with A = U_r·diag(S_r) (out, r) and B = Vh_r (r, in) from a truncated SVD.
Asymmetric packing (the records' LQER_ASYM): A as INT2 codes in [-2, 1] with one fp16 scale
max|A|/1.5; B as INT4 codes in [-8, 7] with one fp16 scale max|B_g|/7.5 per group of `group`
consecutive elements of the flattened B. When B's size is not a multiple of the group, both
factors use a symmetric per-row packing of `factor_bits` bits instead.
Tensors: `<name>.lqA` / `.lqB` (int8 codes), `<name>.lqAs` / `.lqBs` (fp16 scales).
"""

from __future__ import annotations

import torch

from golf.artifact.dequant import lqer_unpack
from golf.quant.gptq import FP16_TINY, clip_range


def _fp16_scale(s: torch.Tensor) -> torch.Tensor:
    s16 = s.to(torch.float16)
    return torch.where(s16 > 0, s16, torch.full_like(s16, FP16_TINY))


def svd_factors(E: torch.Tensor, rank: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A (out, r), B (r, in): the best rank-r approximation of E (fp32)."""
    U, S, Vh = torch.linalg.svd(E.float(), full_matrices=False)
    r = min(rank, S.numel())
    return U[:, :r] * S[:r], Vh[:r, :].contiguous()


def pack(A: torch.Tensor, B: torch.Tensor, group: int, factor_bits: int) -> tuple[str, dict[str, torch.Tensor]]:
    """("asym" | "sym", {"lqA", "lqAs", "lqB", "lqBs"})."""
    if group > 0 and B.numel() % group == 0:
        sA = _fp16_scale(A.abs().max().reshape(1) / 1.5)
        qA = torch.clamp(torch.round(A / sA.float()), -2, 1)
        Bg = B.reshape(-1, group)
        sB = _fp16_scale(Bg.abs().amax(dim=1) / 7.5)
        qB = torch.clamp(torch.round(Bg / sB.float()[:, None]), -8, 7).reshape(B.shape)
        return "asym", {"lqA": qA.to(torch.int8), "lqAs": sA, "lqB": qB.to(torch.int8), "lqBs": sB}
    R = clip_range(factor_bits)
    sA = _fp16_scale(A.abs().amax(dim=1) / R)
    sB = _fp16_scale(B.abs().amax(dim=1) / R)
    qA = torch.clamp(torch.round(A / sA.float()[:, None]), -R, R)
    qB = torch.clamp(torch.round(B / sB.float()[:, None]), -R, R)
    return "sym", {"lqA": qA.to(torch.int8), "lqAs": sA, "lqB": qB.to(torch.int8), "lqBs": sB}


def packed_bits(kind: str, t: dict[str, torch.Tensor], factor_bits: int) -> int:
    """Bits the factors take when packed at their bit widths (codes + fp16 scales)."""
    a_bits, b_bits = (2, 4) if kind == "asym" else (factor_bits, factor_bits)
    return t["lqA"].numel() * a_bits + t["lqB"].numel() * b_bits + 16 * (t["lqAs"].numel() + t["lqBs"].numel())


def correct(E: torch.Tensor, rank: int, group: int, factor_bits: int) -> tuple[str, dict[str, torch.Tensor], torch.Tensor]:
    """(packing, factor tensors, dequantized correction) for the error E."""
    A, B = svd_factors(E, rank)
    kind, t = pack(A, B, group, factor_bits)
    return kind, t, lqer_unpack(kind, t)
