"""k-means codebook quantization: each weight becomes an index into K fp16 centroids of its tensor.

An alternative to the uniform int grid of golf.quant.gptq (issue 9): the grid adapts to the
weight distribution (denser near zero, where most weights are). One codebook per tensor, fit by
1-D weighted Lloyd iterations: every weight W_ij counts with H_jj (the Hessian's diagonal, the
output error one unit of error in column j causes), or 1 without a Hessian. Initialisation at
evenly spaced quantiles and a fixed iteration count make it deterministic (no RNG at all). The
centroids are rounded to fp16 *before* the final assignment, so the stored codebook is exactly
what the codes index. With method gptq the codes come from GPTQ's sweep with nearest-centroid
rounding (error feedback through H⁻¹); with rtn from plain nearest-centroid assignment.

Stored as `<name>.cq` (uint8 indices, (out, in)) and `<name>.cb` (fp16 centroids, (K,)): names
other than `.q`/`.scale`, so prune_to_budget's ±1-code rules never touch an index.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from golf.quant import gptq

MAX_K = 256  # indices are uint8


@dataclass(frozen=True)
class Codebook:
    codes: torch.Tensor
    """uint8 indices (out, in) into `centroids`."""
    centroids: torch.Tensor
    """fp16 (K,), ascending."""
    damp_frac: float
    damp_tries: int
    fallback: str
    """"" normally; "rtn" when GPTQ found no positive-definite damping (plain assignment used)."""


def bits(k: int) -> int:
    """Bits per index at K centroids (the uncompressed width: ceil(log2 K))."""
    return max(1, math.ceil(math.log2(k)))


def nearest(x: torch.Tensor, centroids: torch.Tensor) -> torch.Tensor:
    """Index of the nearest of the ascending `centroids` for every element (ties to the lower one)."""
    c = centroids.float()
    mids = (c[:-1] + c[1:]) / 2
    return torch.bucketize(x.float().contiguous(), mids, right=False)


def fit(values: torch.Tensor, weights: torch.Tensor | None, k: int, iters: int) -> torch.Tensor:
    """fp16 ascending centroids (k,) of 1-D weighted k-means over `values` (any shape)."""
    x = values.detach().float().reshape(-1)
    wt = torch.ones_like(x) if weights is None else weights.detach().float().reshape(-1).clamp_min(0)
    if wt.sum() <= 0:
        wt = torch.ones_like(x)
    xs, order = torch.sort(x)
    ws = wt[order]
    c = torch.quantile(xs, (torch.arange(k, dtype=torch.float32, device=xs.device) + 0.5) / k) if x.numel() <= 1 << 24 \
        else xs[((torch.arange(k, device=xs.device) + 0.5) / k * (len(xs) - 1)).long()]
    for _ in range(iters):
        c, _ = torch.sort(c)
        idx = nearest(xs, c)
        num = torch.zeros(k, device=xs.device).index_add_(0, idx, xs * ws)
        den = torch.zeros(k, device=xs.device).index_add_(0, idx, ws)
        c = torch.where(den > 0, num / den.clamp_min(1e-30), c)  # an empty cluster keeps its centroid
    return torch.sort(c.to(torch.float16))[0]


def quantize(w: torch.Tensor, H: torch.Tensor | None, k: int, iters: int, method: str,
             block_size: int, damp: float) -> Codebook:
    """Codebook-quantize W (out, in); H (in, in) weights the fit and drives GPTQ when method = gptq."""
    W = w.detach().float()
    col_w = None if H is None else H.diagonal().float().clamp_min(0).expand_as(W)
    cb = fit(W, col_w, k, iters)
    cf = cb.float().to(W.device)

    def round_col(col: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        i = nearest(col, cf)
        return i.float(), cf[i]

    if method == "gptq" and H is not None:
        Q, frac, tries = gptq.gptq_sweep(W, H, block_size, damp, round_col)
        if Q is not None:
            return Codebook(Q.to(torch.uint8), cb, frac, tries, "")
        return Codebook(nearest(W, cf).to(torch.uint8), cb, frac, tries, "rtn")
    return Codebook(nearest(W, cf).to(torch.uint8), cb, 0.0, 0, "")
