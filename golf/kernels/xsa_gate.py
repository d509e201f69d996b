"""Attention's output preparation as one pass: XSA, then the sparse attention gate.

Eager (golf/artifact/model/attention.py `xsa` and `sparse_gate`): each head's output y loses its component
along its KV head's unit value vn = v / max(|v|, 1e-12), then is scaled by the head's gate s = sigmoid(scale *
x[:W] . w_h), a dot over the first W (gate_window) dims of the attention's input. Compiled, inductor made
that five kernels, 33 ms of a 627 ms step on the H200 (BENCHMARKS.md, twelfth session). Here one program
takes a block of tokens and one KV head with the G query heads it serves, so v is read once for them:

    forward:  out = s * r,   r = y - (y . vn) vn

    backward: dr = s * dout,  dy = dr - (dr . vn) vn,
              dvn = -sum over the group of ((y . vn) dr + (dr . vn) y),  dv = (dvn - (dvn . vn) vn) / |v|,
              dl_h = scale * s (1 - s) * (dout . r)  per (token, head), stored,

and the gate's dx[:W] = dl @ w and dw = dl^T @ x[:W] are two small torch matmuls. Either half can be off
(a layer without XSA, a model without the sparse gate). Both are `torch.library.custom_op`s with fake
implementations and a registered autograd formula (no graph break under torch.compile). Values are
computed in fp32 and rounded once, at the store.

On the H200 at the record's shapes its kernels take 68 us forward and 119 us backward, near the bytes at
HBM speed (about 63 and 100 us), against inductor's 281 us for both; in the training step (train.fused_xsa_gate)
1.6% / 2.4% more tokens/s before / after looping and 1.7 GiB less peak memory (BENCHMARKS.md, thirteenth
session).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

TOKENS = 32  # tokens per program (each with one KV head's G query heads)
NUM_WARPS = 4
NORM_EPS = 1e-12  # F.normalize's default


@triton.jit
def _tile(tok_block, kv, n_tok, HKV: tl.constexpr, G: tl.constexpr, GP: tl.constexpr,
          D: tl.constexpr, DP: tl.constexpr, TOKENS: tl.constexpr):
    """Offsets of the program's [TOKENS, GP, DP] tile of y (and of dy, out) and [TOKENS, DP] tile of v."""
    tok = tok_block.to(tl.int64) * TOKENS + tl.arange(0, TOKENS)
    g = tl.arange(0, GP)
    d = tl.arange(0, DP)
    head = kv * G + g
    tok_ok = tok < n_tok
    y_at = tok[:, None, None] * (HKV * G * D) + head[None, :, None] * D + d[None, None, :]
    y_ok = tok_ok[:, None, None] & (g < G)[None, :, None] & (d < D)[None, None, :]
    v_at = tok[:, None] * (HKV * D) + kv * D + d[None, :]
    v_ok = tok_ok[:, None] & (d < D)[None, :]
    return tok, head, y_at, y_ok, v_at, v_ok


@triton.jit
def _unit(v_ptr, v_at, v_ok, eps):
    """(vn, |v| clamped at eps) per token, as F.normalize."""
    v = tl.load(v_ptr + v_at, mask=v_ok, other=0.0).to(tl.float32)
    norm = tl.maximum(tl.sqrt(tl.sum(v * v, axis=1)), eps)
    return v / norm[:, None], norm


@triton.jit
def _gate(x_ptr, w_ptr, x_row, tok, head, n_tok, scale, G: tl.constexpr, GP: tl.constexpr,
          W: tl.constexpr, WP: tl.constexpr):
    """[TOKENS, GP] sigmoid(scale * x[tok, :W] . w[head])."""
    c = tl.arange(0, WP)
    x = tl.load(x_ptr + tok[:, None] * x_row + c[None, :], mask=(tok < n_tok)[:, None] & (c < W)[None, :],
                other=0.0).to(tl.float32)
    w_ok = (tl.arange(0, GP) < G)[:, None] & (c < W)[None, :]
    w = tl.load(w_ptr + head[:, None] * W + c[None, :], mask=w_ok, other=0.0).to(tl.float32)
    return tl.sigmoid(scale * tl.sum(x[:, None, :] * w[None, :, :], axis=2))


