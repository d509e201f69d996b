"""Training batches: random (seq_len + 1)-token windows of the train tokens, in a deterministic order.

Step s draws the whole step's global batch (all ranks, all micro-batches) from a generator seeded
with (seed, s), so the data order depends on the seed and the step only: not on the world size, not
on what ran before (compile warm-up steps replay steps 0.. and the real run draws them again).
Rank r takes its own contiguous slice of the global batch, then splits it into micro-batches.
Windows may straddle document boundaries (BOS tokens mark them, as in the records' loaders). Under
model.doc_masked_attention with a varlen kernel, each micro-batch also carries its documents as
cu_seqlens, found here on the host before the copy, so no compiled graph waits on the GPU for them.
Under train.cuda_graphs they are padded with empty documents to a multiple of CU_MULTIPLE entries: a CUDA
graph is recorded per length, and a micro-batch's count of documents changes every batch.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from golf.artifact.model.attention import doc_cu_seqlens
from golf.artifact.shards import list_shards, read_shard
from golf.errors import GolfError

CU_MULTIPLE = 64  # cu_seqlens entries (train.cuda_graphs): about 180 for the h100 preset's 98,304 tokens


def pad_cu_seqlens(cu: torch.Tensor, multiple: int) -> torch.Tensor:
    """cu_seqlens with its last entry (the token count) repeated up to a multiple of `multiple` entries:
    empty documents, which attend to nothing and change no output (golf/kernels/fa4.py's varlen ops)."""
    pad = -len(cu) % multiple
    return torch.cat((cu, cu[-1:].expand(pad))) if pad else cu


class WindowLoader:
    def __init__(self, tokens: np.ndarray, seq_len: int, global_seqs: int, grad_accum_steps: int,
                 rank: int, world_size: int, seed: int, device: torch.device, bos_id: int | None = None,
                 cu_multiple: int = 1) -> None:
        """bos_id: give each micro-batch its documents' cu_seqlens (None: no documents, cu_seqlens None),
        padded to a multiple of cu_multiple entries."""
        if len(tokens) < seq_len + 2:
            raise GolfError(f"train split has {len(tokens)} tokens; train.train_seq_len = {seq_len} needs "
                            f"at least {seq_len + 2}")
        if global_seqs % (world_size * grad_accum_steps):
            raise ValueError("global batch not divisible by world_size x grad_accum_steps")
        self.tokens, self.seq_len, self.global_seqs = tokens, seq_len, global_seqs
        self.accum, self.rank, self.world, self.seed, self.device = grad_accum_steps, rank, world_size, seed, device
        self.local = global_seqs // world_size
        self.bos_id, self.cu_multiple = bos_id, cu_multiple
        self._ready: tuple[int, tuple[torch.Tensor, list[torch.Tensor | None]]] | None = None  # `prepare`d

    def starts(self, step: int) -> np.ndarray:
        """Start offsets of the step's global batch (global_seqs windows)."""
        rng = np.random.default_rng([self.seed, step])
        return rng.integers(0, len(self.tokens) - self.seq_len - 1, size=self.global_seqs, endpoint=True)

    def batch(self, step: int) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]]:
        """This rank's micro-batches for `step`: grad_accum_steps (inputs, targets, cu_seqlens) with
        int64 (B, T) inputs and targets, int32 cu_seqlens of the inputs' documents (or None)."""
        ready, self._ready = self._ready, None
        win, cus = ready[1] if ready is not None and ready[0] == step else self._host_batch(step)
        win = win.to(self.device, non_blocking=True)
        return [(w[:, :-1], w[:, 1:], None if cu is None else cu.to(self.device, non_blocking=True))
                for w, cu in zip(win.chunk(self.accum, dim=0), cus)]

    def prepare(self, step: int) -> None:
        """Do `batch(step)`'s host work now: the train loop calls this once a step's micro-batches are
        queued, so the windows, documents and pinned copies of the next step are ready while the GPU still
        runs this one's backward (no GPU idle for them). The batch itself is the same either way."""
        self._ready = (step, self._host_batch(step))

    def _host_batch(self, step: int) -> tuple[torch.Tensor, list[torch.Tensor | None]]:
        """(the (B, T + 1) windows, each micro-batch's cu_seqlens or None), in pinned memory for CUDA."""
        mine = self.starts(step)[self.rank * self.local:(self.rank + 1) * self.local]
        idx = mine[:, None] + np.arange(self.seq_len + 1)[None, :]
        win = torch.from_numpy(np.asarray(self.tokens[idx], dtype=np.int64))
        cus = [pad_cu_seqlens(doc_cu_seqlens(w[:, :-1], self.bos_id), self.cu_multiple) if self.bos_id is not None
               else None for w in win.chunk(self.accum, dim=0)]
        if self.device.type == "cuda":
            win, cus = win.pin_memory(), [None if cu is None else cu.pin_memory() for cu in cus]
        return win, cus


def check_bos(tokens_dir: Path, bos_id: int, tokenizer_bos_id: int | None = None) -> None:
    """Every train and val shard holds a BOS, and it is the tokenizer's: model.doc_masked_attention
    splits documents at BOS, so a shard without one would train, or be scored, as one document."""
    if tokenizer_bos_id is not None and tokenizer_bos_id != bos_id:
        raise GolfError(f"{tokens_dir}: the tokenizer's BOS is id {tokenizer_bos_id}, but model.bos_id = {bos_id} "
                        "(model.doc_masked_attention splits documents at it)")
    for split in ("train", "val"):
        for path in list_shards(tokens_dir, split):
            shard = read_shard(path)
            if len(shard) and not (shard == bos_id).any():
                raise GolfError(f"{path}: no BOS (token id {bos_id}) in its {len(shard)} tokens, but "
                                "model.doc_masked_attention = true splits documents at BOS (shards from a "
                                "tokenizer that writes none? or turn the key off)")
