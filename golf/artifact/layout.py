"""Named byte sections + the manifest -> tensors: the inverse of golf/compress/layout.py.

The manifest lists, per tensor, its dtype, shape, section, offset, byte count and whether it is
stored transposed (column-major). `check` validates every field against the sections' declared
sizes before a byte is decoded or a tensor allocated.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from golf.errors import GolfError

DTYPES = {str(d).removeprefix("torch."): d for d in (
    torch.int8, torch.uint8, torch.int16, torch.int32, torch.int64, torch.float16, torch.bfloat16,
    torch.float32, torch.float64, torch.bool)}
ITEMSIZE = {k: d.itemsize for k, d in DTYPES.items()}
KEYS = {"name", "dtype", "shape", "section", "offset", "nbytes", "transposed"}
MAX_DIM = 1 << 40  # any real tensor's dims are far below; torch needs each to fit in int64


def _problem(e: Any, ends: dict[str, int], sizes: dict[str, int], names: set) -> str:
    """Why a manifest entry cannot be right ("" if it can): the sizes are Python ints (no overflow)."""
    if not isinstance(e, dict) or e.keys() != KEYS:
        return f"its keys must be {sorted(KEYS)}"
    shape, sec, dt = e["shape"], e["section"], e["dtype"]
    if not isinstance(e["name"], str) or e["name"] in names:
        return "its name is not a string or is used twice"
    if not isinstance(dt, str) or dt not in ITEMSIZE:
        return f"dtype {dt!r} is not one of {', '.join(DTYPES)}"
    if not isinstance(shape, list) or len(shape) > 8 or any(type(s) is not int or not 0 <= s <= MAX_DIM for s in shape):
        return f"shape {shape!r} is not a list of up to 8 sizes in 0..{MAX_DIM}"
    if not isinstance(sec, str) or sec not in sizes:
        return f"section {sec!r} is not in the artifact"
    if type(e["transposed"]) is not bool or e["transposed"] and len(shape) != 2:
        return "transposed must be true or false (true for 2-D tensors only)"
    if type(e["offset"]) is not int or e["offset"] != ends[sec]:
        return f"offset must be {ends[sec]} (tensors are packed back to back)"
    if type(e["nbytes"]) is not int or e["nbytes"] != math.prod(shape) * ITEMSIZE[dt]:
        return f"nbytes must be {math.prod(shape) * ITEMSIZE[dt]} ({dt} x {shape})"
    if ends[sec] + e["nbytes"] > sizes[sec]:
        return f"it runs past the end of section {sec!r} ({sizes[sec]} bytes)"
    return ""


def check(manifest: Any, sizes: dict[str, int]) -> None:
    """Every entry is well formed, the entries tile each section exactly (no gaps, overlaps or
    duplicates) and the sections appear in the order the manifest first uses them."""
    if not isinstance(manifest, list):
        raise GolfError("container: the manifest is not a list")
    ends, names, order = dict.fromkeys(sizes, 0), set(), []
    for e in manifest:
        if why := _problem(e, ends, sizes, names):
            raise GolfError(f"container: manifest entry {str(e)[:160]}: {why}")
        names.add(e["name"])
        ends[e["section"]] += e["nbytes"]
        order += [e["section"]] if e["section"] not in order else []
    if order != list(sizes) or ends != sizes:
        bad = next((s for s in sizes if ends[s] != sizes[s]), None)
        raise GolfError(f"container: the manifest uses sections {order}, the table holds {list(sizes)}"
                        + (f"; it fills {ends[bad]} of the {sizes[bad]} bytes of {bad!r}" if bad else ""))


def bytes_tensor(data: bytes, dtype: str, shape: list[int], transposed: bool) -> torch.Tensor:
    dt = DTYPES[dtype]
    stored = list(reversed(shape)) if transposed else list(shape)
    if len(data) == 0:
        return torch.empty(shape, dtype=dt)
    raw = torch.from_numpy(np.frombuffer(data, dtype=np.uint8).copy())
    t = (raw.to(torch.bool) if dt == torch.bool else raw.view(dt)).reshape(stored)
    return t.t().contiguous() if transposed else t


def join(sections: dict[str, bytes], manifest: list[dict]) -> dict[str, torch.Tensor]:
    """Rebuild every tensor of a manifest that passed `check` against these sections."""
    check(manifest, {k: len(v) for k, v in sections.items()})
    return {e["name"]: bytes_tensor(sections[e["section"]][e["offset"]:e["offset"] + e["nbytes"]], e["dtype"],
                                    e["shape"], e["transposed"]) for e in manifest}
