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
        raise ValueError(f"unknown dtype {name!r}")
    return dt


def dequantize_rows(q: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    return q.float() * scale.float()[:, None]


def codebook_values(codes: torch.Tensor, centroids: torch.Tensor) -> torch.Tensor:
    """Float weights: centroids[codes], exactly the stored fp16 values."""
    return centroids.float()[codes.long()]


def signs(n: int) -> torch.Tensor:
    """Deterministic ±1 per column: parity of a multiplicative hash of the index (no RNG)."""
    i = torch.arange(n, dtype=torch.int64)
    h = (i * 2654435761 + 12345) % (1 << 32)
    bit = (h >> 13) & 1
    return (1 - 2 * bit).to(torch.float32)


def unrotate(w: torch.Tensor, b: int) -> torch.Tensor:
    """W Rᵀ: the inverse of golf/quant/hadamard.py's `rotate` (H_b is symmetric and its own inverse),
    as a fast Walsh-Hadamard transform: log2(b) butterfly passes, so memory stays that of W
    whatever block size a plan names (no b x b matrix)."""
    n = w.shape[-1]
    if b <= 1:
        return w
    if b & (b - 1) or n % b:
        raise ValueError(f"hadamard block {b} is not a power of two dividing {n} columns")
    x, h = w.float().reshape(-1, b), b // 2
    while h:  # H_2h = [[H_h, H_h], [H_h, -H_h]]: (x1, x2) -> (x1 + x2, x1 - x2), then each half by H_h
        x = x.reshape(-1, 2, h)
        x, h = torch.stack((x[:, 0] + x[:, 1], x[:, 0] - x[:, 1]), 1), h // 2
    return x.reshape(w.shape) / b ** 0.5 * signs(n).to(w.device)


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


def _lqer_fits(kind: str, t: dict[str, torch.Tensor], rows: int, cols: int) -> bool:
    """A (rows, r), B (r, cols) and scales that broadcast onto them, nothing larger."""
    A, As, B, Bs = (t[k] for k in LQER_KEYS)
    if A.dim() != 2 or A.shape[0] != rows or tuple(B.shape) != (A.shape[1], cols):
        return False
    if kind == "asym":
        return tuple(As.shape) == (1,) and Bs.dim() == 1 and Bs.numel() > 0 and B.numel() % Bs.numel() == 0
    return tuple(As.shape) == (rows,) and tuple(Bs.shape) == (A.shape[1],)


def _one(p: Any, get: Any) -> torch.Tensor:
    """One plan entry -> its float tensor; shapes are checked before any arithmetic that could broadcast."""
    if not isinstance(p, dict):
        raise TypeError(f"the plan entry is a {type(p).__name__}, not a mapping")
    kind = p["kind"]
    if kind in QUANT_KINDS:
        if kind == "codebook":
            codes, centroids = get("cq"), get("cb")
            if centroids.dim() != 1:
                raise ValueError(f"centroids of shape {tuple(centroids.shape)}, not a vector")
            w = codebook_values(codes, centroids)
        else:
            q, scale = get("q"), get("scale")
            if q.dim() != 2 or tuple(scale.shape) != (q.shape[0],):
                raise ValueError(f"codes {tuple(q.shape)} with scales {tuple(scale.shape)}")
            w = dequantize_rows(q, scale)
        if p.get("lqer"):
            t = {k: get(k) for k in LQER_KEYS}
            if w.dim() != 2 or not _lqer_fits(p["lqer"], t, *w.shape):
                raise ValueError(f"LQER factors {[tuple(v.shape) for v in t.values()]} do not fit {tuple(w.shape)}")
            w = w + lqer_unpack(p["lqer"], t)
        w = unrotate(w, int(p.get("hadamard", 1))).to(_dtype(p["dtype"]))
    elif kind == "passthrough":
        w = get("").to(_dtype(p["dtype"]))
    elif kind == "float":
        w = get("")
    else:
        raise ValueError(f"unknown kind {kind!r}")
    if list(w.shape) != list(p["shape"]):
        raise ValueError(f"shape {list(w.shape)}, the plan says {p['shape']}")
    return w


def dequantize(tensors: dict[str, torch.Tensor], header: dict[str, Any]) -> dict[str, torch.Tensor]:
    """The float state_dict the plan describes (each tensor in its original dtype). A plan entry that
    is malformed, or names tensors of the wrong shapes, is a GolfError naming it."""
    plan = header.get("plan") if isinstance(header, dict) else None
    if not isinstance(plan, dict):
        raise GolfError("qmodel: header has no plan")
    out: dict[str, torch.Tensor] = {}
    used: set[str] = set()

    def get(name: str, part: str) -> torch.Tensor:
        key = f"{name}.{part}" if part else name
        if not isinstance(tensors.get(key), torch.Tensor):
            raise GolfError(f"qmodel: tensor {key} is missing (the plan needs it)")
        used.add(key)
        return tensors[key]

    for name, p in plan.items():
        try:
            out[name] = _one(p, lambda part: get(name, part))
        except (KeyError, TypeError, ValueError, AttributeError, IndexError, RuntimeError, ZeroDivisionError) as e:
            raise GolfError(f"qmodel: plan entry {name!r}: {type(e).__name__}: {e}"[:400]) from None
    if extra := sorted(set(tensors) - used):
        raise GolfError(f"qmodel: tensor {extra[0]} is not in the plan ({len(extra)} unplanned)")
    return out
