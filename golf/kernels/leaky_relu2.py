"""The MLP activation act(u) = leaky_relu(u, slope)^2 (slope 0: relu^2) as one fused pair.

Eager (golf/artifact/model/layers.py `MLP`), leaky_relu and square are two kernels, and autograd keeps both
u and leaky_relu(u) for the backward. Here the forward reads the up-projection's output u once and
writes act(u); the backward reads u and the incoming gradient once and writes

    grad_u = grad * act'(u),   act'(u) = 2u (u > 0), 2 slope^2 u (u <= 0),

so only u is saved (the down-projection saves act(u) itself, as before). Both are
`torch.library.custom_op`s with fake implementations and a registered autograd formula, so
torch.compile(fullgraph=True) traces them with no graph break. Values are computed in fp32 and
rounded once to the input's dtype.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

BLOCK = 4096  # elements per program


@triton.jit
def golf_leaky_relu2_fwd(u_ptr, out_ptr, n, slope, BLOCK: tl.constexpr):
    offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    valid = offs < n
    u = tl.load(u_ptr + offs, mask=valid, other=0.0).to(tl.float32)
    a = tl.where(u > 0, u, u * slope)
    tl.store(out_ptr + offs, (a * a).to(out_ptr.dtype.element_ty), mask=valid)


@triton.jit
def golf_leaky_relu2_bwd(u_ptr, grad_ptr, out_ptr, n, slope, BLOCK: tl.constexpr):
    offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    valid = offs < n
    u = tl.load(u_ptr + offs, mask=valid, other=0.0).to(tl.float32)
    g = tl.load(grad_ptr + offs, mask=valid, other=0.0).to(tl.float32)
    d = tl.where(u > 0, 2.0 * u, (2.0 * slope * slope) * u)
    tl.store(out_ptr + offs, (g * d).to(out_ptr.dtype.element_ty), mask=valid)


def _grid(n: int) -> tuple[int]:
    return (triton.cdiv(n, BLOCK),)


@torch.library.custom_op("golf::leaky_relu2", mutates_args=())
def _leaky_relu2(u: torch.Tensor, slope: float) -> torch.Tensor:
    u = u.contiguous()
    out = torch.empty_like(u)
    if u.numel():
        golf_leaky_relu2_fwd[_grid(u.numel())](u, out, u.numel(), slope, BLOCK=BLOCK, num_warps=8)
    return out


@_leaky_relu2.register_fake
def _(u, slope):
    return torch.empty_like(u, memory_format=torch.contiguous_format)


@torch.library.custom_op("golf::leaky_relu2_backward", mutates_args=())
def _leaky_relu2_backward(u: torch.Tensor, grad: torch.Tensor, slope: float) -> torch.Tensor:
    """grad * d/du leaky_relu(u, slope)^2, in u's dtype."""
    u, grad = u.contiguous(), grad.contiguous()
    out = torch.empty_like(u)
    if u.numel():
        golf_leaky_relu2_bwd[_grid(u.numel())](u, grad, out, u.numel(), slope, BLOCK=BLOCK, num_warps=8)
    return out


@_leaky_relu2_backward.register_fake
def _(u, grad, slope):
    return torch.empty_like(u, memory_format=torch.contiguous_format)


def _setup_context(ctx, inputs, output):
    u, slope = inputs
    ctx.save_for_backward(u)
    ctx.slope = slope


def _backward(ctx, grad):
    (u,) = ctx.saved_tensors
    return _leaky_relu2_backward(u, grad, ctx.slope), None


_leaky_relu2.register_autograd(_backward, setup_context=_setup_context)


def leaky_relu2(u: torch.Tensor, slope: float) -> torch.Tensor:
    """leaky_relu(u, slope)^2, elementwise, in u's dtype, fused (differentiable).

    A plain function around the op, so a model holding it can still be deep-copied."""
    return _leaky_relu2(u, slope)


def leaky_relu2_reference(u: torch.Tensor, slope: float) -> torch.Tensor:
    """The eager definition, as golf/artifact/model/layers.py `MLP` computes it."""
    a = torch.nn.functional.leaky_relu(u, slope) if slope else torch.relu(u)
    return a.square()
