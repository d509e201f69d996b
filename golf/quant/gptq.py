"""Per-row symmetric integer quantization: std-clipped scales, round-to-nearest and full-Hessian GPTQ.

docs/techniques.md §4.1. The per-row scale s_i = max(k·std(W_i)/R, 1e-10) is fixed before the sweep
and rounded to fp16 first, so the rounding uses exactly the scale the file stores and
dequantization (q·s) reproduces what GPTQ saw. Codes are int8 in [-R, R], R = 2^(bits-1) - 1.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

FP16_TINY = 2.0 ** -24  # smallest positive fp16 (subnormal): a scale must never round to 0
MAX_DAMP_TRIES = 12  # damping x10 per try: 0.01 -> 1e9 of mean(diag H), then fall back to RTN


@dataclass(frozen=True)
class Quantized:
    q: torch.Tensor
    """int8 codes (out, in) in [-R, R]."""
    scale: torch.Tensor
    """fp16 per-row scale (out,)."""
    damp_frac: float
    """Damping used, as a fraction of mean(diag H) (0 for RTN)."""
    damp_tries: int
    """Cholesky attempts; > 1 means H was not positive definite at the configured damping."""
    fallback: str
    """"" normally; "rtn" when no damping made H positive definite (then plain rounding is used)."""


def clip_range(bits: int) -> int:
    return 2 ** (bits - 1) - 1


def row_scales(w: torch.Tensor, clip_sigmas: float, bits: int) -> torch.Tensor:
    """fp16 s_i = max(k·std(W_i)/R, 1e-10), never 0 after the fp16 cast."""
    s = (clip_sigmas * w.float().std(dim=1) / clip_range(bits)).clamp_min(1e-10)
    s16 = s.to(torch.float16)
    return torch.where(s16 > 0, s16, torch.full_like(s16, FP16_TINY))


def round_codes(w: torch.Tensor, s: torch.Tensor, R: int) -> torch.Tensor:
    """clamp(round(w / s), -R, R) with w a column (out,) or matrix (out, in) and s per row."""
    s = s.float() if w.dim() == 1 else s.float()[:, None]
    return torch.clamp(torch.round(w / s), -R, R)


def rtn_quantize(w: torch.Tensor, scale: torch.Tensor, bits: int) -> Quantized:
    """Round-to-nearest with the given fp16 per-row scales."""
    q = round_codes(w.float(), scale, clip_range(bits)).to(torch.int8)
    return Quantized(q=q, scale=scale, damp_frac=0.0, damp_tries=0, fallback="")


def _upper_inverse_factor(H: torch.Tensor, damp: float) -> tuple[torch.Tensor | None, float, int]:
    """U = chol_upper(H⁻¹) of H + d·mean(diag H)·I, raising d x10 until both factorizations succeed."""
    n = H.shape[0]
    mean_diag = H.diagonal().abs().mean().item()
    mean_diag = mean_diag if mean_diag > 0 and mean_diag == mean_diag else 1.0
    frac = damp if damp > 0 else 1e-8
    eye = torch.eye(n, dtype=H.dtype, device=H.device)
    for tries in range(1, MAX_DAMP_TRIES + 1):
        L, info = torch.linalg.cholesky_ex(H + (frac * mean_diag) * eye)
        if info.item() == 0 and torch.isfinite(L).all():
            Hinv = torch.cholesky_inverse(L)
            U, info = torch.linalg.cholesky_ex(Hinv, upper=True)
            if info.item() == 0 and torch.isfinite(U).all():
                return U, frac, tries
        frac *= 10.0
    return None, frac, MAX_DAMP_TRIES


def inverse_diagonal(H: torch.Tensor, damp: float) -> torch.Tensor | None:
    """diag((H + d·mean(diag H)·I)⁻¹) with GPTQ's dead-input fix and damping retries; None when
    no damping made H positive definite. H⁻¹ = UᵀU, so its diagonal is U's squared column norms."""
    H = H.float().clone()
    dead = H.diagonal() == 0
    H.diagonal().masked_fill_(dead, 1.0)
    U, _, _ = _upper_inverse_factor(H, damp)
    return None if U is None else U.square().sum(dim=0)


def gptq_quantize(w: torch.Tensor, H: torch.Tensor, scale: torch.Tensor, bits: int,
                  block_size: int, damp: float, keep: torch.Tensor | None = None) -> Quantized:
    """Full-Hessian GPTQ (act-order, lazy block updates) of W (out, in) with H (in, in) and fixed scales.

    A non-positive-definite H gets progressively more damping (reported in the result);
    if even that fails the tensor falls back to round-to-nearest (reported too), never a crash.
    keep: an optional bool mask (out, in) held through the sweep (`gptq_sweep_many`).
    """
    return gptq_quantize_many(w[None], H[None], scale[None], bits, block_size, damp,
                              None if keep is None else keep[None])[0]


