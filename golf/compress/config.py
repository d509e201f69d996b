"""CompressConfig: the `compress` section of params.yaml (also read by prune_to_budget, whose
size probes must use the exact final compressor)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True, kw_only=True)
class CompressConfig:
    codec: Literal["auto", "brotli", "zstd", "lzma"]
    """Entropy coder for every section; auto tries each (and plain storage) per section and keeps the smallest."""
    brotli_quality: int
    """Brotli quality, 0..11 (11 = smallest, slowest)."""
    brotli_lgwin: int
    """Brotli window, log2 bytes, 10..24."""
    zstd_level: int
    """Zstandard level, 1..22."""
    lzma_preset: int
    """LZMA (raw LZMA2) preset, 0..9."""
    lzma_extreme: bool
    """Add LZMA's extreme flag (slower encode, a little smaller)."""
    byte_shuffle_stride: int
    """Byte-shuffle stride for multi-byte sections (fp16 scales, floats; the whole blob when per_group is off): all bytes at offset 0 mod N, then 1 mod N, ... (1 = off)."""
    transpose: bool
    """Store 2-D int8 code tensors transposed (column-major) so neighbouring bytes correlate."""
    per_group: bool
    """Bucket int8 codes by role (tok_emb, attn.c_q/c_k/c_v/proj, mlp.fc/proj) over layers, scales and floats in their own sections; off = one section for everything."""
    workers: int
    """Threads coding sections in parallel (1 = serial)."""
    chunk_bytes: int
    """Largest stream, bytes (0 = one stream per section): a bigger section is cut into chunks coded independently, so they run in parallel on `workers` threads (a little larger output, much less wall time)."""

    def __post_init__(self) -> None:
        checks = [("brotli_quality", 0, 11), ("brotli_lgwin", 10, 24), ("zstd_level", 1, 22),
                  ("lzma_preset", 0, 9), ("byte_shuffle_stride", 1, 255), ("workers", 1, 256),
                  ("chunk_bytes", 0, 2**40)]
        for key, lo, hi in checks:
            v = getattr(self, key)
            if not lo <= v <= hi:
                raise ValueError(f"compress.{key} = {v}: must be in {lo}..{hi}")
