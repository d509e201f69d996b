"""Entropy decoders: decode(name, data, raw_len) -> exactly raw_len bytes, or a GolfError.

Each codec's stream is bare (raw LZMA2, zstd without checksum; golf/compress/codecs.py writes
them): the container keeps lengths and a crc32 itself. Decoder failures are wrapped into
GolfError so a damaged artifact never crashes deep inside a library.
"""

from __future__ import annotations

import lzma

from golf.errors import GolfError

# Codec ids as stored in the section table. "store" is only chosen by auto (tiny sections).
CODEC_IDS = {"store": 0, "brotli": 1, "zstd": 2, "lzma": 3}
CODEC_NAMES = {v: k for k, v in CODEC_IDS.items()}


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