def gptq_quantize_many(ws: torch.Tensor, Hs: torch.Tensor, scales: torch.Tensor, bits: int,
                       block_size: int, damp: float, keep: torch.Tensor | None = None) -> list[Quantized]:
    """`gptq_quantize` of B same-shape matrices at once: ws (B, out, in), Hs (B, in, in), scales (B, out).

    Each result equals what `gptq_quantize` gives for that matrix alone (the sweep is the same
    arithmetic with a leading batch dim); batching divides the column loop's Python and kernel-launch
    cost, which dominates GPTQ on a GPU, by B. keep (B, out, in): masks held through the sweep.
    """
    R = clip_range(bits)
    s = scales.float()

    def round_col(col: torch.Tensor, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        q = torch.clamp(torch.round(col / s[rows]), -R, R)
        return q, q * s[rows]

    out = []
    for b, (Q, frac, tries) in enumerate(gptq_sweep_many(ws, Hs, block_size, damp, round_col, keep)):
        if Q is None:  # masked weights round to 0 in the fallback too
            res = rtn_quantize(ws[b] if keep is None else ws[b] * keep[b], scales[b], bits)
            out.append(Quantized(q=res.q, scale=scales[b], damp_frac=frac, damp_tries=tries, fallback="rtn"))
        else:
            out.append(Quantized(q=Q.to(torch.int8), scale=scales[b], damp_frac=frac, damp_tries=tries, fallback=""))
    return out


def gptq_sweep(w: torch.Tensor, H: torch.Tensor, block_size: int, damp: float,
               round_col) -> tuple[torch.Tensor | None, float, int]:
    """(codes (out, in) as float, damping fraction, tries) of GPTQ with any per-column rounding.

    `round_col(col (out,)) -> (codes, dequantized values)`: the grid (uniform int or a codebook).
    Codes are None when no damping made H positive definite (the caller falls back).
    """
    return gptq_sweep_many(w[None], H[None], block_size, damp, lambda col, rows: round_col(col[0]))[0]


def gptq_sweep_many(ws: torch.Tensor, Hs: torch.Tensor, block_size: int, damp: float,
                    round_col, keep: torch.Tensor | None = None) -> list[tuple[torch.Tensor | None, float, int]]:
    """`gptq_sweep` of B same-shape matrices ws (B, out, in) with Hs (B, in, in), one column loop for all.

    `round_col(cols (b, out), rows (b,)) -> (codes, dequantized values)`, where rows are the indices
    into the batch of the matrices being swept (those whose H could be factorized).
    keep (B, out, in) bool, optional: a sparsity mask held through the sweep (SparseGPT-style, for
    quantize.mlp_sparsity_24): a masked weight's code is 0 and its whole current value becomes the
    error pushed into the later columns, so only kept weights absorb the compensation.
    """
    B, _, n = ws.shape
    W = ws.float().clone()
    H = Hs.float().clone()
    dead = H.diagonal(dim1=-2, dim2=-1) == 0  # inputs that never fire: nothing to compensate, column zeroed
    H.diagonal(dim1=-2, dim2=-1).masked_fill_(dead, 1.0)
    W.masked_fill_(dead[:, None, :], 0.0)
    perm = torch.argsort(H.diagonal(dim1=-2, dim2=-1), dim=-1, descending=True, stable=True)  # act-order
    inv = torch.argsort(perm, dim=-1)
    W = W.gather(2, perm[:, None, :].expand_as(W))
    K = None if keep is None else keep.to(W.device).gather(2, perm[:, None, :].expand_as(W))
    H = H.gather(1, perm[:, :, None].expand_as(H)).gather(2, perm[:, None, :].expand_as(H))
    factors = [_upper_inverse_factor(H[b], damp) for b in range(B)]
    rows = [b for b in range(B) if factors[b][0] is not None]
    results: list[tuple[torch.Tensor | None, float, int]] = [(None, f, t) for _, f, t in factors]
    if not rows:
        return results
    idx = torch.tensor(rows, device=W.device)
    U = torch.stack([factors[b][0] for b in rows])
    W = W[idx]
    K = None if K is None else K[idx].to(W.dtype)
    Q = torch.zeros_like(W)
    for i1 in range(0, n, block_size):
        i2 = min(i1 + block_size, n)
        W1 = W[:, :, i1:i2].clone()
        Err1 = torch.zeros_like(W1)
        U1 = U[:, i1:i2, i1:i2]
        for i in range(i2 - i1):
            col = W1[:, :, i]
            q, v = round_col(col, idx)
            if K is not None:
                q, v = q * K[:, :, i1 + i], v * K[:, :, i1 + i]
            Q[:, :, i1 + i] = q
            err = (col - v) / U1[:, i, i, None]
            W1[:, :, i:] -= err[:, :, None] * U1[:, None, i, i:]
            Err1[:, :, i] = err
        W[:, :, i2:] -= Err1 @ U[:, i1:i2, i2:]
    Q = Q.gather(2, inv[idx][:, None, :].expand_as(Q))
    for j, b in enumerate(rows):
        results[b] = (Q[j], factors[b][1], factors[b][2])
    return results


def h_weighted_error(E: torch.Tensor, H: torch.Tensor) -> float:
    """tr(E H Eᵀ): the output error E·X summed over calibration inputs (per batch)."""
    E = E.double()
    return float(((E @ H.double()) * E).sum())
