"""A tiny causal LM that follows the golf.artifact.model contract, for the tests (kept out of the library).

`nll(idx, targets, adapter=None) -> (B, T)` per-token NLL with the full-vocabulary softmax,
`forward(idx, adapter=None) -> (B, T, V)` logits, adapter sites `"{slot}.attn.c_q|c_k|c_v|proj"`,
`"{slot}.mlp"` and `"head"` (docs/contracts.md), strictly causal.
"""

from __future__ import annotations

import math
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn

Adapter = Callable[[str, torch.Tensor], Any]


def _site(adapter: Adapter | None, site: str, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    if adapter is None:
        return y
    d = adapter(site, x)
    return y if d is None else y + d


class ToyAttention(nn.Module):
    def __init__(self, dim: int, kv_dim: int):
        super().__init__()
        self.c_q = nn.Linear(dim, kv_dim, bias=False)
        self.c_k = nn.Linear(dim, kv_dim, bias=False)
        self.c_v = nn.Linear(dim, kv_dim, bias=False)
        self.proj = nn.Linear(kv_dim, dim, bias=False)

    def forward(self, x: torch.Tensor, slot: int, adapter: Adapter | None) -> torch.Tensor:
        q = _site(adapter, f"{slot}.attn.c_q", x, self.c_q(x))
        k = _site(adapter, f"{slot}.attn.c_k", x, self.c_k(x))
        v = _site(adapter, f"{slot}.attn.c_v", x, self.c_v(x))
        t = x.shape[1]
        att = (q @ k.transpose(1, 2)) / math.sqrt(q.shape[-1])
        mask = torch.ones(t, t, dtype=torch.bool, device=x.device).tril()
        y = att.masked_fill(~mask, float("-inf")).softmax(-1) @ v
        return _site(adapter, f"{slot}.attn.proj", y, self.proj(y))


class ToyBlock(nn.Module):
    def __init__(self, dim: int, kv_dim: int, hidden: int):
        super().__init__()
        self.attn = ToyAttention(dim, kv_dim)
        self.fc = nn.Linear(dim, hidden)
        self.out = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor, slot: int, adapter: Adapter | None) -> torch.Tensor:
        x = x + self.attn(F.layer_norm(x, x.shape[-1:]), slot, adapter)
        h = F.layer_norm(x, x.shape[-1:])
        return x + _site(adapter, f"{slot}.mlp", h, self.out(torch.relu(self.fc(h))))


class ToyLM(nn.Module):
    """Embedding + `layers` causal blocks + untied head; positions learned up to `max_len`."""

    def __init__(self, vocab: int = 37, dim: int = 24, kv_dim: int = 16, hidden: int = 40, layers: int = 2,
                 max_len: int = 64, seed: int = 0, dtype: torch.dtype = torch.float64):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.tok = nn.Embedding(vocab, dim)
        self.pos = nn.Embedding(max_len, dim)
        self.blocks = nn.ModuleList(ToyBlock(dim, kv_dim, hidden) for _ in range(layers))
        self.head = nn.Linear(dim, vocab, bias=False)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=g) * 0.3)
        self.to(dtype)
        self.vocab_size = vocab
        self.num_virtual_layers = layers

    def forward(self, idx: torch.Tensor, adapter: Adapter | None = None) -> torch.Tensor:
        t = idx.shape[1]
        x = self.tok(idx) + self.pos(torch.arange(t, device=idx.device))[None]
        for i, blk in enumerate(self.blocks):
            x = blk(x, i, adapter)
        h = F.layer_norm(x, x.shape[-1:])
        return _site(adapter, "head", h, self.head(h))

    def nll(self, idx: torch.Tensor, targets: torch.Tensor, adapter: Adapter | None = None) -> torch.Tensor:
        logits = self.forward(idx, adapter)
        return F.cross_entropy(logits.flatten(0, 1), targets.flatten(), reduction="none").view(targets.shape)
