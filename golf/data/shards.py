"""The challenge's shard format: 256 little-endian int32 header (20240520, 1, n, 0...) + n uint16 tokens.

The challenge's own `fineweb_*.bin` files load unchanged. The val byte sidecar
(`val_bytes_NNNNNN.bin`) uses the same layout: entry i = UTF-8 bytes charged to val token i.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from golf.errors import GolfError
from golf.io.atomic import atomic_path

MAGIC = 20240520
VERSION = 1
HEADER_INTS = 256
HEADER_BYTES = HEADER_INTS * 4
SPLITS = ("train", "val", "val_bytes")


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


def read_header(path: Path) -> int:
    """Validate the header and file length; return the token count."""
    path = Path(path)
    if not path.is_file():
        raise GolfError(f"{path}: shard not found")
    size = path.stat().st_size
    if size < HEADER_BYTES:
        raise GolfError(f"{path}: {size} bytes, shorter than the {HEADER_BYTES}-byte shard header (truncated?)")
    header = np.fromfile(path, dtype="<i4", count=HEADER_INTS)
    if header[0] != MAGIC:
        raise GolfError(f"{path}: magic {int(header[0])}, expected {MAGIC}: not a token shard")
    if header[1] != VERSION:
        raise GolfError(f"{path}: shard version {int(header[1])}; this golf reads version {VERSION}")
    n = int(header[2])
    if n < 0 or size != HEADER_BYTES + 2 * n:
        raise GolfError(f"{path}: header says {n} tokens ({HEADER_BYTES + 2 * n} bytes) but the file has "
                        f"{size} bytes (truncated or corrupt)")
    return n


def read_shard(path: Path) -> np.ndarray:
    """The shard's tokens as a read-only uint16 memmap (validated first)."""
    n = read_header(path)
    if n == 0:
        return np.zeros(0, dtype=np.uint16)
    return np.memmap(path, dtype="<u2", mode="r", offset=HEADER_BYTES, shape=(n,))


def shard_name(split: str, index: int) -> str:
    return f"{split}_{index:06d}.bin"


def list_shards(tokens_dir: Path, split: str) -> list[Path]:
    """`{split}_NNNNNN.bin` in order (val never matches val_bytes)."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    pat = re.compile(rf"{split}_\d{{6}}\.bin")
    return sorted(p for p in Path(tokens_dir).iterdir() if pat.fullmatch(p.name))


def load_split(tokens_dir: Path, split: str) -> np.ndarray:
    """All shards of a split, in order, concatenated (one shard: its memmap, no copy)."""
    paths = list_shards(tokens_dir, split)
    if not paths:
        raise GolfError(f"{tokens_dir}: no {split}_NNNNNN.bin shards (run `golf tokenize`)")
    parts = [read_shard(p) for p in paths]
    return parts[0] if len(parts) == 1 else np.concatenate(parts)


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
