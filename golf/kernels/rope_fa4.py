"""Attention on documents with its q / k preparation as one op: golf::qk_rope, then FA4's varlen kernels.

Forward: q and k through golf/kernels/qk_rope.py (RMSNorm per head, partial RoPE, q's gain), then FA4's
forward (golf/kernels/fa4.py). Backward: FA4's backward leaves dQ and dK in its fp32 accumulators
(golf/kernels/fa4_accum.py) and the q / k backward reads them there, instead of FA4 writing dq and dk in
bf16 and golf::qk_rope_backward reading them back. As separate ops the two could not do that: autograd
hands a gradient from op to op only as a tensor of the forward's shape and dtype.

    golf::rope_fa4(q, k, v, cos, sin, gain, cu_seqlens, rope_dims) -> (out, lse, q rotated, k rotated)

q (B, T, H, D), k and v (B, T, Hkv, D) in bf16 or fp16, the documents packed over the B * T tokens as
cu_seqlens; out (B, T, H, D). Training only, with train.fused_qk_fa4 (golf/train/fused.py installs it).
"""

from __future__ import annotations

import torch
from torch import Tensor

from golf.kernels import fa4, fa4_accum
from golf.kernels.qk_rope import _qk_rope, _qk_rope_backward, qk_rope_backward_accum, rope_tables


def _flat(t: Tensor) -> Tensor:
    return t.reshape(t.shape[0] * t.shape[1], *t.shape[2:])


@torch.library.custom_op("golf::rope_fa4", mutates_args=(), device_types="cuda")
def rope_fa4(q: Tensor, k: Tensor, v: Tensor, cos: Tensor, sin: Tensor, gain: Tensor, cu_seqlens: Tensor,
             rope_dims: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    qr, kr = _qk_rope(q, cos, sin, gain, rope_dims), _qk_rope(k, cos, sin, None, rope_dims)
    out, lse = fa4.fa4_fwd(_flat(qr), _flat(kr), _flat(v), cu_seqlens, q.shape[1])
    return out.view(q.shape), lse, qr, kr


@rope_fa4.register_fake
def _(q, k, v, cos, sin, gain, cu_seqlens, rope_dims):
    lse = q.new_empty((q.shape[2], q.shape[0] * q.shape[1]), dtype=torch.float32)  # FA4's varlen (H, N)
    return torch.empty_like(q), lse, torch.empty_like(q), torch.empty_like(k)


def _q_k_backward(x: Tensor, grad, cos: Tensor, sin: Tensor, gain: Tensor | None, rope_dims: int,
                  cu_seqlens: Tensor) -> tuple[Tensor, Tensor]:
    """qk_rope's backward from FA4's accumulator, or from its bf16 gradient where FA4 wrote one."""
    if isinstance(grad, fa4_accum.Accum):
        return qk_rope_backward_accum(x, grad, cos, sin, gain, rope_dims, cu_seqlens)
    return _qk_rope_backward(x, grad.view(x.shape), cos, sin, gain, rope_dims)


@torch.library.custom_op("golf::rope_fa4_bwd", mutates_args=(), device_types="cuda")
def rope_fa4_bwd(q: Tensor, k: Tensor, v: Tensor, qr: Tensor, kr: Tensor, out: Tensor, dout: Tensor, lse: Tensor,
                 cos: Tensor, sin: Tensor, gain: Tensor, cu_seqlens: Tensor,
                 rope_dims: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """(d q, d k, d v, d gain in fp32)."""
    dq_acc, dk_acc, dv = fa4_accum.backward(_flat(qr), _flat(kr), _flat(v), _flat(out), _flat(dout.contiguous()),
                                            lse, cu_seqlens, q.shape[1])
    dq, gain_shares = _q_k_backward(q, dq_acc, cos, sin, gain, rope_dims, cu_seqlens)
    dk, _ = _q_k_backward(k, dk_acc, cos, sin, None, rope_dims, cu_seqlens)
    return dq, dk, dv.view(v.shape), gain_shares.sum(0)


@rope_fa4_bwd.register_fake
def _(q, k, v, qr, kr, out, dout, lse, cos, sin, gain, cu_seqlens, rope_dims):
    return torch.empty_like(q), torch.empty_like(k), torch.empty_like(v), gain.new_empty(gain.shape, dtype=torch.float32)


def _setup_context(ctx, inputs, output) -> None:
    q, k, v, cos, sin, gain, cu_seqlens, rope_dims = inputs
    out, lse, qr, kr = output
    ctx.save_for_backward(q, k, v, qr, kr, out, lse, cos, sin, gain, cu_seqlens)
    ctx.rope_dims = rope_dims


def _backward(ctx, dout, _dlse, _dqr, _dkr):
    q, k, v, qr, kr, out, lse, cos, sin, gain, cu_seqlens = ctx.saved_tensors
    dq, dk, dv, dgain = rope_fa4_bwd(q, k, v, qr, kr, out, dout, lse, cos, sin, gain, cu_seqlens, ctx.rope_dims)
    return dq, dk, dv, None, None, dgain.to(gain.dtype), None, None


rope_fa4.register_autograd(_backward, setup_context=_setup_context)


def rope_attention(q: Tensor, k: Tensor, v: Tensor, rope: tuple[Tensor, Tensor], gain: Tensor, rope_dims: int,
                   cu_seqlens: Tensor) -> Tensor:
    """Causal attention within the documents cu_seqlens of rms_norm + RoPE + gain'd q and rms_norm + RoPE'd k,
    as golf/artifact/model/attention.py computes it with train.fused_qk: (B, T, H, D) q, (B, T, Hkv, D) k and v
    of one half-precision dtype, rope: Rotary's (cos, sin) -> (B, T, H, D)."""
    if not (q.dtype == k.dtype == v.dtype and v.dtype in (torch.bfloat16, torch.float16)):
        raise ValueError(f"rope_attention: q, k, v must share bf16 or fp16, not {q.dtype}, {k.dtype}, {v.dtype}")
    cos, sin = rope_tables(rope)
    return rope_fa4(q.contiguous(), k.contiguous(), v.contiguous(), cos, sin, gain, cu_seqlens, rope_dims)[0]
