"""Named byte sections + the manifest -> tensors: the inverse of golf/compress/layout.py.

The manifest lists, per tensor, its dtype, shape, section, offset, byte count and whether it is
stored transposed (column-major).
"""

from __future__ import annotations

import numpy as np
import torch

from golf.errors import GolfError

DTYPES = {str(d).removeprefix("torch."): d for d in (
    torch.int8, torch.uint8, torch.int16, torch.int32, torch.int64, torch.float16, torch.bfloat16,
    torch.float32, torch.float64, torch.bool)}


def bytes_tensor(data: bytes, dtype: str, shape: list[int], transposed: bool) -> torch.Tensor:
    dt = DTYPES[dtype]
    stored = list(reversed(shape)) if transposed else list(shape)
    if len(data) == 0:
        return torch.empty(shape, dtype=dt)
    raw = torch.from_numpy(np.frombuffer(data, dtype=np.uint8).copy())
    t = (raw.to(torch.bool) if dt == torch.bool else raw.view(dt)).reshape(stored)
    return t.t().contiguous() if transposed else t


def join(sections: dict[str, bytes], manifest: list[dict]) -> dict[str, torch.Tensor]:
    """Rebuild every tensor; a manifest that does not fit its sections is a GolfError."""
    out = {}
    for e in manifest:
        try:
            name, dtype, shape, sec = e["name"], e["dtype"], [int(s) for s in e["shape"]], e["section"]
            off, n, tr = int(e["offset"]), int(e["nbytes"]), bool(e["transposed"])
        except (KeyError, TypeError, ValueError) as err:
            raise GolfError(f"container: bad manifest entry {e!r} ({err})") from None
        if dtype not in DTYPES:
            raise GolfError(f"container: {name}: unknown dtype {dtype!r}")
        if sec not in sections:
            raise GolfError(f"container: {name}: section {sec!r} is not in the artifact")
        itemsize = torch.empty((), dtype=DTYPES[dtype]).element_size()
        if n != int(np.prod(shape, dtype=np.int64)) * itemsize or off < 0 or off + n > len(sections[sec]):
            raise GolfError(f"container: {name}: manifest says {n} bytes at {off} for {dtype}{shape}, "
                            f"section {sec!r} has {len(sections[sec])}")
        out[name] = bytes_tensor(sections[sec][off:off + n], dtype, shape, tr)
    return out
