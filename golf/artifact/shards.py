"""Reading the challenge's shard format: 256 little-endian int32 header (20240520, 1, n, 0...) + n uint16 tokens.

The writers are in golf/data/shards.py.

The challenge's own `fineweb_*.bin` files load unchanged. The val byte sidecar
(`val_bytes_NNNNNN.bin`) uses the same layout: entry i = UTF-8 bytes charged to val token i.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from golf.errors import GolfError

MAGIC = 20240520
VERSION = 1
HEADER_INTS = 256
HEADER_BYTES = HEADER_INTS * 4
SPLITS = ("train", "val", "val_bytes")


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
