"""Compressor-aware training (CAT): a soft-rounding penalty that pulls weights toward the quantization grid.

The grid is the one quantize uses (golf/quant/gptq.py: row_scales, round_codes), restated here so
that train does not import golf.quant (dvc.yaml lists train's source deps; editing GPTQ must not
retrain): per-row symmetric integer codes with step

    s_i = max(k * std(W_i) / R, 1e-10),   R = 2^(bits-1) - 1,   k = train.cat_clip_sigmas

(std with Bessel's correction, as torch.std; quantize then rounds s to fp16, CAT keeps it fp32:
the two grids differ by at most fp16 rounding of the step). The penalty is the squared distance
to the nearest grid point, codes clamped to [-R, R] as quantize clamps them:

    r   = clamp(round(w / s), -R, R)
    pen = sum over matrices, rows, elements of (w/s - r)^2 * s^2  /  total number of elements
        = mean over all penalised elements of (w - r*s)^2

This is the "straight" squared form, not the smooth sin^2 one: it is exactly zero on grid points,
positive off them, and its gradient is simply 2 (w - r*s) / N, the residual to the nearest grid
point (round is piecewise constant, so r carries no gradient). The step s is computed from a
detached copy of w: the gradient never flows through s, so CAT cannot shrink the rows' std to
make the grid finer, it can only move each weight toward its own grid point. Clamping r means a
weight beyond the clip range (|w| > R*s) is pulled back toward the outermost code.

Which matrices: every 2-D tensor of `model.param_groups()["matrix"]` (the block linears, MoE
experts and routers, bigram/ve projections: what Muon trains and GPTQ quantizes), minus the
train-only MTP head (`mtp.*`, dropped at save). The tied embedding is left out: quantize gives it
its own bits and clip (quantize.embed_bits / embed_clip_sigmas).

The sigmoid form (train.cat_form = sigmoid; the compressor-aware-training study's own form) measures
the distance in grid units with a soft-round step instead: with f = w/s - r (|f| <= 1/2 inside the
clip range) and T = SIGMOID_TEMPERATURE,

    d(f) = (sigmoid(T (|f| - 1/2)) - sigmoid(-T/2)) / (1/2 - sigmoid(-T/2))
    pen  = mean over all penalised elements of d(f)

d is 0 on grid points (with zero gradient there) and rises smoothly to 1 at the rounding boundary
|f| = 1/2; dd/dw = d'(|f|) sign(f) / s with d' > 0, so descent moves each weight toward its nearest
grid point. Beyond the clip range (|f| > 1/2 at code ±R) it keeps pulling toward the outermost code
for a fraction of a step, then saturates (d -> about 2, no gradient): unlike the squared form it
lets far outliers be (quantize clamps them). Unlike the squared form it is in grid
units (each row weighs the same whatever its scale) and it pushes hardest on the weights nearest
a rounding boundary, those whose code is most fragile. The study used it at weight 0.001 every
50 steps (docs/ablation.md): set cat_weight / cat_every for it, the defaults are the squared form's.

The loop adds `train.cat_weight * pen` once per optimizer step (not per micro-batch: it does not
depend on the data) on every step s with (s + 1) % train.cat_every == 0.
"""

from __future__ import annotations

import math

import torch

SIGMOID_TEMPERATURE = 10.0
"""T of the sigmoid form, per grid step. The slope d'(|f|) peaks at the rounding boundary |f| = 1/2 and is 7%
of that peak at |f| = 0.1 (18% at 0.2): the penalty leaves weights near their grid point almost alone and
acts on those near a boundary. A larger T approaches a step (no gradient left), a smaller one a cone |f|."""


def clip_range(bits: int) -> int:
    """R = 2^(bits-1) - 1: the largest code of a symmetric `bits`-bit grid."""
    return 2 ** (bits - 1) - 1


def grid_step(w: torch.Tensor, bits: int, clip_sigmas: float) -> torch.Tensor:
    """(rows, 1) fp32 per-row grid step s = max(k * std(row) / R, 1e-10), detached (no gradient through s)."""
    w = w.detach().float()
    return (clip_sigmas * w.std(dim=1, keepdim=True) / clip_range(bits)).clamp_min(1e-10)


def grid_point(w: torch.Tensor, s: torch.Tensor, bits: int) -> torch.Tensor:
    """r*s with r = clamp(round(w/s), -R, R): the nearest grid point (fp32, no gradient)."""
    R = clip_range(bits)
    return torch.clamp(torch.round(w.detach().float() / s), -R, R) * s


def grid_residual(w: torch.Tensor, s: torch.Tensor, bits: int) -> torch.Tensor:
    """w - r*s with r = clamp(round(w/s), -R, R): the signed distance to the nearest grid point (fp32)."""
    return w.float() - grid_point(w, s, bits)


def sigmoid_distance(w: torch.Tensor, s: torch.Tensor, bits: int) -> torch.Tensor:
    """d(f) of the module docstring per element, f = (w - r*s) / s in grid units (fp32)."""
    f = grid_residual(w, s, bits) / s
    floor = 1.0 / (1.0 + math.exp(SIGMOID_TEMPERATURE / 2))  # sigmoid(-T/2): d = 0 at f = 0
    return (torch.sigmoid(SIGMOID_TEMPERATURE * (f.abs() - 0.5)) - floor) / (0.5 - floor)


def cat_matrices(model: torch.nn.Module) -> list[torch.nn.Parameter]:
    """The matrices CAT penalises: Muon's 2-D "matrix" group minus the train-only MTP head."""
    matrix = {id(p) for p in model.param_groups()["matrix"]}
    return [p for name, p in model.named_parameters()
            if id(p) in matrix and p.ndim == 2 and not name.startswith("mtp.")]


def cat_penalty(weights: list[torch.Tensor], bits: int, clip_sigmas: float, form: str = "squared") -> torch.Tensor:
    """Mean over every element of `weights` of (w/s - r)^2 * s^2 (form squared) or of the soft-round
    distance d(w/s - r) (form sigmoid); see the module docstring. 0-dim fp32."""
    if not weights:
        raise ValueError("cat_penalty: no matrices to penalise")
    if form not in ("squared", "sigmoid"):
        raise ValueError(f"cat_penalty: unknown form {form!r} (squared | sigmoid)")
    total = torch.zeros((), device=weights[0].device, dtype=torch.float32)
    n = 0
    for w in weights:
        s = grid_step(w, bits, clip_sigmas)
        if form == "squared":
            total = total + grid_residual(w, s, bits).square().sum()
        else:
            total = total + sigmoid_distance(w, s, bits).sum()
        n += w.numel()
    return total / n
