"""FlashAttention 4 (`flash_attn.cute`, the `flash-attn-4` package) as torch.library custom ops.

FA4's own entry points are `torch.autograd.Function`s that torch.compile cannot trace
(`fullgraph=True` fails; otherwise each call is a graph break). Here its forward and backward
kernels are two custom ops with fake (shape-only) implementations and an autograd formula, so a
compiled graph holds each attention call as one opaque node and never breaks:

    golf::fa4_fwd(q, k, v, cu_seqlens, max_seqlen, kv_repeat=1) -> (out, lse)
    golf::fa4_bwd(q, k, v, out, dout, lse, cu_seqlens, max_seqlen) -> (dq, dk, dv)

Always causal (every golf attention is). Dense: q (B, T, H, D), k and v (B, T, Hkv, D),
cu_seqlens None. Varlen: q (N, H, D), k and v (N, Hkv, D) holding packed sequences,
cu_seqlens int32 (S + 1,) from 0 to N (equal neighbours are empty sequences), max_seqlen an
upper bound of every length: pass a constant (the row length), since torch.compile specializes
on an int argument. GQA as FA4 does it: H a multiple of Hkv, query head h reads KV head h // (H / Hkv).

kv_repeat r > 1 says k and v come with each KV head repeated r times in a row (H heads, as
repeat_interleave(r) or golf/kernels/qk_rope.py's `repeat` makes them; train.fused_kv_repeat). The forward
then runs GQA on the views k[..., ::r, :] and v[..., ::r, :] (no copy; on the repeated heads FA4's forward
took 476 against 423 us), and the backward runs on the repeated heads as plain multi-head attention. Under
GQA, FA4's backward adds each query head's dK / dV into zeroed fp32 accumulators and converts them in a
postprocess kernel; with one query head per KV head it writes bf16 dK / dV itself. On the H200 at golf's
document-masked micro-batch (48 x 2,048 tokens, 8 / 4 heads of 64): 908 against 1,118 us a backward call:
the main kernel 711 against 780, the postprocess 82 against 165 (dQ's only), no 55 us of fills
(BENCHMARKS.md, twenty-fourth session). The gradients are those of the repeated k and v; whoever repeated
them sums each head's copies (qk_rope's backward does, in fp32).

CUDA runs FA4 (`available()` says whether it imports) in bf16 (fp16 stays fp16, anything else is
cast and the results cast back); CPU runs a float32 reference of the same math, so the ops'
registration (fakes, autograd, compile) is testable without a GPU. `register()` installs the ops as
the "fa4" attention backend of the model (training only: the bundled artifact never imports this
package).
"""

from __future__ import annotations

import functools
from typing import Callable, Optional

import torch
from torch import Tensor

INSTALL_HINT = "pip install -e '.[gpu]' on a GPU machine (pyproject's gpu extra)"


@functools.cache
def _import_error() -> str | None:
    """Why flash_attn.cute does not import here (None when it does); the import is slow, so once."""
    try:
        import flash_attn.cute.interface  # noqa: F401
    except Exception as e:  # ImportError, or a wheel built for another CUDA / CUTLASS DSL
        return f"{type(e).__name__}: {e}"
    return None


def available() -> bool:
    """True when FlashAttention 4's kernels import (they still need a Hopper or Blackwell GPU)."""
    return _import_error() is None


def unavailable_reason() -> str:
    """Why FA4 is not in use here, with how to install it ("" when it imports)."""
    err = _import_error()
    return "" if err is None else f"flash_attn.cute does not import ({err}); {INSTALL_HINT}"


def _kernels() -> tuple[Callable, Callable]:
    if not available():
        raise RuntimeError(f"FlashAttention 4: {unavailable_reason()}")
    from flash_attn.cute.interface import _flash_attn_bwd, _flash_attn_fwd

    return _flash_attn_fwd, _flash_attn_bwd


def _half(*ts: Tensor) -> list[Tensor]:
    """FA4 takes fp16 / bf16 only: anything else runs in bf16 (under autocast q, k, v already are)."""
    return [t if t.dtype in (torch.float16, torch.bfloat16) else t.to(torch.bfloat16) for t in ts]


