"""Which codes may be pruned, and the pruning rules applied to them.

Codes are golf.qmodel's `<weight>.q` (int8, out x in) with `<weight>.scale` (fp16, out): the
dequantized weight is q * scale[row]. Zeroing a ±1 code moves the weight by exactly scale[row],
so its cost is scale_row² (docs/techniques.md §5.1), times H_jj when Hessian-weighted.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from golf.errors import GolfError
from golf.quant.sparsity import two_four_keep


def prunable(tensors: dict[str, torch.Tensor], prune_embedding: bool) -> list[str]:
    """Base names (`<weight>`) whose `.q` is a 2-D int8 matrix with an fp16 per-row `.scale`."""
    out = []
    for name, q in tensors.items():
        if not name.endswith(".q") or q.dtype != torch.int8 or q.dim() != 2:
            continue
        base = name[:-2]
        s = tensors.get(base + ".scale")
        if s is None or tuple(s.shape) != (q.shape[0],):
            continue
        if "tok_emb" in base and not prune_embedding:
            continue
        out.append(base)
    return sorted(out)


def _hdiag(hessians: dict | None, base: str, cols: int) -> np.ndarray:
    if not hessians or base not in hessians:
        raise GolfError(f"no Hessian for {base}: Hessian-weighted pruning needs artifacts/hessian_calibrate/hessians.safetensors")
    h = hessians[base]
    if tuple(h.shape) != (cols, cols):
        raise GolfError(f"Hessian of {base} is {tuple(h.shape)}, its codes have {cols} columns")
    return torch.diagonal(h).double().clamp_min(0).numpy()


@dataclass
class Candidates:
    """The ±1 codes in prune order (cheapest first)."""
    names: list[str]      # base names; tensor ids index this
    tensor: np.ndarray    # int32 tensor id per candidate
    index: np.ndarray     # int64 flat index into that tensor's codes
    cost: np.ndarray      # float64

    def __len__(self) -> int:
        return len(self.index)

    def counts(self, n: int) -> dict[str, int]:
        """How many of the first n candidates fall in each tensor."""
        c = np.bincount(self.tensor[:n], minlength=len(self.names))
        return {name: int(k) for name, k in zip(self.names, c) if k}


def candidates(tensors: dict, names: list[str], hessians: dict | None, hessian_weighted: bool) -> Candidates:
    tids, idxs, costs = [], [], []
    for tid, base in enumerate(names):
        q = tensors[base + ".q"].numpy()
        idx = np.flatnonzero(np.abs(q.reshape(-1)) == 1)
        rows, cols = q.shape
        cost = tensors[base + ".scale"].double().numpy()[idx // cols] ** 2
        if hessian_weighted:
            cost = cost * _hdiag(hessians, base, cols)[idx % cols]
        tids.append(np.full(len(idx), tid, dtype=np.int32))
        idxs.append(idx.astype(np.int64))
        costs.append(cost)
    tensor = np.concatenate(tids) if tids else np.zeros(0, np.int32)
    index = np.concatenate(idxs) if idxs else np.zeros(0, np.int64)
    cost = np.concatenate(costs) if costs else np.zeros(0)
    order = np.lexsort((index, tensor, cost))  # cost ascending; ties in a fixed order
    return Candidates(list(names), tensor[order], index[order], cost[order])


def zero_first(tensors: dict, cands: Candidates, n: int) -> dict:
    """A new dict with the first n candidates zeroed (touched tensors are copies; the input is kept)."""
    out = dict(tensors)
    tid, idx = cands.tensor[:n], cands.index[:n]
    for t in np.unique(tid):
        name = cands.names[t] + ".q"
        q = out[name].clone()
        q.view(-1)[torch.from_numpy(idx[tid == t])] = 0
        out[name] = q
    return out


def magnitude(tensors: dict, names: list[str], fraction: float) -> tuple[dict, int]:
    """Zero the floor(fraction·numel) codes of each matrix with the smallest |q·scale_row|."""
    out, zeroed = dict(tensors), 0
    for base in names:
        q = out[base + ".q"]
        k = int(fraction * q.numel())
        if k == 0:
            continue
        score = q.abs().double() * out[base + ".scale"].double()[:, None]
        order = np.argsort(score.reshape(-1).numpy(), kind="stable")[:k]
        before = int((q != 0).sum())
        q = q.clone()
        q.view(-1)[torch.from_numpy(order)] = 0
        zeroed += before - int((q != 0).sum())
        out[base + ".q"] = q
    return out, zeroed


def two_four(tensors: dict, names: list[str], hessians: dict | None = None) -> tuple[dict, int]:
    """In every group of 4 consecutive input columns keep the 2 largest |w| (w = q·scale_row, so
    |q| within a row; × sqrt(H_jj) when hessians are given). A tail of in % 4 columns is kept."""
    out, zeroed = dict(tensors), 0
    for base in names:
        q = out[base + ".q"]
        score = q.abs().double()
        if hessians is not None:
            score = score * torch.from_numpy(np.sqrt(_hdiag(hessians, base, q.shape[1])))[None, :]
        before = int((q != 0).sum())
        q = q * two_four_keep(score)
        zeroed += before - int((q != 0).sum())
        out[base + ".q"] = q
    return out, zeroed
