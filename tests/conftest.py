"""Shared fixtures: a tiny model config with explicit values (the library has no defaults)."""

from __future__ import annotations

import importlib.util
import os

if importlib.util.find_spec("triton") is not None and not __import__("torch").cuda.is_available():
    # Triton reads TRITON_INTERPRET when a @triton.jit kernel is defined: set it before any test
    # module imports golf/kernels, or a kernel defined for the GPU runs nowhere (tests/test_kernels.py)
    os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest


def tiny_model_values() -> dict:
    """Every `model` key, tiny and all-different shapes: vocab 96, d 32, 4 heads / 2 KV (head_dim 8),
    5 layers, layers 1..2 looped once, two lanes from layer 3; most record features on."""
    return dict(
        vocab_size=96, bos_id=1, num_layers=5, model_dim=32, num_heads=4, num_kv_heads=2, mlp_mult=2.5,
        activation="leaky_relu2", leaky_slope=0.5, tie_embeddings=True, tied_embed_init_std=0.005,
        logit_softcap=30.0, rope_base=10000.0, rope_dims=4, ln_scale=True, qk_gain_init=5.0,
        xsa_last_n=5, unet_skips=True, skip_gates_enabled=True, num_loops=1, loop_start=1, loop_end=2,
        parallel_start_layer=3, smear_gate_enabled=True, gate_window=6, bigram_vocab_size=0,
        bigram_dim=12, ve_dim=0, ve_layers=(), sparse_attn_gate_enabled=True,
        sparse_attn_gate_scale=0.5, gated_attn_enabled=False,
        moe_num_experts=0, moe_top_k=1, mtp_heads=0, embed_dim=0, doc_masked_attention=False,
        value_residual=False, mlp_kind="dense", kan_grid=5, kan_order=3,
    )


@pytest.fixture
def tiny_model_config():
    """A `golf.artifact.model.ModelConfig` for CPU tests; vary it with `dataclasses.replace(cfg, ...)`."""
    from golf.artifact.model.config import ModelConfig

    return ModelConfig(**tiny_model_values())


@pytest.fixture
def fa4_on_cpu():
    """The FA4 ops (golf/kernels/fa4.py) registered as the "fa4" attention backend; on CPU they run their float32
    reference."""
    from golf.artifact.model import attention
    from golf.kernels import fa4

    attention.register_backend("fa4", fa4.attention, fa4.varlen_attention)
    yield
    attention.unregister_backend("fa4")