def _lse_shape(q: Tensor, varlen: bool) -> tuple[int, ...]:
    """FA4's log-sum-exp layout: (B, H, T) dense, (H, N) varlen; float32, contiguous."""
    return (q.size(1), q.size(0)) if varlen else (q.size(0), q.size(2), q.size(1))


# ---- the ops ----------------------------------------------------------------------------------

@torch.library.custom_op("golf::fa4_fwd", mutates_args=(), device_types="cuda")
def fa4_fwd(q: Tensor, k: Tensor, v: Tensor, cu_seqlens: Optional[Tensor],
            max_seqlen: int, kv_repeat: int = 1) -> tuple[Tensor, Tensor]:
    fwd, _ = _kernels()
    ms = max_seqlen if cu_seqlens is not None else None
    qh, kh, vh = (t.contiguous() for t in _half(q, k, v))
    if kv_repeat > 1:  # every kv_repeat-th head: GQA's forward, through strided views (no copy)
        kh, vh = kh[..., ::kv_repeat, :], vh[..., ::kv_repeat, :]
    out, lse = fwd(qh, kh, vh, cu_seqlens_q=cu_seqlens, cu_seqlens_k=cu_seqlens, max_seqlen_q=ms,
                   max_seqlen_k=ms, causal=True, return_lse=True)[:2]
    return out.to(q.dtype), lse


@fa4_fwd.register_fake
def _(q, k, v, cu_seqlens, max_seqlen, kv_repeat=1):
    # FA4 allocates both outputs fresh and contiguous (flash_attn/cute/interface.py _flash_attn_fwd)
    out = q.new_empty((*q.shape[:-1], v.size(-1)))
    return out, q.new_empty(_lse_shape(q, cu_seqlens is not None), dtype=torch.float32)


@torch.library.custom_op("golf::fa4_bwd", mutates_args=(), device_types="cuda")
def fa4_bwd(q: Tensor, k: Tensor, v: Tensor, out: Tensor, dout: Tensor, lse: Tensor,
            cu_seqlens: Optional[Tensor], max_seqlen: int) -> tuple[Tensor, Tensor, Tensor]:
    _, bwd = _kernels()
    ms = max_seqlen if cu_seqlens is not None else None
    # contiguous inputs, so FA4's empty_like(q) gradients are contiguous too (what the fake says)
    qh, kh, vh, oh, doh = (t.contiguous() for t in _half(q, k, v, out, dout))
    dq, dk, dv = bwd(qh, kh, vh, oh, doh, lse, causal=True, cu_seqlens_q=cu_seqlens, cu_seqlens_k=cu_seqlens,
                     max_seqlen_q=ms, max_seqlen_k=ms)[:3]
    return dq.to(q.dtype), dk.to(k.dtype), dv.to(v.dtype)


@fa4_bwd.register_fake
def _(q, k, v, out, dout, lse, cu_seqlens, max_seqlen):
    return q.new_empty(q.shape), k.new_empty(k.shape), v.new_empty(v.shape)


def _setup_context(ctx, inputs, output) -> None:
    q, k, v, cu_seqlens, max_seqlen, _kv_repeat = inputs  # the backward needs no kv_repeat
    ctx.save_for_backward(q, k, v, output[0], output[1], cu_seqlens)
    ctx.max_seqlen = max_seqlen


def _backward(ctx, dout, _dlse):
    q, k, v, out, lse, cu_seqlens = ctx.saved_tensors
    dq, dk, dv = fa4_bwd(q, k, v, out, dout, lse, cu_seqlens, ctx.max_seqlen)
    return dq, dk, dv, None, None, None


fa4_fwd.register_autograd(_backward, setup_context=_setup_context)


# ---- the CPU reference (same math in float32; tests run the ops' registration through it) -----

def _segments(n: int, cu_seqlens: Tensor | None, device: torch.device) -> Tensor:
    """(1, N, N) allowed pairs: causal, and within one packed sequence when cu_seqlens is given."""
    pos = torch.arange(n, device=device)
    allowed = pos[:, None] >= pos[None, :]
    if cu_seqlens is not None:
        seg = torch.searchsorted(cu_seqlens.to(device=device, dtype=torch.long), pos, right=True)
        allowed &= seg[:, None] == seg[None, :]
    return allowed[None]


