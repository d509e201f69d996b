"""Fused softcapped cross-entropy for the tied LM head: sum_i CE(c * tanh(h_i W^T / c), y_i).

The eager head (golf/artifact/model/gpt.py `_logits` + `_chunked_nll`) turns the bf16 logits into fp32,
softcaps them and keeps every (rows x vocab) fp32 intermediate alive for the backward: several
GB at the record shape (98,304 tokens x 8,192). Here, per chunk of rows:

  1. logits = h W^T in bf16 (cuBLAS), a (rows, V) buffer;
  2. one Triton program per row reads its logits, softcaps them in fp32 (the GPU's tanh.approx),
     finds the log-sum-exp (online, two passes over the row; the second hits L2), writes the row's loss
     and overwrites the logits with d loss / d logits = (softmax - onehot) * (1 - tanh^2) in bf16;
  3. grad_h = G W (written into its rows of grad_h) and grad_W += G^T h (cuBLAS; on the GPU with an fp32
     output, so the bf16 G^T h is neither written nor cast), then the buffer is reused by the next chunk.

A chunk holds up to 2^30 logits (2 GiB of bf16), so a micro-batch of the record's 98,304 tokens at V = 8,192
is one chunk: three GEMMs over all the rows instead of three per 16,384 rows (BENCHMARKS.md, twenty-third
session).

So the forward computes the gradients (and never keeps the logits); the backward only scales
them by the incoming scalar gradient. The whole thing is one `torch.library.custom_op` (opaque
to torch.compile, so `fullgraph=True` traces it with no graph break) with a registered autograd formula.

The math runs in bf16 like the model's head under autocast (golf/train: `train.autocast_bf16`);
the log-softmax runs in fp32 per row. Targets must lie in [0, V) (no ignore index).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
import triton
import triton.language as tl

from golf.kernels.mm import mm_fp32

COMPUTE_DTYPE = torch.bfloat16
CHUNK_ELEMENTS = 1 << 30  # logits per chunk: 2 GiB of bf16 (131,072 rows at V = 8,192)
MAX_BLOCK = 4096  # columns a program holds at once
FAST_TANH = True  # on the GPU, PTX's tanh.approx (see _tanh); bench/bench_softcap_ce.py times both forms


@triton.jit
def _tanh(x, FAST: tl.constexpr):
    if FAST:
        # the GPU's one-instruction tanh (PTX tanh.approx.f32, sm_75+; relative error about 2^-11, below
        # the bf16 rounding of the logits it reads). The exact form below costs two SFU ops and a
        # division per call, which made the row kernel compute-bound (BENCHMARKS.md, fourteenth session)
        return tl.inline_asm_elementwise("tanh.approx.f32 $0, $1;", "=f,f", [x], dtype=tl.float32,
                                         is_pure=True, pack=1)
    # from exp(-2|x|), which cannot overflow (Triton's core language has no tanh of its own);
    # Triton's interpreter (the CPU tests) runs no PTX
    e = tl.exp(-2.0 * tl.abs(x))
    t = (1.0 - e) / (1.0 + e)
    return tl.where(x < 0, -t, t)


@triton.jit
def golf_softcap_ce_rows(logits_ptr, targets_ptr, loss_ptr, n_cols, row_stride, softcap,
                         BLOCK: tl.constexpr, FAST_TANH: tl.constexpr):
    """One row: loss = lse(z) - z[target] with z = softcap * tanh(x / softcap); x := dloss/dx."""
    row = tl.program_id(0).to(tl.int64)
    row_ptr = logits_ptr + row * row_stride
    inv_cap = 1.0 / softcap
    # pass 1: running max and rescaled sum of exp(z) (online softmax; every block has a valid column)
    run_max = -float("inf")
    run_sum = 0.0
    for start in range(0, n_cols, BLOCK):
        cols = start + tl.arange(0, BLOCK)
        valid = cols < n_cols
        x = tl.load(row_ptr + cols, mask=valid, other=0.0).to(tl.float32)
        z = tl.where(valid, softcap * _tanh(x * inv_cap, FAST_TANH), -float("inf"))
        new_max = tl.maximum(run_max, tl.max(z, axis=0))
        run_sum = run_sum * tl.exp(run_max - new_max) + tl.sum(tl.exp(z - new_max), axis=0)
        run_max = new_max
    lse = run_max + tl.log(run_sum)
    target = tl.load(targets_ptr + row).to(tl.int64)
    x_target = tl.load(row_ptr + target).to(tl.float32)
    tl.store(loss_ptr + row, lse - softcap * _tanh(x_target * inv_cap, FAST_TANH))
    # pass 2: the gradient w.r.t. the pre-softcap logits, written over them
    for start in range(0, n_cols, BLOCK):
        cols = start + tl.arange(0, BLOCK)
        valid = cols < n_cols
        x = tl.load(row_ptr + cols, mask=valid, other=0.0).to(tl.float32)
        t = _tanh(x * inv_cap, FAST_TANH)
        prob = tl.exp(softcap * t - lse)
        grad = (prob - tl.where(cols == target, 1.0, 0.0)) * (1.0 - t * t)
        tl.store(row_ptr + cols, grad.to(logits_ptr.dtype.element_ty), mask=valid)


def _launch_rows(logits: torch.Tensor, targets: torch.Tensor, losses: torch.Tensor, softcap: float) -> None:
    n_rows, n_cols = logits.shape
    block = min(triton.next_power_of_2(n_cols), MAX_BLOCK)
    golf_softcap_ce_rows[(n_rows,)](logits, targets, losses, n_cols, logits.stride(0), softcap, BLOCK=block,
                                    FAST_TANH=FAST_TANH and logits.is_cuda, num_warps=8 if block >= 2048 else 4)


def chunk_rows_for(vocab_size: int) -> int:
    """Rows per chunk so that one chunk's bf16 logits hold CHUNK_ELEMENTS values."""
    return max(1, CHUNK_ELEMENTS // vocab_size)


@torch.library.custom_op("golf::softcap_ce_with_grads", mutates_args=())
def softcap_ce_with_grads(h: torch.Tensor, w: torch.Tensor, targets: torch.Tensor, softcap: float,
                          chunk_rows: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(sum of the rows' NLL in fp32, its gradient w.r.t. h (h's dtype), w.r.t. w (w's dtype)).

    h (N, d), w (V, d), targets (N,) integer; computed in bf16 with fp32 row statistics and an
    fp32 sum of the chunks' grad_W.
    """
    with torch.autocast(h.device.type, enabled=False):
        h16, w16 = h.to(COMPUTE_DTYPE).contiguous(), w.to(COMPUTE_DTYPE).contiguous()
        targets = targets.contiguous()
        losses = torch.empty(h.shape[0], device=h.device, dtype=torch.float32)
        grad_h = torch.empty(h.shape, device=h.device, dtype=COMPUTE_DTYPE)
        grad_w = torch.zeros(w.shape, device=w.device, dtype=torch.float32)
        for start in range(0, h.shape[0], chunk_rows):
            rows = slice(start, start + chunk_rows)
            g = h16[rows] @ w16.t()  # (rows, V) logits, overwritten with their gradient
            _launch_rows(g, targets[rows], losses[rows], softcap)
            torch.mm(g, w16, out=grad_h[rows])
            grad_w += mm_fp32(g.t(), h16[rows])
        return losses.sum(), grad_h.to(h.dtype), grad_w.to(w.dtype)


@softcap_ce_with_grads.register_fake
def _(h, w, targets, softcap, chunk_rows):
    return (h.new_empty((), dtype=torch.float32), torch.empty_like(h, memory_format=torch.contiguous_format),
            torch.empty_like(w))


def _setup_context(ctx, inputs, output) -> None:
    ctx.save_for_backward(output[1], output[2])


def _backward(ctx, grad_loss, _grad_h, _grad_w):
    """The loss's gradients, computed in the forward, times d loss (the returned gradients are not
    differentiated further: softcap_ce_sum hands out the loss only)."""
    grad_h, grad_w = ctx.saved_tensors
    return grad_loss * grad_h, grad_loss * grad_w, None, None, None


# a registered formula, not an autograd.Function: AOTAutograd's cache refuses graphs holding one
# (golf/train/ahead.py needs the looped graph cached whole)
softcap_ce_with_grads.register_autograd(_backward, setup_context=_setup_context)


def softcap_ce_sum(h: torch.Tensor, w: torch.Tensor, targets: torch.Tensor, softcap: float,
                   chunk_rows: int = 0) -> torch.Tensor:
    """Sum over rows of CE(softcap * tanh(h W^T / softcap), targets), fp32 scalar, fused.

    h (..., d) and targets (...) are flattened; w (V, d) is the (tied) head. chunk_rows = 0
    picks `chunk_rows_for(V)`. The gradients are computed in the forward, so call it where a
    backward follows (training); eval keeps the eager head.
    """
    d = h.shape[-1]
    rows = chunk_rows or chunk_rows_for(w.shape[0])
    return softcap_ce_with_grads(h.reshape(-1, d), w, targets.reshape(-1), float(softcap), int(rows))[0]


def softcap_ce_reference(h: torch.Tensor, w: torch.Tensor, targets: torch.Tensor, softcap: float) -> torch.Tensor:
    """The eager definition, as the model computes it under bf16 autocast: bf16 logits, fp32
    softcap and log-softmax, summed NLL (tests and bench/bench_kernels.py compare against it)."""
    z = F.linear(h.reshape(-1, h.shape[-1]).to(COMPUTE_DTYPE), w.to(COMPUTE_DTYPE)).float()
    z = softcap * torch.tanh(z / softcap)
    return F.cross_entropy(z, targets.reshape(-1), reduction="sum")
