"""Entropy decoders: decode(name, data, raw_len) -> exactly raw_len bytes, or a GolfError.

Each codec's stream is bare (raw LZMA2, zstd without checksum; golf/compress/codecs.py writes
them): the container keeps lengths and a crc32 itself. Every decoder is capped at raw_len + 1
output bytes, so a decompression bomb (a small stream that expands to gigabytes) stops there and
fails the length check with flat memory; a zstd frame's own content size is never trusted.
Decoder failures are wrapped into GolfError so a damaged artifact never crashes inside a library.
"""

from __future__ import annotations

import lzma

from golf.errors import GolfError

# Codec ids as stored in the section table. "store" is only chosen by auto (tiny sections).
CODEC_IDS = {"store": 0, "brotli": 1, "zstd": 2, "lzma": 3}
CODEC_NAMES = {v: k for k, v in CODEC_IDS.items()}


def _capped(name: str, data: bytes, cap: int) -> tuple[bytes, bool]:
    """(at most about `cap` decoded bytes, whether the stream ended there)."""
    if name == "store":
        return data, True
    if name == "brotli":
        import brotli  # >= 1.2: output_buffer_limit
        d = brotli.Decompressor()
        return d.process(data, output_buffer_limit=cap), d.is_finished()
    if name == "zstd":
        import zstandard
        return zstandard.ZstdDecompressor().stream_reader(data).read(cap), True
    if name == "lzma":
        # The filters of the raw stream: dictionary size is all decoding needs; preset 9's is the largest.
        d = lzma.LZMADecompressor(format=lzma.FORMAT_RAW,
                                  filters=[{"id": lzma.FILTER_LZMA2, "preset": 9 | lzma.PRESET_EXTREME}])
        # raw LZMA2 may end without its end marker: the length check is the end-of-input check
        return d.decompress(data, max_length=cap), True
    raise GolfError(f"unknown codec {name!r}")


def decode(name: str, data: bytes, raw_len: int, what: str = "section") -> bytes:
    """Decompress exactly `raw_len` bytes; any decoder failure or length mismatch is a GolfError."""
    try:
        out, ended = _capped(name, bytes(data), raw_len + 1)
    except GolfError as e:
        raise GolfError(f"{what}: {e}") from None
    except Exception as e:  # every decoder has its own error types
        raise GolfError(f"{what}: {name} decoder failed ({type(e).__name__}: {e}); the artifact is corrupted") from None
    if len(out) != raw_len or not ended:
        got = f"more than {raw_len}" if len(out) > raw_len else f"{len(out)}{'' if ended else ' (cut short)'}"
        raise GolfError(f"{what}: {name} decoded {got} bytes, the section table says {raw_len}; "
                        "the artifact is corrupted")
    return out
