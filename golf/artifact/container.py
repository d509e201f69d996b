"""Our versioned artifact container: `model.golf`.

    magic  b"GOLF"            4 bytes
    version                   u16 (little endian throughout)
    n_sections                u16
    per section: name_len u8, name (ascii), codec u8, flags u8, shuffle stride u8,
                 raw_len u64, comp_len u64, crc32(raw bytes) u32
    crc32 of everything above u32
    payloads, in table order (the file ends exactly at the last one)

A section bigger than `chunk_bytes` is stored as consecutive streams "<name>@0", "<name>@1", ...,
each coded on its own (in parallel) and joined back in order on decoding.

Section "meta" (always first) is JSON {"header": <the qmodel header>, "tensors": <manifest>}, so the
header is compressed too. decode(encode(t, h, cfg)) == (t, h) bit for bit. Every way a damaged file
can fail (magic, version, truncated table or payload, table or section crc, decoder error, a
manifest that does not fit) is a GolfError saying which.
"""

from __future__ import annotations

import json
import struct
import zlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from golf.artifact import codecs
from golf.artifact.layout import join
from golf.artifact.shuffle import unshuffle
from golf.errors import GolfError

MAGIC = b"GOLF"
VERSION = 2  # 2: sections may be chunked ("<name>@<k>")
FLAG_TRANSPOSED = 1  # informational: the section holds transposed tensors (the manifest says which)
ENTRY = struct.Struct("<BBBQQI")  # codec, flags, stride, raw_len, comp_len, crc32


@dataclass
class Section:
    name: str
    codec: str
    flags: int
    stride: int
    raw_len: int
    crc: int
    payload: bytes | memoryview
    comp_len: int = -1  # from the table when reading; len(payload) when writing


def _unchunk(streams: list[tuple[str, bytes]]) -> dict[str, bytes]:
    """The inverse of _chunks; a duplicated, missing or out-of-order chunk is corruption."""
    parts: dict[str, list[tuple[str, bytes]]] = {}
    for name, data in streams:
        base, sep, k = name.partition("@")
        parts.setdefault(base, []).append((k if sep else "", data))
    out = {}
    for base, chunks in parts.items():
        ks = [k for k, _ in chunks]
        if ks != ([""] if len(ks) == 1 and ks[0] == "" else [str(i) for i in range(len(ks))]):
            raise GolfError(f"corrupted golf artifact: section {base!r} has streams {ks}")
        out[base] = b"".join(d for _, d in chunks)
    return out


def read_table(blob: bytes) -> tuple[list[Section], int]:
    """The section table (payload fields empty) and where the payloads start."""
    blob = memoryview(blob)
    if len(blob) < 8:
        raise GolfError(f"not a golf artifact: {len(blob)} bytes, shorter than the 8-byte preamble")
    if bytes(blob[:4]) != MAGIC:
        raise GolfError(f"not a golf artifact: magic {bytes(blob[:4])!r}, expected {MAGIC!r}")
    version, n = struct.unpack_from("<HH", blob, 4)
    if version != VERSION:
        raise GolfError(f"golf artifact version {version}; this golf reads version {VERSION}")
    pos, sections = 8, []
    for i in range(n):
        if pos >= len(blob) or pos + 1 + blob[pos] + ENTRY.size > len(blob):
            raise GolfError(f"truncated golf artifact: the section table ends inside entry {i} of {n}")
        ln = blob[pos]
        name = bytes(blob[pos + 1:pos + 1 + ln]).decode("ascii", errors="replace")
        codec, flags, stride, raw_len, comp_len, crc = ENTRY.unpack_from(blob, pos + 1 + ln)
        pos += 1 + ln + ENTRY.size
        sections.append(Section(name, codecs.CODEC_NAMES.get(codec, f"#{codec}"), flags, stride, raw_len, crc,
                                b"", comp_len))
    if pos + 4 > len(blob):
        raise GolfError("truncated golf artifact: the section table's crc is missing")
    (want,) = struct.unpack_from("<I", blob, pos)
    if zlib.crc32(blob[:pos]) != want:
        raise GolfError("corrupted golf artifact: the section table's crc32 does not match")
    for s in sections:
        if s.codec.startswith("#"):
            raise GolfError(f"golf artifact section {s.name!r}: unknown codec id {s.codec[1:]}")
    return sections, pos + 4


def decode(blob: bytes, workers: int = 4) -> tuple[dict, dict]:
    """(tensors, header): the exact inverse of encode."""
    sections, pos = read_table(blob)
    lens = [s.comp_len for s in sections]
    end = pos + sum(lens)
    if end > len(blob):
        raise GolfError(f"truncated golf artifact: {len(blob)} bytes, the section table needs {end}")
    if end < len(blob):
        raise GolfError(f"corrupted golf artifact: {len(blob) - end} bytes after the last section")
    view = memoryview(blob)
    for s, ln in zip(sections, lens):
        s.payload, pos = view[pos:pos + ln], pos + ln

    def one(s: Section) -> bytes:
        what = f"golf artifact section {s.name!r}"
        data = unshuffle(codecs.decode(s.codec, s.payload, s.raw_len, what), s.stride)
        if zlib.crc32(data) != s.crc:
            raise GolfError(f"corrupted golf artifact: {what} crc32 mismatch")
        return data

    if workers > 1 and len(sections) > 1:
        with ThreadPoolExecutor(min(workers, len(sections))) as pool:
            raws = list(pool.map(one, sections))
    else:
        raws = [one(s) for s in sections]
    if sections[0].name != "meta" or len({s.name for s in sections}) != len(sections):
        raise GolfError("corrupted golf artifact: section names are duplicated or 'meta' is not first")
    named = _unchunk([(s.name, r) for s, r in zip(sections, raws)])
    try:
        meta = json.loads(named.pop("meta").decode("utf-8"))
        header, manifest = meta["header"], meta["tensors"]
    except (ValueError, KeyError, TypeError) as e:
        raise GolfError(f"corrupted golf artifact: unreadable meta section ({e})") from None
    return join(named, manifest), header


def describe(blob: bytes) -> list[dict]:
    """Per-section name, codec, raw and compressed bytes (for metrics and the bench)."""
    sections, _ = read_table(blob)
    return [{"name": s.name, "codec": s.codec, "raw_bytes": s.raw_len,
             "bytes": s.comp_len, "stride": s.stride} for s in sections]


def load_artifact(path: Path) -> tuple[dict, dict]:
    path = Path(path)
    if not path.is_file():
        raise GolfError(f"{path}: file not found")
    try:
        return decode(path.read_bytes())
    except GolfError as e:
        raise GolfError(f"{path}: {e}") from None
