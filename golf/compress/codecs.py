"""Entropy coders behind one interface: encode(name, data, cfg) -> bytes, decode(name, data, raw_len).

Each codec writes only its bare stream (raw LZMA2, zstd without checksum): the container keeps
lengths and a crc32 itself, so per-section framing bytes would be paid twice. Decoder failures are
wrapped into GolfError so a damaged artifact never crashes deep inside a library.
"""

from __future__ import annotations

import lzma
from typing import Any

from golf.errors import GolfError

# Codec ids as stored in the section table. "store" is only chosen by auto (tiny sections).
CODEC_IDS = {"store": 0, "brotli": 1, "zstd": 2, "lzma": 3}
CODEC_NAMES = {v: k for k, v in CODEC_IDS.items()}
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


def decode(name: str, data: bytes, raw_len: int, what: str = "section") -> bytes:
    """Decompress exactly `raw_len` bytes; any decoder failure or length mismatch is a GolfError."""
    try:
        if name == "store":
            out = bytes(data)
        elif name == "brotli":
            import brotli
            out = brotli.decompress(bytes(data))
        elif name == "zstd":
            import zstandard
            out = zstandard.ZstdDecompressor().decompress(bytes(data), max_output_size=max(raw_len, 1))
        elif name == "lzma":
            # Raw LZMA2 has no end-of-input check of its own: the length check below is it.
            # The filters of the raw stream: dictionary size is all decoding needs; preset 9's is the largest.
            d = lzma.LZMADecompressor(format=lzma.FORMAT_RAW,
                                      filters=[{"id": lzma.FILTER_LZMA2, "preset": 9 | lzma.PRESET_EXTREME}])
            out = d.decompress(bytes(data), max_length=raw_len + 1)
            if not d.eof and len(out) == raw_len:
                out += d.decompress(b"", max_length=1)
        else:
            raise GolfError(f"{what}: unknown codec {name!r}")
    except GolfError:
        raise
    except Exception as e:  # every decoder has its own error types
        raise GolfError(f"{what}: {name} decoder failed ({type(e).__name__}: {e}); the artifact is corrupted") from None
    if len(out) != raw_len:
        raise GolfError(f"{what}: {name} decoded {len(out)} bytes, the section table says {raw_len}; "
                        "the artifact is corrupted")
    return out
