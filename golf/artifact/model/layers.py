"""The GPT's parts other than attention: norm, MLP, the transformer block, input embeddings.

A `Block` runs either the serial form (attention then MLP on one residual stream) or the
two-lane parallel form (LQER, docs/techniques.md §2.2 item 8). The optional input parts
(SmearGate, BigramHash, value embeddings) live here too, each zero-effect at init.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from golf.artifact.model.attention import CausalSelfAttention, init_linear
from golf.artifact.model.config import ModelConfig


class RMSNorm(nn.Module):
    """Parameter-free RMSNorm over the last dim (a module, so a hook can see its output)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.rms_norm(x, (x.size(-1),))


class MLP(nn.Module):
    """fc -> relu^2 or leaky_relu^2 -> proj (proj zero-initialised).

    Training (GPT.use_fused_kernels) may set `fused_mlp(x, W_fc, W_proj, slope)`, which replaces all
    three, or `fused_act(u, slope)`, which replaces the eager activation pair.
    """

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.fc = nn.Linear(cfg.model_dim, cfg.mlp_hidden, bias=False)
        self.proj = nn.Linear(cfg.mlp_hidden, cfg.model_dim, bias=False)
        self.slope = cfg.leaky_slope if cfg.activation == "leaky_relu2" else 0.0
        self.fused_act = self.fused_mlp = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.fused_mlp is not None:
            return self.fused_mlp(x, self.fc.weight, self.proj.weight, self.slope)
        h = self.fc(x)
        if self.fused_act is not None:
            return self.proj(self.fused_act(h, self.slope))
        h = F.leaky_relu(h, self.slope) if self.slope else F.relu(h)
        return self.proj(h.square())


KAN_RANGE = 2.0  # the fixed spline grid spans [-KAN_RANGE, KAN_RANGE]; inputs are squashed into it by tanh


def bspline_basis(x: torch.Tensor, grid: int, order: int) -> torch.Tensor:
    """(..., n) in [-KAN_RANGE, KAN_RANGE) -> (..., n, grid + order) uniform B-spline basis (Cox-de Boor).

    The knots extend `order` intervals beyond each end, so at every point of the range exactly
    order + 1 bases may be nonzero and all of them are >= 0 and sum to 1 (a partition of unity).
    """
    h = 2 * KAN_RANGE / grid
    knots = -KAN_RANGE + h * torch.arange(-order, grid + order + 1, device=x.device, dtype=x.dtype)
    x = x.unsqueeze(-1)
    b = ((x >= knots[:-1]) & (x < knots[1:])).to(x.dtype)  # order 0: the indicator of each interval
    for p in range(1, order + 1):
        b = ((x - knots[:-(p + 1)]) * b[..., :-1] + (knots[p + 1:] - x) * b[..., 1:]) / (p * h)
    return b


