"""Plain BPB: non-overlapping windows of seq_len tokens (the eval every stage uses).

The records (docs/techniques.md §1.3) truncate the val stream to ((N-1)//seq_len)*seq_len + 1 tokens
and drop the tail. We instead score the tail too, in one last shorter window, so every token after
the first is scored exactly once (docs/contracts.md); on the 40 M-token val split the difference
is under one window (< 2048 tokens, < 0.01 % of the score). This equals `sliding.evaluate` with
stride == seq_len, and shares its window scorer and accounting.
"""

from __future__ import annotations

from typing import Any

import torch

from golf.artifact import sliding
from golf.artifact.scoring import EvalResult, Totals


def evaluate(model: Any, val_tokens: Any, val_bytes: Any, seq_len: int, batch_seqs: int,
             device: torch.device | str, *, luts: Any = None, totals: Totals | None = None,
             num_buckets: int = 0, progress: bool = False) -> EvalResult:
    """Exact BPB of `model` (anything with `nll(idx, targets) -> (B, T)`) on the val stream.

    `val_tokens`: the val token stream (BOS before each doc); `val_bytes`: bytes charged to each
    token (BOS = 0); `batch_seqs`: windows per forward (per rank). Runs under no_grad in eval mode
    (bf16 autocast on CUDA); sums are fp64, all-reduced when torch.distributed is initialised.
    """
    return sliding.evaluate(model, val_tokens, val_bytes, seq_len, seq_len, batch_seqs, device,
                            luts=luts, totals=totals, num_buckets=num_buckets, progress=progress)
