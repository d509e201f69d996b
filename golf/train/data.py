"""Training batches: random (seq_len + 1)-token windows of the train tokens, in a deterministic order.

Step s draws the whole step's global batch (all ranks, all micro-batches) from a generator seeded
with (seed, s), so the data order depends on the seed and the step only: not on the world size, not
on what ran before (compile warm-up steps replay steps 0.. and the real run draws them again).
Rank r takes its own contiguous slice of the global batch, then splits it into micro-batches.
Windows may straddle document boundaries (BOS tokens mark them, as in the records' loaders).
"""

from __future__ import annotations

import numpy as np
import torch

from golf.errors import GolfError


class WindowLoader:
    def __init__(self, tokens: np.ndarray, seq_len: int, global_seqs: int, grad_accum_steps: int,
                 rank: int, world_size: int, seed: int, device: torch.device) -> None:
        if len(tokens) < seq_len + 2:
            raise GolfError(f"train split has {len(tokens)} tokens; train.train_seq_len = {seq_len} needs "
                            f"at least {seq_len + 2}")
        if global_seqs % (world_size * grad_accum_steps):
            raise ValueError("global batch not divisible by world_size x grad_accum_steps")
        self.tokens, self.seq_len, self.global_seqs = tokens, seq_len, global_seqs
        self.accum, self.rank, self.world, self.seed, self.device = grad_accum_steps, rank, world_size, seed, device
        self.local = global_seqs // world_size

    def starts(self, step: int) -> np.ndarray:
        """Start offsets of the step's global batch (global_seqs windows)."""
        rng = np.random.default_rng([self.seed, step])
        return rng.integers(0, len(self.tokens) - self.seq_len - 1, size=self.global_seqs, endpoint=True)

    def batch(self, step: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """This rank's micro-batches for `step`: grad_accum_steps (inputs, targets) int64 pairs (B, T)."""
        mine = self.starts(step)[self.rank * self.local:(self.rank + 1) * self.local]
        idx = mine[:, None] + np.arange(self.seq_len + 1)[None, :]
        win = torch.from_numpy(np.asarray(self.tokens[idx], dtype=np.int64))
        if self.device.type == "cuda":
            win = win.pin_memory().to(self.device, non_blocking=True)
        else:
            win = win.to(self.device)
        return [(w[:, :-1], w[:, 1:]) for w in win.chunk(self.accum, dim=0)]