@triton.jit
def golf_xsa_gate_fwd(y_ptr, v_ptr, x_ptr, w_ptr, out_ptr, n_tok, x_row, scale, eps,
                      HKV: tl.constexpr, G: tl.constexpr, GP: tl.constexpr, D: tl.constexpr, DP: tl.constexpr,
                      W: tl.constexpr, WP: tl.constexpr, HAS_XSA: tl.constexpr, HAS_GATE: tl.constexpr,
                      TOKENS: tl.constexpr):
    tok, head, y_at, y_ok, v_at, v_ok = _tile(tl.program_id(0), tl.program_id(1), n_tok, HKV, G, GP, D, DP, TOKENS)
    y = tl.load(y_ptr + y_at, mask=y_ok, other=0.0).to(tl.float32)
    if HAS_XSA:
        vn, _ = _unit(v_ptr, v_at, v_ok, eps)
        y = y - tl.sum(y * vn[:, None, :], axis=2)[:, :, None] * vn[:, None, :]
    if HAS_GATE:
        y = y * _gate(x_ptr, w_ptr, x_row, tok, head, n_tok, scale, G, GP, W, WP)[:, :, None]
    tl.store(out_ptr + y_at, y.to(out_ptr.dtype.element_ty), mask=y_ok)


@triton.jit
def golf_xsa_gate_bwd(y_ptr, v_ptr, x_ptr, w_ptr, grad_ptr, dy_ptr, dv_ptr, dl_ptr, n_tok, x_row, scale, eps,
                      HKV: tl.constexpr, G: tl.constexpr, GP: tl.constexpr, D: tl.constexpr, DP: tl.constexpr,
                      W: tl.constexpr, WP: tl.constexpr, HAS_XSA: tl.constexpr, HAS_GATE: tl.constexpr,
                      TOKENS: tl.constexpr):
    tok, head, y_at, y_ok, v_at, v_ok = _tile(tl.program_id(0), tl.program_id(1), n_tok, HKV, G, GP, D, DP, TOKENS)
    y = tl.load(y_ptr + y_at, mask=y_ok, other=0.0).to(tl.float32)
    dr = tl.load(grad_ptr + y_at, mask=y_ok, other=0.0).to(tl.float32)
    if HAS_XSA:
        vn, norm = _unit(v_ptr, v_at, v_ok, eps)
        dot = tl.sum(y * vn[:, None, :], axis=2)
    if HAS_GATE:
        s = _gate(x_ptr, w_ptr, x_row, tok, head, n_tok, scale, G, GP, W, WP)
        r = y
        if HAS_XSA:
            r = y - dot[:, :, None] * vn[:, None, :]
        dl = scale * s * (1.0 - s) * tl.sum(dr * r, axis=2)
        head_ok = (tok < n_tok)[:, None] & (tl.arange(0, GP) < G)[None, :]
        tl.store(dl_ptr + tok[:, None] * (HKV * G) + head[None, :], dl, mask=head_ok)
        dr = dr * s[:, :, None]
    if HAS_XSA:
        drv = tl.sum(dr * vn[:, None, :], axis=2)
        dvn = -tl.sum(dot[:, :, None] * dr + drv[:, :, None] * y, axis=1)
        dv = (dvn - tl.sum(dvn * vn, axis=1)[:, None] * vn) / norm[:, None]
        dv = tl.where((norm > eps)[:, None], dv, dvn / eps)  # below eps F.normalize divides by eps itself
        tl.store(dv_ptr + v_at, dv.to(dv_ptr.dtype.element_ty), mask=v_ok)
        dr = dr - drv[:, :, None] * vn[:, None, :]
    tl.store(dy_ptr + y_at, dr.to(dy_ptr.dtype.element_ty), mask=y_ok)


def _launch(kernel, y: torch.Tensor, v: torch.Tensor | None, x: torch.Tensor | None, w: torch.Tensor | None,
            *args) -> None:
    """Run `kernel` over y (B, T, H, D) with v (B, T, Hkv, D) and the gate window x (B, T, W) and w (H, W) or
    None; args: the kernel's pointers and values between w and n_tok's (outputs, and grad for the backward)."""
    b, t, h, d = y.shape
    hkv = v.shape[2] if v is not None else h  # without XSA any grouping will do: one head each
    width = x.shape[-1] if x is not None else 1
    n_tok = b * t
    meta = dict(HKV=hkv, G=h // hkv, GP=triton.next_power_of_2(h // hkv), D=d, DP=triton.next_power_of_2(d),
                W=width, WP=triton.next_power_of_2(width), HAS_XSA=v is not None, HAS_GATE=x is not None,
                TOKENS=TOKENS, num_warps=NUM_WARPS)
    if n_tok:
        kernel[(triton.cdiv(n_tok, TOKENS), hkv)](y, y if v is None else v, y if x is None else x,
                                                  y if w is None else w, *args, **meta)


