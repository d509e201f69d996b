"""Each CuTe DSL kernel of a training step run once, so that it compiles (golf/train/ahead.py's helper, under
train.compile_ahead_kernels).

FA4's and quack's kernels compile at their first call: without this, in training, at its first graph's first run,
15-23 s of the start to the first step on some H200s (BENCHMARKS.md, twenty-sixth session). Each distinct call runs once,
forward and backward, on one row of random numbers (its own generator: the caller's random state is untouched)
and on detached copies of the weights (no gradient reaches the model), which fills the packages' disk caches
with the kernels training will call.
"""

from __future__ import annotations

from typing import Any

import torch


def compile_kernels(model: torch.nn.Module, seq_len: int, device: torch.device) -> int:
    """Each distinct CuTe DSL kernel call of the model's training step once, forward and backward, eagerly, on one
    row of random numbers: FA4's attention (through `attend`, as the model calls it) and quack's MLP GEMMs; how
    many distinct calls ran."""
    from golf.artifact.model.attention import CausalSelfAttention, attend
    from golf.artifact.model.layers import MLP

    gen = torch.Generator(device).manual_seed(0)

    def rand(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, device=device, dtype=torch.bfloat16, generator=gen).requires_grad_()

    docs = torch.tensor([0, seq_len], dtype=torch.int32, device=device) if getattr(model, "doc_varlen", False) else None
    seen = set()
    for m in model.modules():
        if isinstance(m, CausalSelfAttention) and m.backend == "fa4":
            # kv_repeat as CausalSelfAttention.forward sets it: k and v come with H heads then
            r = m.num_heads // m.num_kv_heads if m.fused_kv_repeat and m.fused_qk is not None else 1
            key = ("attention", m.num_heads, m.num_kv_heads * r, m.head_dim, r)
            if key in seen:
                continue
            q, k, v = rand(1, seq_len, m.num_heads, m.head_dim), *(rand(1, seq_len, key[2], m.head_dim)
                                                                     for _ in range(2))
            y = attend(q, k, v, m.backend, docs, r)
        elif isinstance(m, MLP) and m.fused_mlp is not None and m.fused_mlp is _quack_mlp():
            key = ("mlp", *m.fc.weight.shape, m.slope)
            if key in seen:
                continue
            w_fc, w_proj = (w.detach().requires_grad_() for w in (m.fc.weight, m.proj.weight))
            y = m.fused_mlp(rand(seq_len, m.fc.in_features), w_fc, w_proj, m.slope)
        else:
            continue
        y.backward(torch.randn(y.shape, device=device, dtype=y.dtype, generator=gen))
        seen.add(key)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return len(seen)


def _quack_mlp() -> Any:
    """quack's fused MLP (imported only where an MLP has fused kernels: the module needs Triton)."""
    from golf.kernels.mlp_gemm import mlp_leaky_relu2_quack

    return mlp_leaky_relu2_quack
