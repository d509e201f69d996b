"""2:4 sparsity masks: in every group of 4 consecutive input columns of a row, keep 2.

Shared by quantize (`quantize.mlp_sparsity_24`: the mask is chosen on the float weights and held
through GPTQ, golf/quant/gptq.py) and prune_to_budget (`two_four` / `hessian_two_four`: the mask
is chosen on the codes, golf/prune/rules.py), which imports it from here so that editing prune
never reruns quantize (dvc.yaml deps).
"""

from __future__ import annotations

import torch

from golf.quant import gptq

GROUP, KEEP = 4, 2


def two_four_keep(score: torch.Tensor) -> torch.Tensor:
    """bool (rows, cols): True on the 2 highest scores of each group of 4 consecutive columns of a
    row (the earlier column wins a tie); a tail of cols % 4 columns is all kept."""
    rows, cols = score.shape
    full = cols - cols % GROUP
    keep = torch.ones(rows, cols, dtype=torch.bool, device=score.device)
    if full == 0:
        return keep
    groups = score[:, :full].reshape(rows, full // GROUP, GROUP)
    rank = torch.argsort(groups, dim=-1, descending=True, stable=True)
    head = torch.ones_like(groups, dtype=torch.bool)
    head.scatter_(-1, rank[..., KEEP:], False)
    keep[:, :full] = head.reshape(rows, full)
    return keep


def saliency(w: torch.Tensor, H: torch.Tensor | None, damp: float) -> torch.Tensor:
    """The OBS cost of zeroing each weight alone, w_ij² / [H⁻¹]_jj (SparseGPT's 2:4 criterion),
    with H damped as GPTQ damps it. Without H (method rtn, no Hessians) or when no damping makes
    H positive definite, w² (magnitude): the same ranking as an identity H."""
    w = w.float()
    if H is None:
        return w.square()
    hinv = gptq.inverse_diagonal(H.float(), damp)
    return w.square() if hinv is None else w.square() / hinv[None, :]


def mlp_keep(w: torch.Tensor, H: torch.Tensor | None, damp: float) -> torch.Tensor:
    """The 2:4 mask quantize holds for an MLP matrix w (out, in), along the input dim."""
    return two_four_keep(saliency(w, H, damp))
