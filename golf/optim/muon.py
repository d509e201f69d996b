"""Muon: momentum SGD whose update is orthogonalized by a Newton–Schulz iteration (docs/techniques.md §2.3).

For each matrix parameter p with gradient g (per step, in this order):

    buf <- mu * buf + g                      (momentum buffer, fp32)
    u   <- g + mu * buf                      (Nesterov; or u = buf without Nesterov)
    u   <- u / max(||u_row||_2, 1e-7)         (MuonEq-R, optional: every row to unit norm)
    X   <- NS(u)                             (≈ the orthogonal polar factor U Vᵀ of u = U S Vᵀ)
    p   <- p * (1 - lr * wd) - lr * max(1, rows/cols)^½ * X

The weight decay is decoupled and uses the *scheduled* lr (the loop writes group["lr"] each step).
NS starts from X = u / (||u||_F + 1e-7), so every singular value is <= 1, and iterates
X <- a X + (b A + c A²) X with A = X Xᵀ on the wide orientation (rows <= cols; a tall matrix is
transposed so A is the small Gram matrix). Coefficients: the classic quintic (3.4445, -4.7750,
2.0315) repeated, or Polar Express's one tuple per iteration (steps beyond its 5 reuse the last).
It runs in bf16 on CUDA (fp32 on CPU, where bf16 matmuls are slow and gain nothing).

Parameters with more than two dims (parameter banks, (L, rows, cols)) are treated as a batch of
matrices; parameters of the same shape are stacked and orthogonalized in one batched call.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Iterable, Literal

import torch

QUINTIC = (3.4445, -4.7750, 2.0315)
# Polar Express (Amsel et al. 2025), as in the records' `_PE_COEFFS` (POLAR, LQER), one per step.
POLAR_EXPRESS = (
    (8.156554524902461, -22.48329292557795, 15.878769915207462),
    (4.042929935166739, -2.808917465908714, 0.5000178451051316),
    (3.8916678022926607, -2.772484153217685, 0.5060648178503393),
    (3.285753657755655, -2.3681294933425376, 0.46449024233003106),
    (2.3465413258596377, -1.7097828382687081, 0.42323551169305323),
)

Coeffs = Literal["quintic", "polar_express"]


def ns_coefficients(coeffs: Coeffs, steps: int) -> list[tuple[float, float, float]]:
    """The (a, b, c) tuple used at each of `steps` iterations."""
    if coeffs == "quintic":
        return [QUINTIC] * steps
    if coeffs == "polar_express":
        return [POLAR_EXPRESS[min(i, len(POLAR_EXPRESS) - 1)] for i in range(steps)]
    raise ValueError(f"unknown Newton–Schulz coefficients {coeffs!r}")


def newton_schulz(g: torch.Tensor, steps: int = 5, coeffs: Coeffs = "quintic",
                  dtype: torch.dtype | None = None) -> torch.Tensor:
    """Approximate orthogonal polar factor of each matrix in g (..., rows, cols), same shape/dtype as g.

    dtype: compute precision; default bf16 on CUDA, fp32 elsewhere.
    """
    if g.ndim < 2:
        raise ValueError(f"newton_schulz needs a matrix, got shape {tuple(g.shape)}")
    if dtype is None:
        dtype = torch.bfloat16 if g.is_cuda else torch.float32
    x = g.to(dtype)
    tall = g.size(-2) > g.size(-1)
    if tall:  # iterate on the wide orientation: A = X Xᵀ is then the smaller Gram matrix
        x = x.mT
    x = x / (x.norm(dim=(-2, -1), keepdim=True) + 1e-7)
    for a, b, c in ns_coefficients(coeffs, steps):
        A = x @ x.mT
        B = b * A + c * (A @ A)
        x = a * x + B @ x
    if tall:
        x = x.mT
    return x.to(g.dtype)


def row_normalize(u: torch.Tensor) -> torch.Tensor:
    """MuonEq-R: each row (last dim) divided by its L2 norm, clamped at 1e-7."""
    return u / u.norm(dim=-1, keepdim=True).clamp_min(1e-7)


class Muon(torch.optim.Optimizer):
    """Muon for matrix parameters (see the module docstring for the exact update).

    lr: step size (the loop rescales it each step by the schedule); momentum: mu in [0, 1);
    weight_decay: decoupled, multiplied by lr; backend_steps: Newton–Schulz iterations;
    coeffs: "quintic" or "polar_express"; row_normalize: MuonEq-R before the orthogonalization.
    """

    def __init__(self, params: Iterable[torch.nn.Parameter] | Iterable[dict], lr: float, momentum: float = 0.95,
                 nesterov: bool = True, weight_decay: float = 0.0, backend_steps: int = 5,
                 coeffs: Coeffs = "quintic", row_normalize: bool = False) -> None:
        if lr < 0 or not 0.0 <= momentum < 1.0 or weight_decay < 0 or backend_steps < 1:
            raise ValueError(f"Muon: bad hyperparameters lr={lr} momentum={momentum} wd={weight_decay} "
                             f"backend_steps={backend_steps}")
        ns_coefficients(coeffs, 1)  # validates the name
        defaults = dict(lr=lr, momentum=momentum, nesterov=nesterov, weight_decay=weight_decay,
                        backend_steps=backend_steps, coeffs=coeffs, row_normalize=row_normalize)
        super().__init__(params, defaults)
        for group in self.param_groups:
            for p in group["params"]:
                if p.ndim < 2:
                    raise ValueError(f"Muon is for matrices; got a parameter of shape {tuple(p.shape)}")

    @torch.no_grad()
    def step(self, closure=None):  # type: ignore[override]
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if params:
                self._update(group, params)
        return loss

    def _update(self, group: dict, params: list[torch.nn.Parameter]) -> None:
        """The update of the module docstring for `params`, as a few multi-tensor (`_foreach_`) kernels
        over all of them instead of a handful of kernels per parameter: the h100 preset's 66 matrices
        made about 530 small launches a step that the GPU waited for (BENCHMARKS.md, issue 17 "idle"). The
        element-wise math and its order are the same as one parameter at a time."""
        mu, lr, wd = group["momentum"], group["lr"], group["weight_decay"]
        grads = [p.grad.float() for p in params]
        for p, g in zip(params, grads):
            if "momentum_buffer" not in self.state[p]:
                self.state[p]["momentum_buffer"] = torch.zeros_like(g)
        bufs = [self.state[p]["momentum_buffer"] for p in params]
        torch._foreach_mul_(bufs, mu)
        torch._foreach_add_(bufs, grads)
        updates = torch._foreach_add(grads, bufs, alpha=mu) if group["nesterov"] else [b.clone() for b in bufs]
        # Same-shape parameters share one batched Newton–Schulz call.
        by_shape: dict[tuple, list[int]] = defaultdict(list)
        for i, p in enumerate(params):
            by_shape[(tuple(p.shape), p.device)].append(i)
        if wd:
            torch._foreach_mul_(params, 1.0 - lr * wd)
        for (shape, _), idx in by_shape.items():
            stacked = torch.stack([updates[i] for i in idx])
            if group["row_normalize"]:  # per row: the same norms stacked or one matrix at a time
                stacked = row_normalize(stacked)
            xs = newton_schulz(stacked, group["backend_steps"], group["coeffs"])
            scale = max(1.0, shape[-2] / shape[-1]) ** 0.5
            torch._foreach_add_([params[i] for i in idx], [x.to(params[i].dtype) for i, x in zip(idx, xs.unbind(0))],
                                alpha=-lr * scale)
