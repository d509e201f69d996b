"""Late QAT: straight-through fake quantization of the block matrices on quantize's grid.

From train.qat_start_frac of training on (docs/techniques.md §2.4: the records switched it on late,
by the lr scale), each optimizer step runs its forward and backward passes with every CAT matrix
(golf/train/cat.py: cat_matrices) replaced by its nearest point of the grid

    q = clamp(round(w / s), -R, R) * s,   s = max(k * std(w_row) / R, 1e-10),   R = 2^(bits-1) - 1

(cat.py's grid_step / grid_point with k = train.qat_clip_sigmas, bits = train.qat_bits; keep them
equal to quantize.clip_sigmas / matrix_bits, as quantize's GPTQ uses that grid). The swap is done
in place on the parameters' storage: the originals are copied aside, q is written into the
parameters, the micro-batches run, and the originals are written back before the optimizer step.
The gradient the optimizer sees is therefore dL/dq applied to w: the straight-through estimator
(round's zero derivative is ignored and s carries no gradient).

Why in place and not a re-parametrisation or a flag inside the model: the parameters stay the same
tensors with the same shapes, so a torch.compile'd forward sees nothing new and does not recompile
when QAT switches on (PROPE's flag inside the compiled model was constant-folded and never ran,
docs/techniques.md §2.4), and the model code (golf/artifact, shipped in the artifact) is untouched.
The cost is one copy of the matrices per step and the grid computation; the val evals inside the
loop and the EMA see the float weights (the EMA of float weights is what is saved: quantize's GPTQ
then rounds it).
"""

from __future__ import annotations

import contextlib
from typing import Iterator

import torch

from golf.train.cat import grid_point, grid_step


@torch.no_grad()
def fake_quantize_(weights: list[torch.Tensor], bits: int, clip_sigmas: float) -> list[torch.Tensor]:
    """Write each weight's nearest grid point into it, in place; return copies of the originals."""
    saved = [w.detach().clone() for w in weights]
    for w in weights:
        w.copy_(grid_point(w, grid_step(w, bits, clip_sigmas), bits))
    return saved


@contextlib.contextmanager
def fake_quantized(weights: list[torch.Tensor], bits: int, clip_sigmas: float) -> Iterator[None]:
    """Inside: `weights` hold their grid points (forward and backward use them); on exit: the originals,
    whose .grad is then the gradient w.r.t. the grid points (straight-through). No-op for an empty list."""
    saved = fake_quantize_(weights, bits, clip_sigmas) if weights else []
    try:
        yield
    finally:
        with torch.no_grad():
            for w, orig in zip(weights, saved):
                w.copy_(orig)
