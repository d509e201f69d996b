"""golf::qk_rope (golf/kernels/qk_rope.py) against inductor's kernels for the same eager code, at the
record's shapes (98,304 tokens; q 8 heads, k 4 heads of 64 dims, 16 rotated), forward + backward, CUDA-event
ms (median of 20), over the kernel's rows per program and warps.

    python bench/bench_qk_rope.py
"""

from __future__ import annotations

import itertools

import torch

from golf.artifact.model.attention import Rotary
from golf.kernels import qk_rope as mod


def timed(fn, reps: int = 20) -> float:
    for _ in range(3):
        fn()
    times = []
    for _ in range(reps):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        fn()
        b.record()
        torch.cuda.synchronize()
        times.append(a.elapsed_time(b))
    return sorted(times)[reps // 2]


def main() -> None:
    dev = torch.device("cuda")
    rope = Rotary(16, 10000.0).to(dev)(2048, dev)
    gain = torch.full((8,), 5.0, device=dev, requires_grad=True)
    q = torch.randn(48, 2048, 8, 64, device=dev, dtype=torch.bfloat16, requires_grad=True)
    k = torch.randn(48, 2048, 4, 64, device=dev, dtype=torch.bfloat16, requires_grad=True)
    dq, dk = torch.randn_like(q), torch.randn_like(k)
    ref = torch.compile(mod.qk_rope_reference)

    def step(fn):
        def run():
            yq, yk = fn(q, rope, gain, 16), fn(k, rope, None, 16)
            torch.autograd.backward((yq, yk), (dq, dk))
        return run

    print("| path | fwd + bwd ms (q and k) |\n|---|---:|")
    print(f"| inductor (torch.compile of the eager code) | {timed(step(ref)):.3f} |")
    for rows, warps in itertools.product((16, 32, 64, 128), (2, 4, 8)):
        mod.ROWS, mod.NUM_WARPS = rows, warps
        print(f"| golf::qk_rope, {rows} rows, {warps} warps | {timed(step(mod.qk_rope)):.3f} |")


if __name__ == "__main__":
    main()
