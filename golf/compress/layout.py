"""Tensors -> named byte sections plus a manifest that rebuilds every tensor exactly (golf/artifact/layout.py).

Per-group layout: int8 code tensors are bucketed by role (the records' `_serialize_pergroup`):
tok_emb, attn.c_q, attn.c_k, attn.c_v, attn.proj, mlp.fc, mlp.proj, concatenated over layers in
layer order, optionally transposed (column-major) so that neighbouring bytes come from one input
feature. Per-row fp16 scales, other floats (by dtype) and any remaining int8 tensors get sections
of their own, so each coder sees one kind of data. Whole layout: one section with everything.
The manifest lists, per tensor, its dtype, shape, section, offset and whether it is transposed.
"""

from __future__ import annotations

import re

import torch

from golf.artifact.layout import DTYPES
from golf.errors import GolfError

# (section name, substring of the tensor name); the first match wins. Codes are `<weight>.q`.
CODE_GROUPS = (("q.tok_emb", "tok_emb"), ("q.attn.c_q", "attn.c_q"), ("q.attn.c_k", "attn.c_k"),
               ("q.attn.c_v", "attn.c_v"), ("q.attn.proj", "attn.proj"), ("q.mlp.fc", "mlp.fc"),
               ("q.mlp.proj", "mlp.proj"))



def natural_key(name: str) -> list:
    """blocks.2 before blocks.10."""
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name)]


def dtype_name(t: torch.Tensor) -> str:
    name = str(t.dtype).removeprefix("torch.")
    if name not in DTYPES:
        raise GolfError(f"container: dtype {t.dtype} is not supported; supported: {', '.join(DTYPES)}")
    return name


def section_of(name: str, t: torch.Tensor, per_group: bool) -> str:
    if not per_group:
        return "data"
    if t.dtype == torch.int8:
        if name.endswith(".q"):
            for section, key in CODE_GROUPS:
                if key in name:
                    return section
        return "q.other"  # gates, LQER factor codes, codes of no known role
    if name.endswith(".scale") and t.dtype in (torch.float16, torch.bfloat16):
        return "scale." + dtype_name(t)
    return "t." + dtype_name(t)


def tensor_bytes(t: torch.Tensor, transposed: bool) -> bytes:
    t = t.detach().to("cpu")
    if transposed:
        t = t.t()
    t = t.contiguous().reshape(-1)
    if t.numel() == 0:
        return b""
    if t.dtype == torch.bool:
        t = t.to(torch.uint8)
    return t.view(torch.uint8).numpy().tobytes()


def split(tensors: dict[str, torch.Tensor], per_group: bool, transpose: bool) -> tuple[dict[str, bytes], list[dict]]:
    """(section name -> bytes, manifest). Section order: code groups, then the rest by name."""
    buckets: dict[str, list[tuple[str, bytes, dict]]] = {}
    for name in sorted(tensors, key=natural_key):
        t = tensors[name]
        if not isinstance(t, torch.Tensor):
            raise GolfError(f"container: {name} is a {type(t).__name__}, not a tensor")
        sec = section_of(name, t, per_group)
        tr = bool(transpose and t.dtype == torch.int8 and t.dim() == 2)
        entry = {"name": name, "dtype": dtype_name(t), "shape": list(t.shape), "section": sec, "transposed": tr}
        buckets.setdefault(sec, []).append((name, tensor_bytes(t, tr), entry))
    groups = dict(CODE_GROUPS)
    order = [s for s in groups if s in buckets] + sorted(s for s in buckets if s not in groups)
    sections, manifest = {}, []
    for sec in order:
        offset, parts = 0, []
        for _, data, entry in buckets[sec]:
            entry["offset"], entry["nbytes"] = offset, len(data)
            offset += len(data)
            parts.append(data)
            manifest.append(entry)
        sections[sec] = b"".join(parts)
    return sections, manifest
