"""Sliding-window eval (docs/techniques.md §7.2) and the window scorer every mode shares.

Positions: the val stream has N tokens x_0..x_{N-1}; there are M = N - 1 targets. A window
with start `ws` feeds inputs x[ws : ws+len] and predicts x[ws+1 : ws+len+1], len = min(L, M - ws).
The plan is a list of (window_start, score_from, score_to) in *input* positions: the window scores
the predictions made at inputs [score_from, score_to), i.e. the tokens x[score_from+1 .. score_to].

Starts are 0, S, 2S, ... kept while ws + L - S < M (the SP4096 fix). The first window scores all
of its positions; every later one only its last S, which come after the previous window's end,
so each target is scored exactly once, the tail included, and every scored token after the first
window sees at least L - S tokens of context. Requires 1 <= S <= L. S == L is the plain eval.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from golf.artifact.runtime import autocast, progress_bar, rank_world
from golf.artifact.scoring import EvalResult, Totals, as_numpy, check_inputs, check_sidecar, eval_mode


def window_plan(n_tokens: int, seq_len: int, stride: int) -> np.ndarray:
    """(K, 3) int64 rows (window_start, score_from, score_to) covering inputs [0, n_tokens-1) once."""
    if seq_len < 1 or not 1 <= stride <= seq_len:
        raise ValueError(f"window plan needs 1 <= stride <= seq_len, got stride {stride}, seq_len {seq_len}")
    m = n_tokens - 1
    if m < 1:
        return np.zeros((0, 3), dtype=np.int64)
    # k >= 1 is kept iff k*S + L - S < M  <=>  k - 1 < (M - L) / S
    extra = -(-(m - seq_len) // stride) if m > seq_len else 0
    ws = np.arange(extra + 1, dtype=np.int64) * stride
    start = np.where(ws == 0, 0, ws + seq_len - stride)
    end = np.minimum(ws + seq_len, m)
    return np.stack([ws, start, end], axis=1)


def _batches(plan: np.ndarray, seq_len: int, batch_seqs: int, m: int) -> list[np.ndarray]:
    """Runs of windows of equal input length (all full but the last few), at most batch_seqs each."""
    lens = np.minimum(plan[:, 0] + seq_len, m) - plan[:, 0]
    out = []
    i = 0
    while i < len(plan):
        j = i + 1
        while j < len(plan) and j - i < batch_seqs and lens[j] == lens[i]:
            j += 1
        out.append(plan[i:j])
        i = j
    return out


def score_windows(model: Any, tokens: np.ndarray, plan: np.ndarray, seq_len: int, batch_seqs: int,
                  device: torch.device, totals: Totals, adapter: Any = None, desc: str = "",
                  progress: bool = False) -> None:
    """Score `plan`'s windows under no_grad in eval mode, adding to `totals` (this rank's share only
    if the caller split the plan)."""
    m = len(tokens) - 1
    batches = _batches(plan, seq_len, batch_seqs, m)
    with torch.no_grad(), eval_mode(model), autocast(device):
        for b in progress_bar(batches, desc or "eval", progress):
            ws = b[:, 0]
            n = int(min(ws[0] + seq_len, m) - ws[0])
            rows = np.stack([tokens[s: s + n + 1] for s in ws]).astype(np.int64)
            xy = torch.from_numpy(rows).to(device, non_blocking=True)
            nll = model.nll(xy[:, :-1], xy[:, 1:], adapter) if adapter is not None else model.nll(xy[:, :-1], xy[:, 1:])
            offs = torch.arange(n, device=device)
            lo = torch.from_numpy(b[:, 1] - ws).to(device)[:, None]
            hi = torch.from_numpy(b[:, 2] - ws).to(device)[:, None]
            mask = (offs[None] >= lo) & (offs[None] < hi)
            pos = (torch.from_numpy(ws).to(device)[:, None] + 1 + offs[None])[mask]
            totals.add(pos, nll[mask], offs[None].expand_as(mask)[mask])


def rank_share(plan: np.ndarray) -> np.ndarray:
    """This rank's windows (round robin, so every rank gets a similar mix of lengths)."""
    rank, world = rank_world()
    return plan[rank::world]


def evaluate(model: Any, val_tokens: Any, val_bytes: Any, seq_len: int, stride: int, batch_seqs: int,
             device: torch.device | str, *, luts: Any = None, totals: Totals | None = None,
             num_buckets: int = 0, progress: bool = False) -> EvalResult:
    """Sliding-window BPB with window `seq_len` and `stride` (both tokens); every token after the first
    is scored once. `luts` (golf.data TokenData.luts) turns on the sidecar-vs-tokenizer byte check."""
    tokens = as_numpy(val_tokens, "val tokens")
    vb = as_numpy(val_bytes, "val byte sidecar")
    check_inputs(tokens, vb, seq_len)
    if luts is not None:
        check_sidecar(tokens, vb, luts)
    device = torch.device(device)
    totals = totals if totals is not None else Totals(vb, len(tokens), num_buckets)
    plan = window_plan(len(tokens), seq_len, stride)
    score_windows(model, tokens, rank_share(plan), seq_len, batch_seqs, device, totals,
                  desc=f"sliding s{stride}", progress=progress)
    return totals.result()
