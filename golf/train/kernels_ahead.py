"""`train.compile_kernels_ahead`: FA4's and quack's CuTe DSL kernels compile in a thread of the training process
while its main thread traces and compiles the looped graph.

Those kernels compile at their first call, which without this is the looped graph's first run: 15-23 s of the
start to the first step, after the graph's compile (BENCHMARKS.md, twenty-sixth session). Moving them to the
compile_ahead helper process made its plain graph late by as long, and a process of their own slowed the other
two (twenty-seventh session). A thread needs no imports and no second CUDA context, and it fills the compiled
kernels into this process's own in-memory caches; what it gains depends on how much of their compile runs
without Python's GIL (measured in BENCHMARKS.md).

The thread runs each distinct kernel call of a step once, forward and backward, on one row of random numbers
(its own generator: training's random state is untouched) and on detached copies of the weights (no gradient
reaches the model). The main thread waits for it between the looped graph's compile and its first run, so the
two never compile the same kernel at once and no kernel launches from the thread while a CUDA graph is captured.
A thread that fails costs its time: the kernels then compile at the first run, as without it.
"""

from __future__ import annotations

import sys
import threading
import time
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


class KernelsAhead:
    """compile_kernels in a thread, started at construction; `wait` joins it."""

    def __init__(self, model: torch.nn.Module, seq_len: int, device: torch.device):
        self.calls, self.seconds, self.waited = 0, 0.0, 0.0
        self._thread = threading.Thread(target=self._run, args=(model, seq_len, device), name="golf-kernels-ahead",
                                        daemon=True)
        self._thread.start()

    def _run(self, model: torch.nn.Module, seq_len: int, device: torch.device) -> None:
        t0 = time.perf_counter()
        try:
            self.calls = compile_kernels(model, seq_len, device)
        except Exception as e:  # noqa: BLE001  the kernels then compile at the graph's first run, as without it
            print(f"train: compile_kernels_ahead failed ({type(e).__name__}: {str(e).splitlines()[0][:200]}); "
                  "the kernels compile at the first step instead", file=sys.stderr)
        self.seconds = time.perf_counter() - t0

    def wait(self) -> None:
        """Join the thread (once; later calls return at once), adding the seconds waited to `waited`."""
        t0 = time.perf_counter()
        self._thread.join()
        self.waited += time.perf_counter() - t0


def inductor_then_wait(options: dict[str, Any], kernels: KernelsAhead) -> Any:
    """torch.compile's inductor backend with `options`, which waits for the kernels thread after each compile,
    before the graph first runs (a subclass, so dynamo treats it as inductor)."""

    class InductorThenWait(torch._TorchCompileInductorWrapper):
        def __call__(self, model_: Any, inputs_: Any, **kwargs: Any) -> Any:
            compiled = super().__call__(model_, inputs_, **kwargs)
            kernels.wait()
            return compiled

    return InductorThenWait(None, options, False)
