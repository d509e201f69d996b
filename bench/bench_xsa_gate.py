"""golf::xsa_gate (golf/kernels/xsa_gate.py) against inductor's kernels for the same eager code, at the
record's shapes (98,304 tokens; 8 heads over 4 KV heads of 64 dims; a 12-dim gate window of a 512-dim
input), forward + backward, CUDA-event ms (median of 20), over the kernel's tokens per program and warps.

    python bench/bench_xsa_gate.py
"""

from __future__ import annotations

import itertools

import torch
from bench_qk_rope import timed

from golf.kernels import xsa_gate as mod


def main() -> None:
    dev = torch.device("cuda")
    leaf = lambda *shape: torch.randn(*shape, device=dev, dtype=torch.bfloat16, requires_grad=True)  # noqa: E731
    y, v, x = leaf(48, 2048, 8, 64), leaf(48, 2048, 4, 64), leaf(48, 2048, 512)
    w = torch.zeros(8, 12, device=dev, requires_grad=True)
    dout = torch.randn_like(y)
    ref = torch.compile(mod.xsa_gate_reference)

    def step(fn):
        return lambda: fn(y, v, x[..., :12], w, 0.5).backward(dout)

    print("| path | fwd + bwd ms |\n|---|---:|")
    print(f"| inductor (torch.compile of the eager code) | {timed(step(ref)):.3f} |")
    for tokens, warps in itertools.product((16, 32, 64, 128), (2, 4, 8)):
        mod.TOKENS, mod.NUM_WARPS = tokens, warps
        print(f"| golf::xsa_gate, {tokens} tokens, {warps} warps | {timed(step(mod.xsa_gate)):.3f} |")


if __name__ == "__main__":
    main()
