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

Section "meta" (always first) is JSON {"header": <the qmodel header>, "tensors": <manifest>,
"digest": <blake2b>}, so the header is compressed too. decode(encode(t, h, cfg)) == (t, h) bit for bit.

The reader trusts nothing before checking it: the table (names, order, codecs, flags, strides,
lengths), then the meta section, then every manifest field against the declared section sizes
(golf/artifact/layout.py), all before the other sections are decoded; each decoder stops at its
declared length (golf/artifact/codecs.py), and no file may declare more than RAW_PER_BYTE decoded
bytes per stored byte. Last, the digest over header, manifest and decoded tensors binds what the
file means to what it holds: an edited manifest (a flipped transposed flag, a shifted offset,
swapped sections) or header (a plan dtype) fails even with every crc32 recomputed. Every way a
damaged file can fail is a GolfError saying which (tests/test_fuzz_artifact.py).
"""

from __future__ import annotations

import hashlib
import json
import re
import struct
import zlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from golf.artifact import codecs
from golf.artifact.layout import check, join
from golf.artifact.shuffle import unshuffle
from golf.errors import GolfError

MAGIC = b"GOLF"
VERSION = 3  # 3: the meta section carries a content digest; 2: sections may be chunked ("<name>@<k>")
FLAG_TRANSPOSED = 1  # the section holds transposed tensors (the manifest says which)
ENTRY = struct.Struct("<BBBQQI")  # codec, flags, stride, raw_len, comp_len, crc32
RAW_PER_BYTE = 256  # most decoded bytes a file may declare per byte it stores (int6 codes: about 1.3)
NAME = re.compile(r"[A-Za-z0-9_.]+(@(0|[1-9][0-9]*))?")


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


def digest(header: Any, manifest: Any, tensors: dict) -> str:
    """blake2b over the header and manifest (canonical JSON) and every tensor's bytes in manifest order."""
    h = hashlib.blake2b(json.dumps({"header": header, "tensors": manifest}, sort_keys=True,
                                   separators=(",", ":")).encode("utf-8"), digest_size=32)
    for e in manifest:
        t = tensors[e["name"]].detach().cpu().reshape(-1)
        h.update(t.view(torch.uint8).numpy() if t.numel() else b"")
    return h.hexdigest()


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
        raise GolfError(f"golf artifact version {version}; this golf reads version {VERSION} "
                        "(rewrite it with `golf compress`)")
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
    _check_table(sections, len(blob))
    return sections, pos + 4


def _check_table(sections: list[Section], size: int) -> None:
    """Names, order, codecs, flags, strides and the declared decoded size, before decoding anything."""
    names = [s.name for s in sections]
    bases = [n.partition("@")[0] for n in names]
    runs = [b for i, b in enumerate(bases) if i == 0 or bases[i - 1] != b]
    once = len(set(runs)) == len(runs) and len(set(names)) == len(names)
    if not names or names[0] != "meta" or "meta" in bases[1:] or not once:
        raise GolfError(f"corrupted golf artifact: sections {names[:8]} (need 'meta' first, each name once, "
                        "chunks together)")
    for s in sections:
        if not NAME.fullmatch(s.name) or s.codec.startswith("#") or s.flags > FLAG_TRANSPOSED or s.stride < 1:
            raise GolfError(f"corrupted golf artifact: section {s.name!r} has codec {s.codec}, flags {s.flags}, "
                            f"stride {s.stride}")
    raw = sum(s.raw_len for s in sections)
    if raw > RAW_PER_BYTE * size:
        raise GolfError(f"corrupted golf artifact: its sections declare {raw:,} decoded bytes, more than "
                        f"{RAW_PER_BYTE} per byte of its {size:,}")


def _raw(s: Section) -> bytes:
    what = f"golf artifact section {s.name!r}"
    data = unshuffle(codecs.decode(s.codec, s.payload, s.raw_len, what), s.stride)
    if zlib.crc32(data) != s.crc:
        raise GolfError(f"corrupted golf artifact: {what} crc32 mismatch")
    return data


def _meta(s: Section) -> tuple[Any, Any, Any]:
    try:
        meta = json.loads(_raw(s).decode("utf-8"))
        header, manifest, want = meta["header"], meta["tensors"], meta["digest"]
    except (ValueError, KeyError, TypeError, RecursionError) as e:
        raise GolfError(f"corrupted golf artifact: unreadable meta section ({type(e).__name__}: {e})") from None
    if not isinstance(header, dict) or meta.keys() != {"header", "tensors", "digest"}:
        raise GolfError("corrupted golf artifact: the meta section is not {header: {...}, tensors, digest}")
    return header, manifest, want


def decode(blob: bytes, workers: int = 4) -> tuple[dict, dict]:
    """(tensors, header): the exact inverse of encode."""
    sections, pos = read_table(blob)
    end = pos + sum(s.comp_len for s in sections)
    if end > len(blob):
        raise GolfError(f"truncated golf artifact: {len(blob)} bytes, the section table needs {end}")
    if end < len(blob):
        raise GolfError(f"corrupted golf artifact: {len(blob) - end} bytes after the last section")
    view = memoryview(blob)
    for s in sections:
        s.payload, pos = view[pos:pos + s.comp_len], pos + s.comp_len
    header, manifest, want = _meta(sections[0])
    rest = sections[1:]
    sizes: dict[str, int] = {}
    for s in rest:
        sizes[s.name.partition("@")[0]] = sizes.get(s.name.partition("@")[0], 0) + s.raw_len
    check(manifest, sizes)  # every field, before the big sections are decoded
    flagged = {e["section"] for e in manifest if e["transposed"]}
    if any(bool(s.flags) != (s.name.partition("@")[0] in flagged) for s in sections):
        raise GolfError("corrupted golf artifact: a section's transposed flag disagrees with the manifest")
    if workers > 1 and len(rest) > 1:
        with ThreadPoolExecutor(min(workers, len(rest))) as pool:
            raws = list(pool.map(_raw, rest))
    else:
        raws = [_raw(s) for s in rest]
    tensors = join(_unchunk([(s.name, r) for s, r in zip(rest, raws)]), manifest)
    if digest(header, manifest, tensors) != want:
        raise GolfError("corrupted golf artifact: its digest does not match the decoded header, manifest "
                        "and tensors (an edited file?)")
    return tensors, header


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
