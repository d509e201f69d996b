"""The q / k backward read from FA4's fp32 dQ / dK accumulators (golf/kernels/fa4_accum.py): kernel designs
against golf::qk_rope_backward on FA4's bf16 dq / dk, on one micro-batch of golf's documents at the record's
shapes (48 x 2,048 tokens, q 8 heads and k 4 heads of 64 dims, 16 rotated), q's and k's backward together, device
us per call (bench/kernel_time.py). Each design's d x is checked against the bf16 path (rel. norm; the
`identity` rows skip the tile order on purpose and are wrong: what the gather costs). The twenty-second
session's record of why train.fused_qk_fa4 was removed (BENCHMARKS.md); kept in git history only.

    python bench/bench_accum_variants.py --tokens .device-data/tokens [--only NAME_PART]

  committed          golf_qk_rope_bwd_accum as merged: a (tile, head) program, 32-row chunks, binary search
  rows{R}w{W}[-vec]  one R-row chunk of a tile and head per program (vec: the tile's sequence by one vector
                     count over cu_seqlens instead of a binary search)
  tok{T}w{W}         token-major like golf_qk_rope_bwd: T tokens x all heads, each token's padded row counted
  native-h{H}w{W}    16 rows per program read in FA4's SM90 fragment order (the order's formula, checked against
                     the probe) as 128-float runs, permuted to rows in registers; H heads per program
  pipe-g{G}s{S}w{W}  native, G row groups x all heads per program in a software-pipelined loop of S stages
  gather-h{H}w{W}    a whole tile per program, permuted by tl.gather
"""
from __future__ import annotations

import argparse
from pathlib import Path

import torch
import triton
import triton.language as tl
from fa4_configs import micro_batches
from kernel_time import kernel_us

from golf.artifact.model.attention import Rotary
from golf.kernels import fa4, fa4_accum
from golf.kernels.qk_rope import (
    EPS,
    _qk_rope_backward,
    _rope_backward,
    _rope_tables,
    qk_rope_backward_accum,
    rope_tables,
)


@triton.jit
def _seq_of_tile(cu_ptr, n_seq, m, TILE: tl.constexpr):
    p0 = m * TILE
    lo = m * 0
    hi = m * 0 + n_seq
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if (tl.load(cu_ptr + mid) + mid * TILE) // TILE * TILE <= p0:
            lo = mid
        else:
            hi = mid
    first = tl.load(cu_ptr + lo)
    start = first + p0 - (first + lo * TILE) // TILE * TILE
    end = tl.load(cu_ptr + lo + 1)
    return start, end


@triton.jit
def _padded(cu_ptr, s, TILE: tl.constexpr):
    return (tl.load(cu_ptr + s) + s * TILE) // TILE * TILE


@triton.jit
def _seq_of_tile_vec(cu_ptr, n_seq, m, TILE: tl.constexpr, SB: tl.constexpr):
    """the same as _seq_of_tile with independent loads: count the sequences whose padded start is <= p0."""
    p0 = m * TILE
    count = m * 0
    base = m * 0
    while base < n_seq:
        s = base + tl.arange(0, SB)
        ps = (tl.load(cu_ptr + s, mask=s < n_seq, other=0) + s * TILE) // TILE * TILE
        count += tl.sum(((ps <= p0) & (s < n_seq)).to(tl.int32), axis=0)
        base += SB
    lo = count - 1
    first = tl.load(cu_ptr + lo)
    start = first + p0 - (first + lo * TILE) // TILE * TILE
    end = tl.load(cu_ptr + lo + 1)
    return start, end


