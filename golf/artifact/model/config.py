"""The `model` section of params.yaml: the GPT's architecture, one field per record env var.

No defaults: params.yaml (or a checkpoint header) holds every value. `__post_init__` rejects
combinations the model cannot build, naming the key and value. Whether depth recurrence is
*active* is not config but the runtime flag `GPT.looping` (train switches it on part way).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

MAX_LOOPS = 16  # the records loop 2-3 times; a header asking for billions would hang the loader building the layer list
MAX_KAN_BASIS = 64  # grid + order: the study uses 5 + 3; the Cox-de Boor loop runs `order` times per call


@dataclass(frozen=True, kw_only=True)
class ModelConfig:
    vocab_size: int
    """Tokens in the vocabulary (rows of the embedding / columns of the logits)."""
    bos_id: int
    """Token id that starts every document (the SmearGate never mixes across it)."""
    doc_masked_attention: bool
    """No token attends across a BOS: attention, the bigram hash and the SmearGate all stay inside the
    document (a BOS starts one, and so does each window's first token); false = causal over the window."""
    num_layers: int
    """Physical transformer blocks (distinct weight sets)."""
    model_dim: int
    """Width of the residual stream, d."""
    num_heads: int
    """Query heads per attention layer; head_dim = model_dim / num_heads."""
    num_kv_heads: int
    """Key/value heads (GQA); must divide num_heads."""
    mlp_mult: float
    """MLP hidden width as a multiple of model_dim (hidden = int(mlp_mult * model_dim))."""
    activation: Literal["relu2", "leaky_relu2"]
    """MLP nonlinearity: relu(x)^2, or leaky_relu(x, leaky_slope)^2."""
    leaky_slope: float
    """Negative slope of leaky_relu2 (records: 0.5); unused by relu2."""
    tie_embeddings: bool
    """LM head reuses the token embedding (logits = h @ E^T); false = separate zero-init lm_head."""
    tied_embed_init_std: float
    """Std of the normal init of the token embedding."""
    logit_softcap: float
    """Logits become softcap * tanh(z / softcap)."""
    rope_base: float
    """RoPE frequency base."""
    rope_dims: int
    """Leading dims of each head that RoPE rotates (partial RoPE; = head_dim for full, 0 = none); even."""
    ln_scale: bool
    """Scale every block's normed input by 1/sqrt(physical_layer + 1)."""
    qk_gain_init: float
    """Initial per-head gain on q after QK-norm and RoPE."""
    xsa_last_n: int
    """Exclusive self-attention on the last N physical layers (0 = off)."""
    unet_skips: bool
    """U-Net: first half of the (virtual) layer sequence feeds skips into the second half."""
    skip_gates_enabled: bool
    """Sigmoid gate per skip: x = lerp(w*skip, x, sigmoid(g)), g zero-init (needs unet_skips)."""
    num_loops: int
    """Extra passes over layers loop_start..loop_end when GPT.looping is on (0 = no recurrence)."""
    loop_start: int
    """First physical layer of the looped segment (inclusive)."""
    loop_end: int
    """Last physical layer of the looped segment (inclusive)."""
    parallel_start_layer: int
    """Two-lane parallel residuals from this physical layer to the last (-1 = off)."""
    smear_gate_enabled: bool
    """SmearGate on the token embedding: x_t += lam*sigmoid(w.x_t[:gate_window])*x_{t-1}, BOS-masked."""
    gate_window: int
    """Leading residual dims read by the SmearGate and the sparse attention gate."""
    bigram_vocab_size: int
    """Buckets of the hashed-bigram embedding (0 = off)."""
    bigram_dim: int
    """Width of the bigram embedding table (projected to model_dim)."""
    ve_dim: int
    """Width of the shared value-embedding table added to V (0 = off)."""
    ve_layers: tuple[int, ...]
    """Physical layers whose V receives the value embedding."""
    sparse_attn_gate_enabled: bool
    """Per-head output gate sigmoid(scale * W_h . x[:gate_window]), W zero-init, before out-proj."""
    sparse_attn_gate_scale: float
    """The scale inside the sparse attention gate's sigmoid."""
    gated_attn_enabled: bool
    """Dense headwise output gate sigmoid(W_h . x), W (heads x model_dim), before out-proj."""
    moe_num_experts: int
    """Experts in every block's MLP, each a full MLP chosen per token by a linear router (0 = off: one dense MLP)."""
    moe_top_k: int
    """Experts each token is routed to, in [1, moe_num_experts]; outputs mixed by renormalised router probs (unused when off)."""
    mtp_heads: int
    """Multi-token prediction: 1 = an auxiliary head predicting token t+2 (train only, dropped from the checkpoint), 0 = off."""
    embed_dim: int
    """Factorized embedding width e < model_dim: tok_emb is (vocab, e), embed_proj lifts it to model_dim and the
    tied head projects down through head_proj (0 = off: tok_emb is model_dim wide)."""
    value_residual: bool
    """Value residual (ResFormer): every virtual layer after the first attends with lam*v + (1-lam)*v0, v0 the
    first layer's values (per KV head), lam one learned scalar per physical layer starting at 0.5."""
    mlp_kind: Literal["dense", "kan"]
    """MLP form: dense (fc -> activation -> proj) or kan (two B-spline KAN layers; `activation` unused)."""
    kan_grid: int
    """KAN: B-spline intervals over the fixed range [-2, 2] (unused when mlp_kind = dense)."""
    kan_order: int
    """KAN: B-spline order (3 = cubic); each input feature has kan_grid + kan_order basis functions."""

    def __post_init__(self) -> None:
        def bad(key: str, why: str) -> ValueError:
            return ValueError(f"model.{key} = {getattr(self, key)!r}: {why}")

        for key in ("vocab_size", "num_layers", "model_dim", "num_heads", "num_kv_heads"):
            if getattr(self, key) < 1:
                raise bad(key, "must be at least 1")
        if not 0 <= self.bos_id < self.vocab_size:
            raise bad("bos_id", f"must lie in [0, vocab_size={self.vocab_size})")
        if self.num_heads % self.num_kv_heads:
            raise bad("num_kv_heads", f"must divide num_heads = {self.num_heads}")
        if self.model_dim % self.num_heads:
            raise bad("model_dim", f"must be divisible by num_heads = {self.num_heads}")
        head_dim = self.model_dim // self.num_heads
        if not 0 <= self.rope_dims <= head_dim or self.rope_dims % 2:
            raise bad("rope_dims", f"must be even and in [0, head_dim = {head_dim}]")
        if self.mlp_mult <= 0 or int(self.mlp_mult * self.model_dim) < 1:
            raise bad("mlp_mult", "must give an MLP hidden width of at least 1")
        for key in ("tied_embed_init_std", "logit_softcap", "rope_base"):
            if getattr(self, key) <= 0:
                raise bad(key, "must be positive")
        if not 0 <= self.xsa_last_n <= self.num_layers:
            raise bad("xsa_last_n", f"must lie in [0, num_layers = {self.num_layers}]")
        if self.skip_gates_enabled and not self.unet_skips:
            raise bad("skip_gates_enabled", "gates U-Net skips, so needs model.unet_skips = true")
        self._check_loops(bad)
        self._check_studies(bad)
        self._check_parallel(bad)
        if (self.smear_gate_enabled or self.sparse_attn_gate_enabled) and not 1 <= self.gate_window <= self.model_dim:
            raise bad("gate_window", f"must lie in [1, model_dim = {self.model_dim}] when a gate reads it")
        if self.bigram_vocab_size < 0 or self.bigram_vocab_size == 1:
            raise bad("bigram_vocab_size", "must be 0 (off) or at least 2")
        if self.bigram_vocab_size and self.bigram_dim < 1:
            raise bad("bigram_dim", "must be at least 1 when the bigram embedding is on")
        if self.ve_dim < 0:
            raise bad("ve_dim", "must be 0 (off) or positive")
        if any(not 0 <= i < self.num_layers for i in self.ve_layers) or len(set(self.ve_layers)) != len(self.ve_layers):
            raise bad("ve_layers", f"must be distinct physical layers in [0, {self.num_layers})")
        if self.ve_dim and not self.ve_layers:
            raise bad("ve_layers", "is empty but model.ve_dim > 0 asks for value embeddings")
        if self.sparse_attn_gate_enabled and self.gated_attn_enabled:
            raise bad("gated_attn_enabled", "pick one attention output gate; sparse_attn_gate_enabled is on too")

    def _check_loops(self, bad) -> None:
        if not 0 <= self.num_loops <= MAX_LOOPS:
            raise bad("num_loops", f"must lie in [0, {MAX_LOOPS}] (0 = off)")
        if self.num_loops == 0:
            return
        if not 0 <= self.loop_start < self.num_layers:
            raise bad("loop_start", f"must lie in [0, num_layers = {self.num_layers})")
        if not self.loop_start <= self.loop_end < self.num_layers:
            raise bad("loop_end", f"must lie in [loop_start = {self.loop_start}, num_layers = {self.num_layers})")

    def _check_studies(self, bad) -> None:
        if self.moe_num_experts < 0 or self.moe_num_experts == 1:
            raise bad("moe_num_experts", "must be 0 (off) or at least 2")
        if self.moe_num_experts and not 1 <= self.moe_top_k <= self.moe_num_experts:
            raise bad("moe_top_k", f"must lie in [1, moe_num_experts = {self.moe_num_experts}]")
        if self.mtp_heads not in (0, 1):
            raise bad("mtp_heads", "must be 0 (off) or 1 (one t+2 head)")
        if not 0 <= self.embed_dim < self.model_dim:
            raise bad("embed_dim", f"must be 0 (off) or in [1, model_dim = {self.model_dim})")
        if self.mlp_kind == "kan":
            if not 1 <= self.kan_grid <= MAX_KAN_BASIS:
                raise bad("kan_grid", f"must lie in [1, {MAX_KAN_BASIS}]")
            if not 0 <= self.kan_order <= MAX_KAN_BASIS - self.kan_grid:
                raise bad("kan_order", f"must lie in [0, {MAX_KAN_BASIS} - kan_grid]")
            if self.moe_num_experts:
                raise bad("mlp_kind", "kan has no MoE form: set moe_num_experts = 0")

    def _check_parallel(self, bad) -> None:
        psl = self.parallel_start_layer
        if psl == -1:
            return
        # The lanes must form one contiguous tail of the virtual sequence, inside the decoder,
        # in both the plain and the looped graph.
        lo = self.num_layers // 2 if self.unet_skips else 0
        if not lo <= psl < self.num_layers:
            raise bad("parallel_start_layer", f"must be -1 (off) or in [{lo}, {self.num_layers})"
                      + (" (the decoder half)" if self.unet_skips else ""))
        if self.num_loops and psl <= self.loop_end:
            raise bad("parallel_start_layer", f"must come after the looped segment (loop_end = {self.loop_end})")

    @property
    def head_dim(self) -> int:
        return self.model_dim // self.num_heads

    @property
    def mlp_hidden(self) -> int:
        return int(self.mlp_mult * self.model_dim)

    @property
    def kan_hidden(self) -> int:
        """KAN MLP hidden width h = max(1, mlp_hidden // (1 + kan_grid + kan_order)): each KAN layer
        in -> out holds in*out base weights and in*(grid+order)*out spline weights, so the two layers
        d -> h -> d hold 2*d*h*(1 + grid + order) <= the dense MLP's 2*d*mlp_hidden."""
        return max(1, self.mlp_hidden // (1 + self.kan_grid + self.kan_order))

    def mlp_weights(self) -> int:
        """Weights of one block's MLP (every expert of an MoE one)."""
        if self.mlp_kind == "kan":
            return 2 * self.model_dim * self.kan_hidden * (1 + self.kan_grid + self.kan_order)
        return 2 * self.model_dim * self.mlp_hidden * max(1, self.moe_num_experts)

    def weights_floor(self) -> int:
        """At most the number of weights this config builds (embeddings, each block's attention and
        MLP matrices, U-Net skips), in Python ints without building anything: golf/artifact/model/load.py
        refuses a header that asks for more than its file holds before allocating (tests/test_model.py
        checks it never exceeds the real count)."""
        d, e, v, hd = self.model_dim, self.embed_dim or self.model_dim, self.vocab_size, self.head_dim
        attn = 2 * d * hd * (self.num_heads + self.num_kv_heads)
        mlp = self.mlp_weights()
        virtual = self.num_layers + self.num_loops * (self.loop_end - self.loop_start + 1)
        return (v * e + self.num_layers * (attn + mlp) + (virtual // 2 * d if self.unet_skips else 0)
                + self.bigram_vocab_size * self.bigram_dim + v * self.ve_dim + (0 if self.tie_embeddings else v * d))

    def layer_sequence(self, looping: bool) -> list[int]:
        """Physical layer of each virtual layer: with looping, loop_start..loop_end run num_loops+1 times."""
        if not (looping and self.num_loops):
            return list(range(self.num_layers))
        loop = list(range(self.loop_start, self.loop_end + 1))
        return (list(range(self.loop_start)) + loop * (self.num_loops + 1)
                + list(range(self.loop_end + 1, self.num_layers)))
