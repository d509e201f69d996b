"""Writing token shards in the challenge's format (the format and the readers: golf/artifact/shards.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from golf.artifact.shards import HEADER_INTS, MAGIC, VERSION
from golf.io.atomic import atomic_path


def write_shard(path: Path, tokens: np.ndarray) -> None:
    """Write one shard atomically; `tokens` must fit uint16."""
    tokens = np.asarray(tokens)
    if tokens.ndim != 1:
        raise ValueError(f"{path}: tokens must be 1-D, got shape {tokens.shape}")
    if tokens.size and (tokens.min() < 0 or tokens.max() >= 1 << 16):
        raise ValueError(f"{path}: token ids must be in 0..65535")
    if tokens.size >= 1 << 31:
        raise ValueError(f"{path}: {tokens.size} tokens is more than a shard can hold (2^31 - 1)")
    header = np.zeros(HEADER_INTS, dtype="<i4")
    header[:3] = (MAGIC, VERSION, tokens.size)
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        f.write(header.tobytes())
        f.write(tokens.astype("<u2", copy=False).tobytes())


def shard_name(split: str, index: int) -> str:
    return f"{split}_{index:06d}.bin"


class ShardWriter:
    """Streams tokens into `{split}_NNNNNN.bin` files of `shard_tokens` tokens each (the last shorter)."""

    def __init__(self, out_dir: Path, split: str, shard_tokens: int) -> None:
        self.out_dir, self.split, self.shard_tokens = Path(out_dir), split, shard_tokens
        self.buf: list[np.ndarray] = []
        self.buffered = 0
        self.paths: list[Path] = []
        self.total = 0

    def add(self, tokens: np.ndarray) -> None:
        self.buf.append(np.asarray(tokens, dtype=np.uint16))
        self.buffered += len(tokens)
        self.total += len(tokens)
        while self.buffered >= self.shard_tokens:
            self._flush(self.shard_tokens)

    def close(self) -> list[Path]:
        if self.buffered or not self.paths:
            self._flush(self.buffered)
        return self.paths

    def _flush(self, n: int) -> None:
        data = np.concatenate(self.buf) if self.buf else np.zeros(0, np.uint16)
        path = self.out_dir / shard_name(self.split, len(self.paths))
        write_shard(path, data[:n])
        self.paths.append(path)
        rest = data[n:]
        self.buf, self.buffered = ([rest] if rest.size else []), rest.size
