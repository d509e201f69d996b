"""Legal score-first TTT with chunked global SGD (docs/techniques.md §7.3, LEAKY -> REC3).

The val stream's M = N - 1 targets are cut into chunks of `chunk_tokens` (input positions
[c*T, (c+1)*T)). Each window of the sliding plan belongs to the chunk holding its first scored
position. For chunk c in order: (1) score all of its windows under no_grad in eval mode; (2) if
c is not the last chunk, train on c's tokens: SGD(lr_c, momentum), `epochs` passes over seq_len
sequences in batches of `batch_seqs` per rank, gradients averaged over ranks and clipped, with
lr_c = lr * ½(1 + cos(π c / (C - 1))). Every target of chunk c was scored before step (2),
because a window scoring it starts in a chunk <= c; so no token is scored by a model that has
trained on it (C3), and each is scored once (C4).

`train_span` is also the phased global SGD of lora_ttt (§7.4).
"""

from __future__ import annotations

import copy
import math
from typing import Any, Sequence

import numpy as np
import torch

from golf.artifact.runtime import all_reduce_sum, autocast, dist_on, progress_bar, rank_world
from golf.artifact.scoring import EvalResult, Totals, as_numpy, check_inputs
from golf.artifact.sliding import rank_share, score_windows, window_plan
from golf.errors import GolfError
from golf.eval.config import TttEvalConfig


def select_params(model: torch.nn.Module, name_filter: Sequence[str]) -> list[torch.nn.Parameter]:
    """Parameters whose name contains any of `name_filter` (all when empty); only those adapt."""
    named = list(model.named_parameters())
    chosen = [p for n, p in named if not name_filter or any(f in n for f in name_filter)]
    if not chosen:
        raise GolfError(f"ttt_eval.param_filter = {list(name_filter)}: matches no parameter of the model "
                        f"(names look like {named[0][0] if named else '(none)'!r})")
    return chosen


def cosine_lr(lr: float, c: int, n_chunks: int) -> float:
    """lr·½(1 + cos(π c / (C - 1))): lr at the first chunk, 0 at the last."""
    if n_chunks <= 1:
        return lr
    return lr * 0.5 * (1.0 + math.cos(math.pi * c / (n_chunks - 1)))


def train_span(model: torch.nn.Module, params: list[torch.nn.Parameter], opt: torch.optim.Optimizer,
               tokens: np.ndarray, lo: int, hi: int, seq_len: int, batch_seqs: int, grad_clip: float,
               device: torch.device) -> int:
    """One epoch of optimizer steps on the targets at input positions [lo, hi) (tokens x[lo+1..hi]).

    Sequences of seq_len inputs (the last may be shorter); each step takes batch_seqs sequences per
    rank, and the loss is the mean NLL over the whole step's tokens on all ranks. Returns steps.
    """
    starts = np.arange(lo, hi, seq_len, dtype=np.int64)
    if len(starts) == 0:
        return 0
    rank, world = rank_world()
    per_step = batch_seqs * world
    steps = 0
    was = model.training
    model.train()
    try:
        for s0 in range(0, len(starts), per_step):
            step = starts[s0: s0 + per_step]
            lens = np.minimum(step + seq_len, hi) - step
            total = float(lens.sum())
            mine, mine_lens = step[rank::world], lens[rank::world]
            opt.zero_grad(set_to_none=False)
            for ln in np.unique(mine_lens):  # equal-length groups stack into one batch
                grp = mine[mine_lens == ln]
                rows = np.stack([tokens[s: s + ln + 1] for s in grp]).astype(np.int64)
                xy = torch.from_numpy(rows).to(device)
                with autocast(device):
                    nll = model.nll(xy[:, :-1], xy[:, 1:])
                (nll.float().sum() / total).backward()
            if dist_on():
                for p in params:
                    if p.grad is None:
                        p.grad = torch.zeros_like(p)
                    all_reduce_sum(p.grad)
            if grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(params, grad_clip)
            opt.step()
            steps += 1
    finally:
        model.train(was)
    return steps


def evaluate(model: torch.nn.Module, val_tokens: Any, val_bytes: Any, cfg: TttEvalConfig, *, stride: int,
             device: torch.device | str, totals: Totals | None = None, num_buckets: int = 0,
             progress: bool = False) -> tuple[EvalResult, dict[str, Any]]:
    """Score-first chunked SGD TTT on a private copy of `model` (the caller's model is untouched), with
    the chunk_sgd settings of `cfg` (chunk_tokens, lr, momentum, epochs, grad_clip, param_filter).

    Scoring windows: the sliding plan with `stride` (== seq_len for non-overlapping windows).
    Returns the score and details (chunks, optimizer steps).
    """
    seq_len, batch_seqs, chunk_tokens, lr = cfg.seq_len, cfg.batch_seqs, cfg.chunk_tokens, cfg.lr
    tokens = as_numpy(val_tokens, "val tokens")
    vb = as_numpy(val_bytes, "val byte sidecar")
    check_inputs(tokens, vb, seq_len)
    if chunk_tokens < 1:
        raise GolfError(f"ttt_eval.chunk_tokens = {chunk_tokens}: must be >= 1")
    device = torch.device(device)
    totals = totals if totals is not None else Totals(vb, len(tokens), num_buckets)
    model = copy.deepcopy(model)
    params = select_params(model, cfg.param_filter)
    chosen = {id(p) for p in params}
    for p in model.parameters():
        p.requires_grad_(id(p) in chosen)
    opt = torch.optim.SGD(params, lr=lr, momentum=cfg.momentum)

    m = len(tokens) - 1
    plan = window_plan(len(tokens), seq_len, stride)
    chunk_of = plan[:, 1] // chunk_tokens
    n_chunks = -(-m // chunk_tokens)
    steps = 0
    for c in progress_bar(range(n_chunks), "ttt chunks", progress):
        score_windows(model, tokens, rank_share(plan[chunk_of == c]), seq_len, batch_seqs, device, totals)
        if c == n_chunks - 1:
            break  # nothing left to score: training on the last chunk could only be wasted
        for g in opt.param_groups:
            g["lr"] = cosine_lr(lr, c, n_chunks)
        for _ in range(cfg.epochs):
            steps += train_span(model, params, opt, tokens, c * chunk_tokens, min((c + 1) * chunk_tokens, m),
                                seq_len, batch_seqs, cfg.grad_clip, device)
    return totals.result(), {"chunks": n_chunks, "steps": steps, "params_adapted": sum(p.numel() for p in params)}
