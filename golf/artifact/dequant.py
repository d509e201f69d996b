"""golf.qmodel tensors + header -> the float state_dict: the decode half of golf/quant/.

Each quantized kind is undone here and only here: per-row integer codes times fp16 scales
(golf/quant/gptq.py), k-means centroids (golf/quant/codebook.py), the LQER low-rank correction
(golf/quant/lqer.py) and the block Hadamard rotation (golf/quant/hadamard.py). The plan entry of
each tensor (header["plan"][name]) says which apply; the qmodel file format is in golf/quant/qmodel.py.
"""

from __future__ import annotations

from typing import Any

import torch

from golf.errors import GolfError

FORMAT, VERSION = "golf.qmodel", 1
LQER_KEYS = ("lqA", "lqAs", "lqB", "lqBs")
QUANT_KINDS = ("gptq", "rtn", "codebook")


def _dtype(name: str) -> torch.dtype:
    dt = getattr(torch, name.removeprefix("torch."), None)
    if not isinstance(dt, torch.dtype):
        raise GolfError(f"qmodel: unknown dtype {name!r}")
    return dt


def dequantize_rows(q: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    return q.float() * scale.float()[:, None]


def codebook_values(codes: torch.Tensor, centroids: torch.Tensor) -> torch.Tensor:
    """Float weights: centroids[codes], exactly the stored fp16 values."""
    return centroids.float()[codes.long()]


def hadamard_matrix(b: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Sylvester's normalised Hadamard matrix H_b / sqrt(b) (b a power of two): symmetric, orthogonal."""
    if b < 1 or b & (b - 1):
        raise ValueError(f"hadamard block {b} is not a power of two")
    h = torch.ones(1, 1, dtype=torch.float64)
    while h.shape[0] < b:
        h = torch.cat((torch.cat((h, h), 1), torch.cat((h, -h), 1)), 0)
    return (h / h.shape[0] ** 0.5).to(dtype)


def signs(n: int) -> torch.Tensor:
    """Deterministic ±1 per column: parity of a multiplicative hash of the index (no RNG)."""
    i = torch.arange(n, dtype=torch.int64)
    h = (i * 2654435761 + 12345) % (1 << 32)
    bit = (h >> 13) & 1
    return (1 - 2 * bit).to(torch.float32)


def unrotate(w: torch.Tensor, b: int) -> torch.Tensor:
    """W Rᵀ: the exact inverse of `rotate` (H_b is symmetric and its own inverse)."""
    n = w.shape[-1]
    if b <= 1:
        return w
    x = w.float().reshape(*w.shape[:-1], n // b, b) @ hadamard_matrix(b).to(w.device)
    return x.reshape(w.shape) * signs(n).to(w.device)


def lqer_unpack(kind: str, t: dict[str, torch.Tensor]) -> torch.Tensor:
    """The dequantized correction A·B (out, in), fp32."""
    if kind == "asym":
        A = t["lqA"].float() * t["lqAs"].float()
        group = t["lqB"].numel() // t["lqBs"].numel()
        B = (t["lqB"].float().reshape(-1, group) * t["lqBs"].float()[:, None]).reshape(t["lqB"].shape)
    elif kind == "sym":
        A = t["lqA"].float() * t["lqAs"].float()[:, None]
        B = t["lqB"].float() * t["lqBs"].float()[:, None]
    else:
        raise ValueError(f"unknown LQER packing {kind!r}")
    return A @ B


def dequantize(tensors: dict[str, torch.Tensor], header: dict[str, Any]) -> dict[str, torch.Tensor]:
    """The float state_dict the plan describes (each tensor in its original dtype)."""
    plan = header.get("plan")
    if not isinstance(plan, dict):
        raise GolfError("qmodel: header has no plan")
    out: dict[str, torch.Tensor] = {}
    used: set[str] = set()

    def get(key: str) -> torch.Tensor:
        if key not in tensors:
            raise GolfError(f"qmodel: tensor {key} is missing (the plan needs it)")
        used.add(key)
        return tensors[key]

    for name, p in plan.items():
        kind = p.get("kind")
        if kind in QUANT_KINDS:
            if kind == "codebook":
                w = codebook_values(get(f"{name}.cq"), get(f"{name}.cb"))
            else:
                w = dequantize_rows(get(f"{name}.q"), get(f"{name}.scale"))
            if p.get("lqer"):
                w = w + lqer_unpack(p["lqer"], {k: get(f"{name}.{k}") for k in LQER_KEYS})
            out[name] = unrotate(w, int(p.get("hadamard", 1))).to(_dtype(p["dtype"]))
        elif kind == "passthrough":
            out[name] = get(name).to(_dtype(p["dtype"]))
        elif kind == "float":
            out[name] = get(name)
        else:
            raise GolfError(f"qmodel: {name} has unknown kind {kind!r}")
        if list(out[name].shape) != list(p["shape"]):
            raise GolfError(f"qmodel: {name} has shape {list(out[name].shape)}, the plan says {p['shape']}")
    if extra := sorted(set(tensors) - used):
        raise GolfError(f"qmodel: tensor {extra[0]} is not in the plan ({len(extra)} unplanned)")
    return out
