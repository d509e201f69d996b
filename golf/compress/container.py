"""Writes our versioned artifact container, `model.golf` (the format and the reader: golf/artifact/container.py)."""

from __future__ import annotations

import hashlib
import json
import struct
import zlib
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from golf.artifact.container import ENTRY, FLAG_TRANSPOSED, MAGIC, VERSION, Section
from golf.artifact.shuffle import shuffle
from golf.compress import codecs
from golf.compress.layout import split
from golf.errors import GolfError


def _stride(name: str, per_group: bool, cfg: Any) -> int:
    """Shuffle only sections of multi-byte values (or the single whole-model section)."""
    if cfg.byte_shuffle_stride <= 1 or name == "meta":
        return 1
    if not per_group or name.startswith(("scale.", "t.")) and not name.endswith(("int8", "uint8", "bool")):
        return cfg.byte_shuffle_stride
    return 1


def _code(name: str, raw: bytes, stride: int, cfg: Any, cache: dict | None) -> tuple[str, bytes]:
    """Pick the codec (auto: smallest of all, ties to the earlier) and compress one section."""
    data = shuffle(raw, stride)
    names = codecs.AUTO_ORDER if cfg.codec == "auto" else (cfg.codec,)
    key = None
    if cache is not None:  # prune's probes re-encode mostly unchanged sections
        key = (hashlib.blake2b(data, digest_size=16).digest(), names,
               json.dumps([codecs.codec_params(n, cfg) for n in names]))
        if key in cache:
            return cache[key]
    best = None
    for n in names:
        out = codecs.encode(n, data, cfg)
        if best is None or len(out) < len(best[1]):
            best = (n, out)
    if cache is not None:
        cache[key] = best
    return best


def _chunks(raw: dict[str, bytes], chunk_bytes: int) -> list[tuple[str, bytes]]:
    """(stream name, bytes): sections up to `chunk_bytes` whole, bigger ones as name@0, name@1, ..."""
    out = []
    for name, data in raw.items():
        if chunk_bytes and len(data) > chunk_bytes:
            out += [(f"{name}@{k}", data[i:i + chunk_bytes]) for k, i in enumerate(range(0, len(data), chunk_bytes))]
        else:
            out.append((name, data))
    return out


def encode_sections(tensors: dict, header: dict, cfg: Any, cache: dict | None = None) -> list[Section]:
    raw, manifest = split(tensors, cfg.per_group, cfg.transpose)
    try:
        meta = json.dumps({"header": header, "tensors": manifest}, sort_keys=True, separators=(",", ":"))
    except TypeError as e:
        raise GolfError(f"container: the header is not JSON-serialisable ({e})") from None
    items = [("meta", meta.encode("utf-8"))] + _chunks(raw, cfg.chunk_bytes)
    transposed = {e["section"] for e in manifest if e["transposed"]}

    def one(item: tuple[str, bytes]) -> Section:
        name, data = item
        base = name.partition("@")[0]
        stride = _stride(base, cfg.per_group, cfg)
        codec, payload = _code(base, data, stride, cfg, cache)
        return Section(name, codec, FLAG_TRANSPOSED if base in transposed else 0, stride, len(data),
                       zlib.crc32(data), payload)

    if cfg.workers > 1 and len(items) > 1:
        with ThreadPoolExecutor(min(cfg.workers, len(items))) as pool:  # the coders release the GIL
            return list(pool.map(one, items))
    return [one(it) for it in items]


def pack(sections: list[Section]) -> bytes:
    if len(sections) > 0xFFFF:
        raise GolfError(f"container: {len(sections)} sections; at most 65535")
    table = [MAGIC, struct.pack("<HH", VERSION, len(sections))]
    for s in sections:
        name = s.name.encode("ascii")
        if len(name) > 255:
            raise GolfError(f"container: section name {s.name!r} is longer than 255 bytes")
        table += [bytes([len(name)]), name,
                  ENTRY.pack(codecs.CODEC_IDS[s.codec], s.flags, s.stride, s.raw_len, len(s.payload), s.crc)]
    head = b"".join(table)
    return head + struct.pack("<I", zlib.crc32(head)) + b"".join(s.payload for s in sections)


def encode(tensors: dict, header: dict, cfg: Any, cache: dict | None = None) -> bytes:
    """The artifact bytes. `cache` (any dict, kept by the caller) reuses unchanged sections' coding."""
    return pack(encode_sections(tensors, header, cfg, cache))