def _batched(q: Tensor, k: Tensor, v: Tensor, varlen: bool) -> tuple[Tensor, Tensor, Tensor, int]:
    """(B, T, H, D) float32 views (varlen: B = 1) with k and v repeated to H heads; the group size."""
    q, k, v = (t[None] if varlen else t for t in (q, k, v))
    g = q.size(2) // k.size(2)
    return q.float(), k.float().repeat_interleave(g, 2), v.float().repeat_interleave(g, 2), g


def _probs(q: Tensor, k: Tensor, allowed: Tensor) -> tuple[Tensor, Tensor]:
    """(P, lse): P (B, H, T, T) softmax probabilities of the allowed scaled scores, lse (B, H, T)."""
    s = torch.einsum("bthd,bshd->bhts", q, k) * q.size(-1) ** -0.5
    s = s.masked_fill(~allowed[:, None], float("-inf"))
    lse = torch.logsumexp(s, dim=-1)
    return torch.exp(s - lse[..., None]), lse


@fa4_fwd.register_kernel("cpu")
def _(q, k, v, cu_seqlens, max_seqlen, kv_repeat=1):
    varlen = cu_seqlens is not None
    qf, kf, vf, _ = _batched(q, k, v, varlen)
    p, lse = _probs(qf, kf, _segments(qf.size(1), cu_seqlens, q.device))
    out = torch.einsum("bhts,bshd->bthd", p, vf).to(q.dtype)
    out, lse = (out[0], lse[0]) if varlen else (out, lse)
    return out.contiguous(), lse.contiguous()  # the layout FA4 returns (and the fake promises)


@fa4_bwd.register_kernel("cpu")
def _(q, k, v, out, dout, lse, cu_seqlens, max_seqlen):
    # the textbook attention backward: dS = P * (dP - rowsum(dO * O)), scaled
    varlen = cu_seqlens is not None
    qf, kf, vf, g = _batched(q, k, v, varlen)
    do, o = (t[None].float() if varlen else t.float() for t in (dout, out))
    p, _ = _probs(qf, kf, _segments(qf.size(1), cu_seqlens, q.device))
    dv = torch.einsum("bhts,bthd->bshd", p, do)
    dp = torch.einsum("bthd,bshd->bhts", do, vf)
    ds = p * (dp - (do * o).sum(-1).transpose(1, 2)[..., None]) * q.size(-1) ** -0.5
    dq = torch.einsum("bhts,bshd->bthd", ds, kf)
    dk = torch.einsum("bhts,bthd->bshd", ds, qf)
    b, t, h, d = dk.shape
    dk, dv = (x.reshape(b, t, h // g, g, d).sum(3) for x in (dk, dv))  # back to the KV heads
    grads = (dq.to(q.dtype), dk.to(k.dtype), dv.to(v.dtype))
    return tuple((x[0] if varlen else x).contiguous() for x in grads)


# ---- what the model calls ---------------------------------------------------------------------

def attention(q: Tensor, k: Tensor, v: Tensor, kv_repeat: int = 1) -> Tensor:
    """Causal attention, q (B, T, H, D), k and v (B, T, Hkv, D) -> (B, T, H, D); kv_repeat: `fa4_fwd`."""
    return fa4_fwd(q, k, v, None, 0, kv_repeat)[0]


def varlen_attention(q: Tensor, k: Tensor, v: Tensor, cu_seqlens: Tensor, max_seqlen: int,
                     kv_repeat: int = 1) -> Tensor:
    """Causal attention within each packed sequence: q (N, H, D), k and v (N, Hkv, D) -> (N, H, D);
    kv_repeat: `fa4_fwd`."""
    return fa4_fwd(q, k, v, cu_seqlens, max_seqlen, kv_repeat)[0]


def register() -> bool:
    """Install the ops as the model's "fa4" attention backend (dense and document-masked varlen), so
    attention_backend auto picks them on Hopper and Blackwell; False, and nothing installed, when FA4
    does not import. Training calls this; the bundled artifact never does (it keeps SDPA)."""
    if not available():
        return False
    from golf.artifact.model.attention import register_backend

    register_backend("fa4", attention, varlen_attention)
    return True
