"""Entropy coders behind one interface: encode(name, data, cfg) -> bytes (decoders: golf/artifact/codecs.py).

Each codec writes only its bare stream (raw LZMA2, zstd without checksum): the container keeps
lengths and a crc32 itself, so per-section framing bytes would be paid twice. Decoder failures are
wrapped into GolfError so a damaged artifact never crashes deep inside a library.
"""

from __future__ import annotations

import lzma
from typing import Any

from golf.artifact.codecs import CODEC_IDS
from golf.errors import GolfError

AUTO_ORDER = ("brotli", "lzma", "zstd", "store")  # ties keep the earlier one


def _lzma_filters(cfg: Any) -> list[dict]:
    preset = cfg.lzma_preset | (lzma.PRESET_EXTREME if cfg.lzma_extreme else 0)
    return [{"id": lzma.FILTER_LZMA2, "preset": preset}]


def codec_params(name: str, cfg: Any) -> dict:
    """The settings a codec's output depends on (stored nowhere; used as a cache key)."""
    return {"store": {}, "brotli": {"q": cfg.brotli_quality, "lgwin": cfg.brotli_lgwin},
            "zstd": {"level": cfg.zstd_level},
            "lzma": {"preset": cfg.lzma_preset, "extreme": cfg.lzma_extreme}}[name]


def encode(name: str, data: bytes, cfg: Any) -> bytes:
    if name == "store":
        return bytes(data)
    if name == "brotli":
        import brotli
        return brotli.compress(bytes(data), quality=cfg.brotli_quality, lgwin=cfg.brotli_lgwin)
    if name == "zstd":
        import zstandard
        c = zstandard.ZstdCompressor(level=cfg.zstd_level, write_checksum=False,
                                     write_content_size=True, write_dict_id=False)
        return c.compress(bytes(data))
    if name == "lzma":
        return lzma.compress(bytes(data), format=lzma.FORMAT_RAW, filters=_lzma_filters(cfg))
    raise GolfError(f"unknown codec {name!r}; known: {', '.join(CODEC_IDS)}")