@triton.jit
def k_tok(x_ptr, acc_ptr, order_ptr, cu_ptr, n_seq, n_tok, cos_ptr, sin_ptr, gain_ptr, dx_ptr, dgain_ptr,
          seq_len, eps, scale, plane, H: tl.constexpr, HP: tl.constexpr, D: tl.constexpr, DP: tl.constexpr,
          HALF: tl.constexpr, HAS_GAIN: tl.constexpr, TILE: tl.constexpr, TILE_HDIM: tl.constexpr,
          TOKENS: tl.constexpr, SB: tl.constexpr):
    """token-major like golf_qk_rope_bwd: [TOKENS, HP, DP] per program, each token's padded row found by a
    vector count over cu_seqlens."""
    tok = tl.program_id(0).to(tl.int64) * TOKENS + tl.arange(0, TOKENS)
    head = tl.arange(0, HP)
    cols = tl.arange(0, DP)
    at = tok[:, None, None] * (H * D) + head[None, :, None] * D + cols[None, None, :]
    ok = (tok < n_tok)[:, None, None] & (head < H)[None, :, None] & (cols < D)[None, None, :]
    count = tl.zeros((TOKENS,), dtype=tl.int32)
    base = tl.program_id(0) * 0
    while base < n_seq:
        s = base + 1 + tl.arange(0, SB)
        c0 = tl.load(cu_ptr + s, mask=s <= n_seq, other=2147483647)
        count += tl.sum((c0[None, :] <= tok[:, None]).to(tl.int32), axis=1)
        base += SB
    seq = tl.minimum(count, n_seq - 1)
    first = tl.load(cu_ptr + seq)
    prow = tok + ((first + seq * TILE) // TILE * TILE - first)
    tile_off = (prow // TILE) * (TILE * TILE_HDIM)
    in_tile = (prow % TILE)[:, None, None] * D
    acc_at = acc_ptr + head[None, :, None].to(tl.int64) * plane + tile_off[:, None, None]
    partner, c, s_, rot = _rope_tables(cos_ptr, sin_ptr, tok, cols, n_tok, seq_len, HALF)
    g = tl.load(acc_at + tl.load(order_ptr + in_tile + cols[None, None, :], mask=ok, other=0), mask=ok, other=0.0)
    gp = tl.load(acc_at + tl.load(order_ptr + in_tile + partner, mask=ok & rot, other=0), mask=ok & rot, other=0.0)
    g = g * scale
    gp = gp * scale
    x = tl.load(x_ptr + at, mask=ok, other=0.0).to(tl.float32)
    rstd = 1.0 / tl.sqrt(tl.sum(x * x, axis=2) / D + eps)
    xn = x * rstd[:, :, None]
    if HAS_GAIN:
        xp = tl.load(x_ptr + at - cols[None, None, :] + partner, mask=ok & rot, other=0.0).to(tl.float32)
        y = xn.to(tl.bfloat16).to(tl.float32) * c + (xp * rstd[:, :, None]).to(tl.bfloat16).to(tl.float32) * s_
        tl.store(dgain_ptr + tl.program_id(0) * H + head, tl.sum(tl.sum(g * y, axis=2), axis=0), mask=head < H)
        gain = tl.load(gain_ptr + head, mask=head < H, other=0.0).to(tl.bfloat16).to(tl.float32)
        g, gp = g * gain[None, :, None], gp * gain[None, :, None]
    dxn = g * c - gp * s_
    dx = rstd[:, :, None] * (dxn - xn * (tl.sum(dxn * xn, axis=2) / D)[:, :, None])
    tl.store(dx_ptr + at, dx.to(dx_ptr.dtype.element_ty), mask=ok)


def sm90_order(tile, hdim):
    """(tile, hdim) offsets of FA4's SM90 dQ accumulator fragments: 64-row warpgroup blocks, 8-column atoms."""
    r = torch.arange(tile)[:, None]
    c = torch.arange(hdim)[None, :]
    return ((r // 64) * 64 * hdim + (c // 8) * 512 + ((r % 64) // 16) * 128 + (r % 8) * 16 + ((c % 8) // 2) * 4
            + ((r % 16) // 8) * 2 + c % 2).to(torch.int32)


@triton.jit
def k_native(x_ptr, acc_ptr, cu_ptr, n_seq, cos_ptr, sin_ptr, gain_ptr, dx_ptr, dgain_ptr,
             seq_len, eps, scale, plane, H: tl.constexpr, D: tl.constexpr, HALF: tl.constexpr,
             HAS_GAIN: tl.constexpr, TILE: tl.constexpr, HPP: tl.constexpr):
    """16 rows of a tile per program (one warp's rows of the SM90 fragment layout): its 8 column atoms of 128
    contiguous floats each, loaded as [J, 8 r8, 4 quad, 2 v1, 2 v0] and permuted to [16 rows, D]."""
    J: tl.constexpr = D // 8
    pid = tl.program_id(0)
    m = pid // (TILE // 16)
    grp = pid % (TILE // 16)
    start, end = _seq_of_tile_vec(cu_ptr, n_seq, m, TILE, 256)
    j = tl.arange(0, J)[:, None, None, None, None]
    r8 = tl.arange(0, 8)[None, :, None, None, None]
    quad = tl.arange(0, 4)[None, None, :, None, None]
    v1 = tl.arange(0, 2)[None, None, None, :, None]
    v0 = tl.arange(0, 2)[None, None, None, None, :]
    rest = r8 * 16 + quad * 4 + v1 * 2 + v0
    native = j * 512 + rest
    # the rotation's partner column atom: atoms below HALF / 8 pair with those HALF / 8 above
    PJ: tl.constexpr = HALF // 8
    pj = tl.where(j < PJ, j + PJ, j - PJ)
    partner_native = pj * 512 + rest
    rot_native = j < 2 * PJ
    row0 = (grp // 4) * 64 * D + (grp % 4) * 128
    rows = tl.arange(0, 16)
    cols = tl.arange(0, D)
    tok = (start + grp * 16 + rows).to(tl.int64)
    ok = (tok < end)[:, None, None] & (cols < D)[None, None, :]
    partner, c, s, rot = _rope_tables(cos_ptr, sin_ptr, tok, cols, end, seq_len, HALF)
    for hh in tl.static_range(HPP):
        head = tl.program_id(1) * HPP + hh
        tile_at = acc_ptr + head.to(tl.int64) * plane + m.to(tl.int64) * (TILE * D) + row0
        a = tl.load(tile_at + native)
        ap = tl.load(tile_at + partner_native, mask=rot_native, other=0.0)
        # [J, r8, quad, v1, v0] -> [v1, r8, J, quad, v0] = [16 rows, D cols]
        g = tl.reshape(tl.permute(a, (3, 1, 0, 2, 4)), (16, 1, D))
        gp = tl.reshape(tl.permute(ap, (3, 1, 0, 2, 4)), (16, 1, D))
        at = tok[:, None, None] * (H * D) + head * D + cols[None, None, :]
        x = tl.load(x_ptr + at, mask=ok, other=0.0).to(tl.float32)
        xp = x
        gain = 1.0
        if HAS_GAIN:
            gain = tl.load(gain_ptr + head).to(tl.bfloat16).to(tl.float32)
            xp = tl.load(x_ptr + at - cols[None, None, :] + partner, mask=ok & rot, other=0.0).to(tl.float32)
        dx, gy = _rope_backward(x, xp, g * scale, gp * scale, c, s, gain, eps, D, HAS_GAIN)
        tl.store(dx_ptr + at, dx.to(dx_ptr.dtype.element_ty), mask=ok)
        if HAS_GAIN:
            tl.store(dgain_ptr + pid * H + head + tl.arange(0, 1), tl.sum(gy, axis=0))


@triton.jit
def k_pipe(x_ptr, acc_ptr, cu_ptr, n_seq, cos_ptr, sin_ptr, gain_ptr, dx_ptr, dgain_ptr,
           seq_len, eps, scale, plane, H: tl.constexpr, D: tl.constexpr, HALF: tl.constexpr,
           HAS_GAIN: tl.constexpr, TILE: tl.constexpr, GROUPS: tl.constexpr, NS: tl.constexpr):
    """k_native looped over GROUPS 16-row groups x all heads per program, software-pipelined (num_stages NS);
    row groups past the sequence's end are skipped and pad rows masked."""
    J: tl.constexpr = D // 8
    PER_TILE: tl.constexpr = TILE // 16 // GROUPS
    pid = tl.program_id(0)
    m = pid // PER_TILE
    g0 = (pid % PER_TILE) * GROUPS
    start, end = _seq_of_tile_vec(cu_ptr, n_seq, m, TILE, 256)
    j = tl.arange(0, J)[:, None, None, None, None]
    r8 = tl.arange(0, 8)[None, :, None, None, None]
    quad = tl.arange(0, 4)[None, None, :, None, None]
    v1 = tl.arange(0, 2)[None, None, None, :, None]
    v0 = tl.arange(0, 2)[None, None, None, None, :]
    rest = r8 * 16 + quad * 4 + v1 * 2 + v0
    PJ: tl.constexpr = HALF // 8
    native = j * 512 + rest
    partner_native = tl.where(j < PJ, j + PJ, j - PJ) * 512 + rest
    rot_native = j < 2 * PJ
    row_native = v1 * 8 + r8
    rows = tl.arange(0, 16)
    cols = tl.arange(0, D)
    live = tl.minimum(GROUPS, tl.maximum(end - start - g0 * 16 + 15, 0) // 16)
    for it in tl.range(0, live * H, num_stages=NS):
        grp = g0 + it // H
        head = it % H
        first = start + grp * 16
        ok5 = first + row_native < end
        tile_at = (acc_ptr + head.to(tl.int64) * plane + m.to(tl.int64) * (TILE * D)
                   + (grp // 4) * 64 * D + (grp % 4) * 128)
        a = tl.load(tile_at + native, mask=ok5, other=0.0)
        ap = tl.load(tile_at + partner_native, mask=ok5 & rot_native, other=0.0)
        g = tl.reshape(tl.permute(a, (3, 1, 0, 2, 4)), (16, 1, D))
        gp = tl.reshape(tl.permute(ap, (3, 1, 0, 2, 4)), (16, 1, D))
        tok = (first + rows).to(tl.int64)
        ok = (tok < end)[:, None, None] & (cols < D)[None, None, :]
        partner, c, s, rot = _rope_tables(cos_ptr, sin_ptr, tok, cols, end, seq_len, HALF)
        at = tok[:, None, None] * (H * D) + head * D + cols[None, None, :]
        x = tl.load(x_ptr + at, mask=ok, other=0.0).to(tl.float32)
        xp = x
        gain = 1.0
        if HAS_GAIN:
            gain = tl.load(gain_ptr + head).to(tl.bfloat16).to(tl.float32)
            xp = tl.load(x_ptr + at - cols[None, None, :] + partner, mask=ok & rot, other=0.0).to(tl.float32)
        dx, gy = _rope_backward(x, xp, g * scale, gp * scale, c, s, gain, eps, D, HAS_GAIN)
        tl.store(dx_ptr + at, dx.to(dx_ptr.dtype.element_ty), mask=ok)
        if HAS_GAIN:
            tl.store(dgain_ptr + (pid * GROUPS + grp - g0) * H + head + tl.arange(0, 1), tl.sum(gy, axis=0))


@triton.jit
def k_gather(x_ptr, acc_ptr, order_ptr, cu_ptr, n_seq, cos_ptr, sin_ptr, gain_ptr, dx_ptr, dgain_ptr,
             seq_len, eps, scale, plane, H: tl.constexpr, D: tl.constexpr, HALF: tl.constexpr,
             HAS_GAIN: tl.constexpr, TILE: tl.constexpr, TILE_HDIM: tl.constexpr, HPP: tl.constexpr):
    """whole tile per program, permuted by tl.gather; HPP heads per program."""
    m = tl.program_id(0)
    start, end = _seq_of_tile(cu_ptr, n_seq, m, TILE)
    rows = tl.arange(0, TILE)
    cols = tl.arange(0, D)
    tok = (start + rows).to(tl.int64)
    ok = (tok < end)[:, None, None] & (cols < D)[None, None, :]
    partner, c, s, rot = _rope_tables(cos_ptr, sin_ptr, tok, cols, end, seq_len, HALF)
    idx = tl.load(order_ptr + rows[:, None] * D + cols[None, :])
    pidx = tl.load(order_ptr + rows[:, None] * D + partner.reshape(1, D))
    flat_idx = tl.reshape(idx, (TILE * D,))
    flat_pidx = tl.reshape(pidx, (TILE * D,))
    for hh in tl.static_range(HPP):
        head = tl.program_id(1) * HPP + hh
        tile_at = acc_ptr + head.to(tl.int64) * plane + m.to(tl.int64) * (TILE * TILE_HDIM)
        acc = tl.load(tile_at + tl.arange(0, TILE * TILE_HDIM))
        g = tl.reshape(tl.gather(acc, flat_idx, 0), (TILE, 1, D))
        gp = tl.reshape(tl.gather(acc, flat_pidx, 0), (TILE, 1, D))
        at = tok[:, None, None] * (H * D) + head * D + cols[None, None, :]
        x = tl.load(x_ptr + at, mask=ok, other=0.0).to(tl.float32)
        xp = x
        gain = 1.0
        if HAS_GAIN:
            gain = tl.load(gain_ptr + head).to(tl.bfloat16).to(tl.float32)
            xp = tl.load(x_ptr + at - cols[None, None, :] + partner, mask=ok & rot, other=0.0).to(tl.float32)
        dx, gy = _rope_backward(x, xp, g * scale, gp * scale, c, s, gain, eps, D, HAS_GAIN)
        tl.store(dx_ptr + at, dx.to(dx_ptr.dtype.element_ty), mask=ok)
        if HAS_GAIN:
            tl.store(dgain_ptr + m * H + head + tl.arange(0, 1), tl.sum(gy, axis=0))


@triton.jit
def k_rows(x_ptr, acc_ptr, order_ptr, cu_ptr, n_seq, cos_ptr, sin_ptr, gain_ptr, dx_ptr, dgain_ptr,
           seq_len, eps, scale, plane, H: tl.constexpr, D: tl.constexpr, HALF: tl.constexpr,
           HAS_GAIN: tl.constexpr, TILE: tl.constexpr, TILE_HDIM: tl.constexpr, ROWS: tl.constexpr,
           IDENTITY: tl.constexpr, VEC: tl.constexpr):
    """the committed kernel, grid (tiles * TILE / ROWS, heads): one chunk per program; IDENTITY skips the
    order (wrong values: the gather's cost)."""
    pid = tl.program_id(0)
    m = pid // (TILE // ROWS)
    chunk = pid % (TILE // ROWS)
    head = tl.program_id(1)
    if VEC:
        start, end = _seq_of_tile_vec(cu_ptr, n_seq, m, TILE, 256)
    else:
        start, end = _seq_of_tile(cu_ptr, n_seq, m, TILE)
    cols = tl.arange(0, D)
    tile_at = acc_ptr + head.to(tl.int64) * plane + m.to(tl.int64) * (TILE * TILE_HDIM)
    gain = 1.0
    if HAS_GAIN:
        gain = tl.load(gain_ptr + head).to(tl.bfloat16).to(tl.float32)
    row = chunk * ROWS + tl.arange(0, ROWS)
    tok = (start + row).to(tl.int64)
    at = tok[:, None, None] * (H * D) + head * D + cols[None, None, :]
    ok = (tok < end)[:, None, None] & (cols < D)[None, None, :]
    partner, c, s, rot = _rope_tables(cos_ptr, sin_ptr, tok, cols, end, seq_len, HALF)
    in_tile = row[:, None, None] * D
    if IDENTITY:
        g = tl.load(tile_at + in_tile + cols[None, None, :], mask=ok, other=0.0)
        gp = tl.load(tile_at + in_tile + partner, mask=ok & rot, other=0.0)
    else:
        g = tl.load(tile_at + tl.load(order_ptr + in_tile + cols[None, None, :], mask=ok, other=0), mask=ok,
                    other=0.0)
        gp = tl.load(tile_at + tl.load(order_ptr + in_tile + partner, mask=ok & rot, other=0), mask=ok & rot,
                     other=0.0)
    x = tl.load(x_ptr + at, mask=ok, other=0.0).to(tl.float32)
    xp = x
    if HAS_GAIN:
        xp = tl.load(x_ptr + at - cols[None, None, :] + partner, mask=ok & rot, other=0.0).to(tl.float32)
    dx, gy = _rope_backward(x, xp, g * scale, gp * scale, c, s, gain, eps, D, HAS_GAIN)
    tl.store(dx_ptr + at, dx.to(dx_ptr.dtype.element_ty), mask=ok)
    if HAS_GAIN:
        tl.store(dgain_ptr + pid * H + head + tl.arange(0, 1), tl.sum(gy, axis=0))


def run_gather(x, acc, cos, sin, gain, cu, hpp, warps):
    heads, d = x.shape[2:]
    tiles = acc.data.shape[1] // (acc.tile * acc.tile_hdim)
    dx = torch.empty_like(x)
    per = torch.empty(tiles, heads, device=x.device)
    k_gather[(tiles, heads // hpp)](x, acc.data, acc.order, cu, cu.numel() - 1, cos, sin,
                                    gain if gain is not None else x, dx, per, x.shape[1], EPS, acc.scale,
                                    acc.data.shape[1], H=heads, D=d, HALF=8, HAS_GAIN=gain is not None,
                                    TILE=acc.tile, TILE_HDIM=acc.tile_hdim, HPP=hpp, num_warps=warps)
    return dx, per


def run_tok(x, acc, cos, sin, gain, cu, tokens, warps):
    heads, d = x.shape[2:]
    n_tok = x.shape[0] * x.shape[1]
    n = triton.cdiv(n_tok, tokens)
    dx = torch.empty_like(x)
    per = torch.empty(n, heads, device=x.device)
    k_tok[(n,)](x, acc.data, acc.order, cu, cu.numel() - 1, n_tok, cos, sin, gain if gain is not None else x, dx,
                per, x.shape[1], EPS, acc.scale, acc.data.shape[1], H=heads, HP=triton.next_power_of_2(heads), D=d,
                DP=triton.next_power_of_2(d), HALF=8, HAS_GAIN=gain is not None, TILE=acc.tile,
                TILE_HDIM=acc.tile_hdim, TOKENS=tokens, SB=256, num_warps=warps)
    return dx, per


def run_native(x, acc, cos, sin, gain, cu, hpp, warps):
    heads, d = x.shape[2:]
    tiles = acc.data.shape[1] // (acc.tile * acc.tile_hdim)
    dx = torch.empty_like(x)
    n = tiles * (acc.tile // 16)
    per = torch.empty(n, heads, device=x.device)
    k_native[(n, heads // hpp)](x, acc.data, cu, cu.numel() - 1, cos, sin, gain if gain is not None else x, dx,
                                per, x.shape[1], EPS, acc.scale, acc.data.shape[1], H=heads, D=d, HALF=8,
                                HAS_GAIN=gain is not None, TILE=acc.tile, HPP=hpp, num_warps=warps)
    return dx, per


def run_pipe(x, acc, cos, sin, gain, cu, groups, ns, warps):
    heads, d = x.shape[2:]
    tiles = acc.data.shape[1] // (acc.tile * acc.tile_hdim)
    dx = torch.empty_like(x)
    n = tiles * (acc.tile // 16 // groups)
    per = torch.zeros(n * groups, heads, device=x.device)
    k_pipe[(n,)](x, acc.data, cu, cu.numel() - 1, cos, sin, gain if gain is not None else x, dx,
                 per, x.shape[1], EPS, acc.scale, acc.data.shape[1], H=heads, D=d, HALF=8,
                 HAS_GAIN=gain is not None, TILE=acc.tile, GROUPS=groups, NS=ns, num_warps=warps)
    return dx, per


def run_rows(x, acc, cos, sin, gain, cu, rows, warps, identity=False, vec=False):
    heads, d = x.shape[2:]
    tiles = acc.data.shape[1] // (acc.tile * acc.tile_hdim)
    dx = torch.empty_like(x)
    n = tiles * (acc.tile // rows)
    per = torch.empty(n, heads, device=x.device)
    k_rows[(n, heads)](x, acc.data, acc.order, cu, cu.numel() - 1, cos, sin, gain if gain is not None else x, dx,
                       per, x.shape[1], EPS, acc.scale, acc.data.shape[1], H=heads, D=d, HALF=8,
                       HAS_GAIN=gain is not None, TILE=acc.tile, TILE_HDIM=acc.tile_hdim, ROWS=rows,
                       IDENTITY=identity, VEC=vec, num_warps=warps)
    return dx, per


def variants(cos, sin, cu) -> dict:
    """name -> fn(x, Accum, gain or None) -> (d x, d gain shares): every design this bench measured."""
    out = {"committed": lambda x, a, g: qk_rope_backward_accum(x, a, cos, sin, g, 16, cu)}
    for rows, warps in ((16, 2), (32, 4), (32, 2), (64, 4), (64, 8), (128, 8)):
        out[f"rows{rows}w{warps}"] = lambda x, a, g, r=rows, w=warps: run_rows(x, a, cos, sin, g, cu, r, w)
    out["rows32w4-identity"] = lambda x, a, g: run_rows(x, a, cos, sin, g, cu, 32, 4, True)
    for rows, warps in ((16, 2), (16, 1), (32, 4), (32, 2), (8, 1)):
        out[f"rows{rows}w{warps}-vec"] = lambda x, a, g, r=rows, w=warps: run_rows(x, a, cos, sin, g, cu, r, w,
                                                                                    vec=True)
    out["rows16w2-vec-identity"] = lambda x, a, g: run_rows(x, a, cos, sin, g, cu, 16, 2, True, True)
    for tokens, warps in ((2, 2), (4, 2), (4, 4), (8, 4), (1, 1), (2, 1)):
        out[f"tok{tokens}w{warps}"] = lambda x, a, g, t=tokens, w=warps: run_tok(x, a, cos, sin, g, cu, t, w)
    for hpp, warps in ((1, 1), (1, 2), (1, 4), (2, 2), (4, 2), (4, 4)):
        out[f"native-h{hpp}w{warps}"] = lambda x, a, g, h=hpp, w=warps: run_native(x, a, cos, sin, g, cu, h, w)
    for groups, ns, warps in ((8, 2, 2), (8, 3, 2), (8, 4, 2), (8, 3, 4), (4, 3, 2), (2, 3, 2), (1, 3, 2), (2, 2, 1),
                              (1, 2, 1), (1, 3, 1)):
        out[f"pipe-g{groups}s{ns}w{warps}"] = lambda x, a, g, gr=groups, n=ns, w=warps: run_pipe(
            x, a, cos, sin, g, cu, gr, n, w)
    for hpp, warps in ((1, 8), (1, 16), (2, 16), (4, 16)):
        out[f"gather-h{hpp}w{warps}"] = lambda x, a, g, h=hpp, w=warps: run_gather(x, a, cos, sin, g, cu, h, w)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tokens", type=Path, required=True, help="a golf tokens folder (manifest.json, train shards)")
    ap.add_argument("--only", default="", help="run the designs whose name contains this")
    a = ap.parse_args()
    dev, t, seqs = torch.device("cuda"), 2048, 48
    print(torch.cuda.get_device_name(), "triton", triton.__version__)
    cos, sin = rope_tables(Rotary(16, 10000.0).to(dev)(t, dev))
    gain = torch.full((8,), 5.0, device=dev)
    q = torch.randn(seqs, t, 8, 64, device=dev, dtype=torch.bfloat16)
    k, v = (torch.randn(seqs, t, 4, 64, device=dev, dtype=torch.bfloat16) for _ in range(2))
    cu = micro_batches(a.tokens, seqs, t, 1)[0]
    fl = lambda z: z.reshape(-1, *z.shape[2:])  # noqa: E731
    out, lse = fa4.fa4_fwd(fl(q), fl(k), fl(v), cu, t)
    dout = torch.randn_like(out)
    dq_acc, dk_acc, _ = fa4_accum.backward(fl(q), fl(k), fl(v), out, dout, lse, cu, t)
    dq_ref, dk_ref, _ = fa4.fa4_bwd(fl(q), fl(k), fl(v), out, dout, lse, cu, t)
    print("tile order, row 0:", dq_acc.order[0, :16].tolist(), "... tile", dq_acc.tile, "x", dq_acc.tile_hdim)
    want_q = _qk_rope_backward(q, dq_ref.view(q.shape), cos, sin, gain, 16)[0]
    want_k = _qk_rope_backward(k, dk_ref.view(k.shape), cos, sin, None, 16)[0]
    base_us, _ = kernel_us(lambda: (_qk_rope_backward(q, dq_ref.view(q.shape), cos, sin, gain, 16),
                                    _qk_rope_backward(k, dk_ref.view(k.shape), cos, sin, None, 16)))
    print(f"golf::qk_rope_backward on FA4's bf16 dq, dk: {base_us:.0f} us")
    print("SM90 fragment formula equals the probed order:", bool(torch.equal(sm90_order(128, 64).cuda(), dq_acc.order)))
    chosen = {n: f for n, f in variants(cos, sin, cu).items() if a.only in n}
    for name, fn in chosen.items():
        try:
            dq = fn(q, dq_acc, gain)[0]
            dk = fn(k, dk_acc, None)[0]
            err = [float((a.float() - b.float()).norm() / b.float().norm()) for a, b in ((dq, want_q), (dk, want_k))]
            us, _ = kernel_us(lambda: (fn(q, dq_acc, gain), fn(k, dk_acc, None)))
            print(f"{name}: {us:.0f} us  err q {err[0]:.1e} k {err[1]:.1e}", flush=True)
        except Exception as e:  # noqa: BLE001
            print(f"{name}: failed {type(e).__name__}: {str(e)[:300]}", flush=True)


if __name__ == "__main__":
    main()
