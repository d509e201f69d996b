"""Attention's query/key preparation as one pass: RMSNorm per head, partial RoPE, the per-head gain.

Eager (golf/artifact/model/attention.py `CausalSelfAttention.forward`), q = rms_norm(q), rotate its first
rope_dims dims (half-split pairs), q * q_gain, and the same for k without the gain. Compiled, inductor
made that four kernels for q and three for k, reading q four times (an rstd kernel, the rotated part,
the `cat` with the rest, the gain): 18 ms of a 627 ms step forward and 17 ms backward on the H200
(BENCHMARKS.md, twelfth session). Here one program takes a block of tokens with all their heads, reads
each from HBM once and writes it once, and reads a token's cos / sin row once for all its heads:

    forward:  y = gain * (xn * C + xn[p] * S),  xn = x * rstd,  rstd = 1 / sqrt(mean(x^2) + eps)

with p(d) the pair partner (d + half, d - half, d beyond rope_dims), C = cos on the rotated dims and 1
beyond, S = sin, -sin, 0. The backward reads x and the incoming gradient once and recomputes rstd:

    dxn = g' * C - g'[p] * S   (g' = gain * g),   dx = rstd * (dxn - xn * mean(dxn * xn)),

and d gain from each program's per-head sums of g * y / gain, summed over the programs. Both are
`torch.library.custom_op`s with fake implementations and a registered autograd formula (no graph break
under torch.compile). Values are computed in fp32 from the bf16 operands (xn, cos, sin rounded as eager
rounds them) and rounded once.

In the training step on the H200 (train.fused_qk): 1.5% more tokens/s than inductor's kernels and 1.7 GiB
less peak memory; q and k forward + backward take 261-267 us of kernel time (1,024-element tiles, 2 warps:
the fastest in the sweeps of two sessions) against inductor's 483-515 (BENCHMARKS.md, thirteenth and
fourteenth sessions).

`repeat` writes each head's result that many times in a row (k for attention with its KV heads repeated to
the query heads, train.fused_kv_repeat: golf/kernels/fa4.py), and the backward sums the copies' gradients
in fp32 as it reads them: one more store and one more load per element, in the kernels that touch k anyway.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

ELEMENTS = 1024  # elements of a program's [tokens, heads, dims] tile (bench/bench_qk_rope.py)
NUM_WARPS = 2
EPS = torch.finfo(torch.float32).eps  # what the compiled rms_norm adds (its fp32 computation's eps)


@triton.jit
def _tile(n_tok, H: tl.constexpr, HP: tl.constexpr, D: tl.constexpr, DP: tl.constexpr, TOKENS: tl.constexpr):
    """The program's tokens, heads, dims and the [TOKENS, HP, DP] tile's offsets and mask in x (B, T, H, D)."""
    tok = tl.program_id(0).to(tl.int64) * TOKENS + tl.arange(0, TOKENS)
    head = tl.arange(0, HP)
    cols = tl.arange(0, DP)
    at = tok[:, None, None] * (H * D) + head[None, :, None] * D + cols[None, None, :]
    ok = (tok < n_tok)[:, None, None] & (head < H)[None, :, None] & (cols < D)[None, None, :]
    return tok, head, cols, at, ok


@triton.jit
def _rope_tables(cos_ptr, sin_ptr, tok, cols, n_tok, seq_len, HALF: tl.constexpr):
    """(partner column, C, S, whether the column rotates), C and S [TOKENS, 1, DP] read once per token and
    rounded to bf16 as the eager tables are."""
    rot = cols < 2 * HALF
    first = cols < HALF
    partner = tl.where(first, cols + HALF, tl.where(rot, cols - HALF, cols))
    at = (tok % seq_len)[:, None] * HALF + tl.where(first, cols, cols - HALF)[None, :]
    table_ok = (tok < n_tok)[:, None] & rot[None, :]
    c = tl.load(cos_ptr + at, mask=table_ok, other=1.0).to(tl.bfloat16).to(tl.float32)
    s = tl.load(sin_ptr + at, mask=table_ok, other=0.0).to(tl.bfloat16).to(tl.float32)
    s = tl.where(first[None, :], s, -s)
    return partner[None, None, :], c[:, None, :], s[:, None, :], rot[None, None, :]


@triton.jit
def _out_at(tok, head, col3, r, H: tl.constexpr, D: tl.constexpr, REPEAT: tl.constexpr):
    """Offsets of copy r of each head in the (B, T, H * REPEAT, D) output (head h's copies: h * REPEAT + r);
    col3 the [1, 1, DP] columns."""
    return tok[:, None, None] * (H * REPEAT * D) + (head * REPEAT + r)[None, :, None] * D + col3


@triton.jit
def _grad(grad_ptr, tok, head, col3, mask, H: tl.constexpr, D: tl.constexpr, REPEAT: tl.constexpr):
    """The incoming gradient at col3, summed in fp32 over each head's REPEAT copies."""
    g = tl.load(grad_ptr + _out_at(tok, head, col3, 0, H, D, REPEAT), mask=mask, other=0.0).to(tl.float32)
    for r in tl.static_range(1, REPEAT):
        g += tl.load(grad_ptr + _out_at(tok, head, col3, r, H, D, REPEAT), mask=mask, other=0.0).to(tl.float32)
    return g


@triton.jit
def golf_qk_rope_fwd(x_ptr, cos_ptr, sin_ptr, gain_ptr, out_ptr, n_tok, seq_len, eps,
                     H: tl.constexpr, HP: tl.constexpr, D: tl.constexpr, DP: tl.constexpr, HALF: tl.constexpr,
                     HAS_GAIN: tl.constexpr, TOKENS: tl.constexpr, REPEAT: tl.constexpr):
    tok, head, cols, at, ok = _tile(n_tok, H, HP, D, DP, TOKENS)
    x = tl.load(x_ptr + at, mask=ok, other=0.0).to(tl.float32)
    rstd = 1.0 / tl.sqrt(tl.sum(x * x, axis=2) / D + eps)
    partner, c, s, rot = _rope_tables(cos_ptr, sin_ptr, tok, cols, n_tok, seq_len, HALF)
    # the partner only where S is not 0: the columns that do not rotate issue no second load
    xp = tl.load(x_ptr + at - cols[None, None, :] + partner, mask=ok & rot, other=0.0).to(tl.float32)
    xn = (x * rstd[:, :, None]).to(tl.bfloat16).to(tl.float32)
    xpn = (xp * rstd[:, :, None]).to(tl.bfloat16).to(tl.float32)
    y = xn * c + xpn * s
    if HAS_GAIN:
        gain = tl.load(gain_ptr + head, mask=head < H, other=0.0).to(tl.bfloat16).to(tl.float32)
        y = y * gain[None, :, None]
    for r in tl.static_range(REPEAT):
        tl.store(out_ptr + _out_at(tok, head, cols[None, None, :], r, H, D, REPEAT), y.to(out_ptr.dtype.element_ty),
                 mask=ok)


@triton.jit
def golf_qk_rope_bwd(x_ptr, grad_ptr, cos_ptr, sin_ptr, gain_ptr, dx_ptr, dgain_ptr, n_tok, seq_len, eps,
                     H: tl.constexpr, HP: tl.constexpr, D: tl.constexpr, DP: tl.constexpr, HALF: tl.constexpr,
                     HAS_GAIN: tl.constexpr, TOKENS: tl.constexpr, REPEAT: tl.constexpr):
    tok, head, cols, at, ok = _tile(n_tok, H, HP, D, DP, TOKENS)
    x = tl.load(x_ptr + at, mask=ok, other=0.0).to(tl.float32)
    rstd = 1.0 / tl.sqrt(tl.sum(x * x, axis=2) / D + eps)
    xn = x * rstd[:, :, None]
    partner, c, s, rot = _rope_tables(cos_ptr, sin_ptr, tok, cols, n_tok, seq_len, HALF)
    partner_at = at - cols[None, None, :] + partner
    g = _grad(grad_ptr, tok, head, cols[None, None, :], ok, H, D, REPEAT)
    gp = _grad(grad_ptr, tok, head, partner, ok & rot, H, D, REPEAT)
    if HAS_GAIN:
        xp = tl.load(x_ptr + partner_at, mask=ok & rot, other=0.0).to(tl.float32)
        y = xn.to(tl.bfloat16).to(tl.float32) * c + (xp * rstd[:, :, None]).to(tl.bfloat16).to(tl.float32) * s
        # this program's share of d gain, per head; the launcher sums the programs'
        tl.store(dgain_ptr + tl.program_id(0) * H + head, tl.sum(tl.sum(g * y, axis=2), axis=0), mask=head < H)
        gain = tl.load(gain_ptr + head, mask=head < H, other=0.0).to(tl.bfloat16).to(tl.float32)
        g, gp = g * gain[None, :, None], gp * gain[None, :, None]
    dxn = g * c - gp * s
    dx = rstd[:, :, None] * (dxn - xn * (tl.sum(dxn * xn, axis=2) / D)[:, :, None])
    tl.store(dx_ptr + at, dx.to(dx_ptr.dtype.element_ty), mask=ok)


def _launch_args(x: torch.Tensor, rope_dims: int, repeat: int = 1) -> tuple[int, tuple[int], dict]:
    """(tokens, grid, the kernels' compile-time arguments) for x (B, T, H, D), each head's output `repeat` times."""
    h, d = x.shape[2:]
    hp, dp = triton.next_power_of_2(h), triton.next_power_of_2(d)
    tokens = max(1, ELEMENTS // (hp * dp))
    n_tok = x.shape[0] * x.shape[1]
    meta = dict(H=h, HP=hp, D=d, DP=dp, HALF=rope_dims // 2, TOKENS=tokens, REPEAT=repeat, num_warps=NUM_WARPS)
    return n_tok, (triton.cdiv(n_tok, tokens),), meta


def _repeated(x: torch.Tensor, repeat: int) -> torch.Tensor:
    """An empty contiguous (B, T, H * repeat, D) tensor like x."""
    return x.new_empty((*x.shape[:2], x.shape[2] * repeat, x.shape[3]))


@torch.library.custom_op("golf::qk_rope", mutates_args=())
def _qk_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, gain: torch.Tensor | None,
             rope_dims: int, repeat: int = 1) -> torch.Tensor:
    """x (B, T, H, D); cos, sin (T, rope_dims / 2) fp32; gain (H,) or None -> (B, T, H * repeat, D) in x's
    dtype, each head `repeat` times in a row."""
    x, cos, sin = x.contiguous(), cos.contiguous(), sin.contiguous()
    out = _repeated(x, repeat)
    if x.numel():
        n_tok, grid, meta = _launch_args(x, rope_dims, repeat)
        golf_qk_rope_fwd[grid](x, cos, sin, gain if gain is not None else x, out, n_tok, x.shape[1], EPS,
                               HAS_GAIN=gain is not None, **meta)
    return out


@_qk_rope.register_fake
def _(x, cos, sin, gain, rope_dims, repeat=1):
    return _repeated(x, repeat)


@torch.library.custom_op("golf::qk_rope_backward", mutates_args=())
def _qk_rope_backward(x: torch.Tensor, grad: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor,
                      gain: torch.Tensor | None, rope_dims: int, repeat: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """(d x in x's dtype, each program's share of d gain in fp32: (programs, H), (0, H) without a gain); grad
    (B, T, H * repeat, D), the copies of a head summed."""
    x, grad, cos, sin = x.contiguous(), grad.contiguous(), cos.contiguous(), sin.contiguous()
    heads = x.shape[2]
    n_tok, grid, meta = _launch_args(x, rope_dims, repeat)
    dx = torch.empty_like(x)
    # each program's d gain, all written
    per_program = torch.empty(grid[0] if gain is not None else 0, heads, device=x.device, dtype=torch.float32)
    if x.numel():
        golf_qk_rope_bwd[grid](x, grad, cos, sin, gain if gain is not None else x, dx, per_program, n_tok,
                               x.shape[1], EPS, HAS_GAIN=gain is not None, **meta)
    return dx, per_program


@_qk_rope_backward.register_fake
def _(x, grad, cos, sin, gain, rope_dims, repeat=1):
    n_programs = _launch_args(x, rope_dims)[1][0] if gain is not None else 0
    return (torch.empty_like(x, memory_format=torch.contiguous_format),
            x.new_empty((n_programs, x.shape[2]), dtype=torch.float32))


def _setup_context(ctx, inputs, output):
    x, cos, sin, gain, rope_dims, repeat = inputs  # torch fills in the defaults
    ctx.save_for_backward(x, cos, sin, gain)
    ctx.rope_dims, ctx.repeat = rope_dims, repeat


def _backward(ctx, grad):
    x, cos, sin, gain = ctx.saved_tensors
    dx, dgain_shares = _qk_rope_backward(x, grad, cos, sin, gain, ctx.rope_dims, ctx.repeat)
    # summed here, in the traced graph: one of inductor's kernels instead of an eager reduce launched from the
    # op's Python per call ("other" 0.9 ms less a step on the H200; BENCHMARKS.md, nineteenth session)
    return dx, None, None, None if gain is None else dgain_shares.sum(0).to(gain.dtype), None, None


_qk_rope.register_autograd(_backward, setup_context=_setup_context)


def qk_rope(x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor], gain: torch.Tensor | None,
            rope_dims: int, repeat: int = 1) -> torch.Tensor:
    """rms_norm over the last dim, RoPE on its first rope_dims, times gain per head (if given), fused and
    differentiable. x (B, T, H, D) contiguous-able; rope: Rotary's (cos, sin), (1, T, 1, rope_dims / 2);
    repeat: each head's result that many times in a row, as repeat_interleave(repeat, 2) would give it
    (k for attention with its KV heads repeated: golf/kernels/fa4.py `fa4_fwd`'s kv_repeat)."""
    cos, sin = (t.reshape(t.shape[1], t.shape[-1]).float() for t in rope)
    return _qk_rope(x, cos, sin, gain, rope_dims, repeat)


def qk_rope_reference(x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor], gain: torch.Tensor | None,
                      rope_dims: int, repeat: int = 1) -> torch.Tensor:
    """The eager definition, as golf/artifact/model/attention.py computes q (with q_gain) and k."""
    from golf.artifact.model.attention import apply_rotary

    y = apply_rotary(torch.nn.functional.rms_norm(x, (x.shape[-1],), eps=EPS), *rope, rope_dims)
    y = y if gain is None else y * gain.to(y.dtype)[:, None]
    return y.repeat_interleave(repeat, 2) if repeat > 1 else y
