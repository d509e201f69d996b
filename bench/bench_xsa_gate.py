"""golf::xsa_gate (golf/kernels/xsa_gate.py) against inductor's kernels for the same eager code, at the
record's shapes (98,304 tokens; 8 heads over 4 KV heads of 64 dims; a 12-dim gate window of a 512-dim
input), forward + backward: the kernels' device us per call (torch.profiler, bench/kernel_time.py), over the
kernel's tokens per program and warps.

    python bench/bench_xsa_gate.py
"""

from __future__ import annotations

import itertools

import torch
from kernel_time import golf_kernels, kernel_us

from golf.kernels import xsa_gate as mod


def main() -> None:
    dev = torch.device("cuda")
    leaf = lambda *shape: torch.randn(*shape, device=dev, dtype=torch.bfloat16, requires_grad=True)  # noqa: E731
    y, v, x = leaf(48, 2048, 8, 64), leaf(48, 2048, 4, 64), leaf(48, 2048, 512)
    w = torch.zeros(8, 12, device=dev, requires_grad=True)
    dout = torch.randn_like(y)
    window = x[..., :12]  # a view of the wider input, as the model passes it
    ref, fused = torch.compile(mod.xsa_gate_reference), torch.compile(mod.xsa_gate)  # compiled, as in training

    def step(fn):  # autograd.grad: no accumulation kernels into .grad
        return lambda: torch.autograd.grad(fn(y, v, window, w, 0.5), (y, v, window, w), dout)

    print("| path | kernels, fwd + bwd us | golf's kernels us |\n|---|---:|---|")
    print(f"| inductor (torch.compile of the eager code) | {kernel_us(step(ref))[0]:.0f} | |")
    for tokens, warps in itertools.product((16, 32, 64, 128), (2, 4, 8)):
        mod.TOKENS, mod.NUM_WARPS = tokens, warps
        total, per_kernel = kernel_us(step(fused))
        print(f"| golf::xsa_gate, {tokens} tokens, {warps} warps | {total:.0f} | {golf_kernels(per_kernel)} |")


if __name__ == "__main__":
    main()