def _contiguous(v: torch.Tensor | None, w: torch.Tensor | None) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    return (v.contiguous() if v is not None else None), (w.contiguous() if w is not None else None)


def _window_rows(x: torch.Tensor | None) -> tuple[torch.Tensor | None, int]:
    """The gate window as (B, T, W) with unit column stride and one row stride (a slice of the input keeps
    the input's row stride: no copy), and that stride."""
    if x is None:
        return None, 0
    if x.stride(-1) != 1 or x.stride(0) != x.shape[1] * x.stride(1):
        x = x.contiguous()
    return x, x.stride(1)


@torch.library.custom_op("golf::xsa_gate", mutates_args=())
def _xsa_gate(y: torch.Tensor, v: torch.Tensor | None, x: torch.Tensor | None, w: torch.Tensor | None,
              scale: float) -> torch.Tensor:
    """y (B, T, H, D); v (B, T, Hkv, D) or None; x (B, T, W) and w (H, W), or None -> y's shape and dtype."""
    y = y.contiguous()
    v, w = _contiguous(v, w)
    x, x_row = _window_rows(x)
    out = torch.empty_like(y)
    _launch(golf_xsa_gate_fwd, y, v, x, w, out, y.shape[0] * y.shape[1], x_row, scale, NORM_EPS)
    return out


@_xsa_gate.register_fake
def _(y, v, x, w, scale):
    return torch.empty_like(y, memory_format=torch.contiguous_format)


@torch.library.custom_op("golf::xsa_gate_backward", mutates_args=())
def _xsa_gate_backward(y: torch.Tensor, v: torch.Tensor | None, x: torch.Tensor | None, w: torch.Tensor | None,
                       scale: float, grad: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(dy in y's dtype, dv in v's dtype (empty without v), dl (B*T, H) fp32 (empty without the gate))."""
    y, grad = y.contiguous(), grad.contiguous()
    v, w = _contiguous(v, w)
    x, x_row = _window_rows(x)
    n_tok = y.shape[0] * y.shape[1]
    dy = torch.empty_like(y)
    dv = torch.empty_like(v) if v is not None else y.new_empty(0)
    dl = torch.empty(n_tok if x is not None else 0, y.shape[2], device=y.device, dtype=torch.float32)
    _launch(golf_xsa_gate_bwd, y, v, x, w, grad, dy, dv, dl, n_tok, x_row, scale, NORM_EPS)
    return dy, dv, dl


@_xsa_gate_backward.register_fake
def _(y, v, x, w, scale, grad):
    n_tok = y.shape[0] * y.shape[1]
    return (torch.empty_like(y, memory_format=torch.contiguous_format),
            torch.empty_like(v, memory_format=torch.contiguous_format) if v is not None else y.new_empty(0),
            y.new_empty((n_tok if x is not None else 0, y.shape[2]), dtype=torch.float32))


def _setup_context(ctx, inputs, output):
    y, v, x, w, scale = inputs
    ctx.save_for_backward(y, v, x, w)
    ctx.scale = scale


def _backward(ctx, grad):
    y, v, x, w = ctx.saved_tensors
    dy, dv, dl = _xsa_gate_backward(y, v, x, w, ctx.scale, grad)
    dx = dw = None
    if x is not None:  # the gate's linear map, over all heads at once
        dx = (dl @ w.float()).view(x.shape).to(x.dtype)
        dw = (dl.t() @ x.reshape(-1, x.shape[-1]).float()).to(w.dtype)
    return dy, dv if v is not None else None, dx, dw, None


_xsa_gate.register_autograd(_backward, setup_context=_setup_context)


def xsa_gate(y: torch.Tensor, v: torch.Tensor | None, x: torch.Tensor | None, w: torch.Tensor | None,
             scale: float) -> torch.Tensor:
    """XSA against v (None: no XSA), then the sparse gate sigmoid(scale * x . w_h) per head (x None: no
    gate), fused and differentiable. y (B, T, H, D), v (B, T, Hkv, D), x the gate window (B, T, W)."""
    if v is None and x is None:
        return y
    return _xsa_gate(y, v, x, w, float(scale))


def xsa_gate_reference(y: torch.Tensor, v: torch.Tensor | None, x: torch.Tensor | None, w: torch.Tensor | None,
                       scale: float) -> torch.Tensor:
    """The eager definition, as golf/artifact/model/attention.py computes it."""
    from golf.artifact.model.attention import sparse_gate, xsa

    if v is not None:
        y = xsa(y, v)
    return y if x is None else y * sparse_gate(x, w, scale).to(y.dtype)[..., None]
