"""The mixture-of-experts MLP (issue 9's study), apart from golf.artifact.model.layers because its eager
dispatch needs `torch.compiler.disable`, whose import of torch._dynamo costs seconds at every
stage's start; only a model with `model.moe_num_experts > 0` imports this module.
"""

from __future__ import annotations

import torch
from torch import nn

from golf.artifact.model.config import ModelConfig
from golf.artifact.model.layers import MLP


class MoEMLP(nn.Module):
    """Mixture of experts: a linear router sends each token to its top-k of E full MLPs.

    The k chosen experts' outputs are mixed by the router's softmax probabilities renormalised
    over those k. Each expert runs only on its own tokens (gathered rows), so a forward hook on
    `experts.<e>.fc` sees exactly the inputs that expert's H = XᵀX needs; an expert that gets no
    token still runs on zero rows (hooks fire, contributing nothing). Every call records the
    Switch-Transformer load-balancing loss E * sum_e f_e * P_e (f_e: share of the N*k assignments
    sent to e, P_e: mean router probability of e; 1.0 when perfectly balanced) in `aux_losses`,
    which `GPT.hidden` clears at the start of each forward.
    """

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.num_experts, self.top_k = cfg.moe_num_experts, cfg.moe_top_k
        self.router = nn.Linear(cfg.model_dim, cfg.moe_num_experts, bias=False)
        self.experts = nn.ModuleList(MLP(cfg) for _ in range(cfg.moe_num_experts))
        self.aux_losses: list[torch.Tensor] = []
        self.last_topk: torch.Tensor | None = None  # (N, k) expert ids of the last call (tests, stats)

    def route(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(probs (N, E) fp32, top-k expert ids (N, k), their mixing weights (N, k) summing to 1)."""
        probs = torch.softmax(self.router(h).float(), dim=-1)
        weights, ids = probs.topk(self.top_k, dim=-1)
        return probs, ids, weights / weights.sum(dim=-1, keepdim=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x.reshape(-1, x.size(-1))
        probs, ids, weights = self.route(h)
        counts = torch.zeros(self.num_experts, device=h.device, dtype=torch.float32)
        counts.index_add_(0, ids.reshape(-1), torch.ones(ids.numel(), device=h.device))
        frac = counts / ids.numel()
        self.aux_losses.append(self.num_experts * (frac * probs.mean(dim=0)).sum())
        self.last_topk = ids.detach()
        return self._dispatch(h, ids, weights).view_as(x)

    @torch.compiler.disable
    def _dispatch(self, h: torch.Tensor, ids: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        # data-dependent row counts: run eagerly under torch.compile (a graph break, no recompiles)
        out = torch.zeros_like(h)
        for e, expert in enumerate(self.experts):
            rows, slot = (ids == e).nonzero(as_tuple=True)
            y = (expert(h[rows]) * weights[rows, slot].unsqueeze(-1)).to(h.dtype)
            out.index_add_(0, rows, y)
        return out