class KANLinear(nn.Module):
    """One KAN layer n_in -> n_out written as two nn.Linear maps over features of x:
    base(silu(x)) + spline(B(u)), u = KAN_RANGE * tanh(x / KAN_RANGE) (slope 1 at 0, always inside the
    fixed grid) and B its B-spline basis, n_in * (grid + order) features. Plain Linears, so GPTQ's
    Hessian hooks see each one's real input and Muon trains both 2-D weights (docs/ablation.md)."""

    def __init__(self, n_in: int, n_out: int, grid: int, order: int):
        super().__init__()
        self.grid, self.order = grid, order
        self.base = nn.Linear(n_in, n_out, bias=False)
        self.spline = nn.Linear(n_in * (grid + order), n_out, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # at least fp32: bf16 would misplace points between knots
        u = KAN_RANGE * torch.tanh(x.to(torch.promote_types(x.dtype, torch.float32)) / KAN_RANGE)
        basis = bspline_basis(u, self.grid, self.order).flatten(-2).to(x.dtype)
        return self.base(F.silu(x)) + self.spline(basis)


class KANMLP(nn.Module):
    """model.mlp_kind = kan: KANLinear d -> kan_hidden -> d (sized near the dense MLP: config.kan_hidden);
    the names fc / proj keep the dense MLP's tensor groups (GPTQ bits, container sections), and proj's
    two Linears start at zero like the dense proj."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.fc = KANLinear(cfg.model_dim, cfg.kan_hidden, cfg.kan_grid, cfg.kan_order)
        self.proj = KANLinear(cfg.kan_hidden, cfg.model_dim, cfg.kan_grid, cfg.kan_order)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(self.fc(x))


class Block(nn.Module):
    """One physical layer: resid_mix, attention and MLP with per-dim output scales."""

    def __init__(self, cfg: ModelConfig, layer: int):
        super().__init__()
        d = cfg.model_dim
        self.attn_norm = RMSNorm()
        self.mlp_norm = RMSNorm()
        self.attn = CausalSelfAttention(cfg, layer)
        if cfg.moe_num_experts:
            from golf.artifact.model.moe import MoEMLP  # imports torch._dynamo: only for models that use it

            self.mlp = MoEMLP(cfg)
        else:
            self.mlp = KANMLP(cfg) if cfg.mlp_kind == "kan" else MLP(cfg)
        self.attn_scale = nn.Parameter(torch.ones(d))
        self.mlp_scale = nn.Parameter(torch.ones(d))
        # x_in = m0*x + m1*x0: lets every layer look back at the embedding; starts as identity
        self.resid_mix = nn.Parameter(torch.stack((torch.ones(d), torch.zeros(d))))
        # physical index, so looped layers reuse their own factor. A buffer, not a Python float:
        # torch.compile guards on float attributes, so each layer would compile its own graph.
        self.register_buffer("ln_scale_factor", torch.tensor(1.0 / math.sqrt(layer + 1) if cfg.ln_scale else 1.0,
                                                             dtype=torch.float64), persistent=False)

    # every 1-D parameter meets the residual stream in its dtype (.to(x.dtype)): a no-op for the fp32
    # stream, and what keeps a bf16 one (GPT.autocast_residual) in bf16 instead of promoting it to fp32
    def _attn(self, x_in, rope, ve, adapter, slot, docs, v0, lam):
        y, v = self.attn(self.attn_norm(x_in) * self.ln_scale_factor, rope, ve, adapter, slot, docs, v0, lam)
        return self.attn_scale.to(x_in.dtype) * y, v

    def _mlp(self, x, adapter, slot):
        h = self.mlp_norm(x) * self.ln_scale_factor
        out = self.mlp(h)
        if adapter is not None:
            delta = adapter(f"{slot}.mlp", h)
            if delta is not None:
                out = out + delta
        return self.mlp_scale.to(x.dtype) * out

    def mix(self, x: torch.Tensor, x0: torch.Tensor) -> torch.Tensor:
        mix = self.resid_mix.to(x.dtype)
        return mix[0] * x + mix[1] * x0

    def forward(self, x, x0, rope, ve=None, adapter=None, slot: int = 0, docs=None, v0=None, lam=None,
                return_v: bool = False):
        """Serial form: x -> x_in + attn, then + mlp. docs: the attention's documents (or None).
        Value residual: v0, lam mix the first layer's values in; return_v = also return this layer's
        values ((x, v)), which the first layer does."""
        x = self.mix(x, x0)
        a, v = self._attn(x, rope, ve, adapter, slot, docs, v0, lam)
        x = x + a
        x = x + self._mlp(x, adapter, slot)
        return (x, v) if return_v else x

    def forward_parallel(self, lane0, lane1, x0, rope, resid, post, ve=None, adapter=None, slot: int = 0,
                         docs=None, v0=None, lam=None, return_v: bool = False):
        """Two-lane form: attention reads mix(lane0, x0), the MLP reads lane1; both write to both.

        lane_k <- resid[k]*lane_k + post[0,k]*attn_out + post[1,k]*mlp_out. v0, lam, return_v: `forward`.
        """
        a, v = self._attn(self.mix(lane0, x0), rope, ve, adapter, slot, docs, v0, lam)
        m = self._mlp(lane1, adapter, slot)
        lane0 = resid[0] * lane0 + post[0, 0] * a + post[1, 0] * m
        lane1 = resid[1] * lane1 + post[0, 1] * a + post[1, 1] * m
        return (lane0, lane1, v) if return_v else (lane0, lane1)


class SmearGate(nn.Module):
    """x_t += lam * sigmoid(w . x_t[:window]) * x_{t-1}, except where token t is BOS.

    Without the BOS mask the last token of document N would leak into document N+1's first
    position. Both w and lam start at zero, so the gate is the identity at init.
    """

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.window, self.bos_id = cfg.gate_window, cfg.bos_id
        self.smear_gate = nn.Linear(cfg.gate_window, 1, bias=False)
        nn.init.zeros_(self.smear_gate.weight)
        self.smear_lambda = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        cur = x[:, 1:]
        g = self.smear_lambda.to(x.dtype) * torch.sigmoid(self.smear_gate(cur[..., : self.window]))
        g = g.masked_fill((idx[:, 1:] == self.bos_id).unsqueeze(-1), 0.0)
        return torch.cat((x[:, :1], cur + g * x[:, :-1]), dim=1)


class BigramHash(nn.Module):
    """Hashed (previous, current) token pair -> table row -> projected to d, times a scalar.

    Bucket (36313*t_i XOR 27191*t_{i-1}) mod (V_b - 1); position 0 uses bucket V_b - 1, and so
    does every BOS under model.doc_masked_attention (its previous token is another document's).
    The table starts at zero (no effect at init); proj follows the general init rule so the
    table still receives gradient.
    """

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.buckets = cfg.bigram_vocab_size
        self.bos_id = cfg.bos_id if cfg.doc_masked_attention else None
        self.embed = nn.Embedding(cfg.bigram_vocab_size, cfg.bigram_dim)
        nn.init.zeros_(self.embed.weight)
        self.proj = nn.Linear(cfg.bigram_dim, cfg.model_dim, bias=False)
        init_linear(self.proj, zero=False)
        self.scale = nn.Parameter(torch.tensor(0.05))

    def hash(self, idx: torch.Tensor) -> torch.Tensor:
        cur, prev = idx[:, 1:].long(), idx[:, :-1].long()
        h = torch.bitwise_xor(36313 * cur, 27191 * prev) % (self.buckets - 1)
        if self.bos_id is not None:
            h = h.masked_fill(idx[:, 1:] == self.bos_id, self.buckets - 1)
        first = torch.full_like(idx[:, :1], self.buckets - 1, dtype=torch.long)
        return torch.cat((first, h), dim=1)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        return self.scale * self.proj(self.embed(self.hash(idx)))


class ValueEmbedding(nn.Module):
    """A shared token table (std 0.01) projected to the KV width, added to V at chosen layers."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.embed = nn.Embedding(cfg.vocab_size, cfg.ve_dim)
        nn.init.normal_(self.embed.weight, std=0.01)
        self.proj = nn.Linear(cfg.ve_dim, cfg.num_kv_heads * cfg.head_dim, bias=False)
        init_linear(self.proj, zero=False)
        self.scale = nn.Parameter(torch.tensor(0.1))
        # one learned scale per receiving layer, indexed by position in cfg.ve_layers
        self.layer_scales = nn.Parameter(torch.ones(len(cfg.ve_layers)))

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        return self.scale * self.proj(self.embed(idx))
