"""golf::qk_rope (golf/kernels/qk_rope.py) against inductor's kernels for the same eager code, at the
record's shapes (98,304 tokens; q 8 heads, k 4 heads of 64 dims, 16 rotated), forward + backward: the
kernels' device us per call (torch.profiler, bench/kernel_time.py), over the tile's elements and warps.

    python bench/bench_qk_rope.py              # the sweep
    python bench/bench_qk_rope.py --no-sweep   # inductor and the module's own settings only
"""

from __future__ import annotations

import argparse
import itertools

import torch
from kernel_time import golf_kernels, kernel_us

from golf.artifact.model.attention import Rotary
from golf.kernels import qk_rope as mod


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--no-sweep", action="store_true", help="time the module's ELEMENTS / NUM_WARPS only")
    a = ap.parse_args()
    dev = torch.device("cuda")
    rope = Rotary(16, 10000.0).to(dev)(2048, dev)
    gain = torch.full((8,), 5.0, device=dev, requires_grad=True)
    q = torch.randn(48, 2048, 8, 64, device=dev, dtype=torch.bfloat16, requires_grad=True)
    k = torch.randn(48, 2048, 4, 64, device=dev, dtype=torch.bfloat16, requires_grad=True)
    dq, dk = torch.randn_like(q), torch.randn_like(k)
    ref = torch.compile(mod.qk_rope_reference)

    def step(fn):  # autograd.grad: no accumulation kernels into .grad
        def run():
            yq, yk = fn(q, rope, gain, 16), fn(k, rope, None, 16)
            torch.autograd.grad((yq, yk), (q, k, gain), (dq, dk))
        return run

    print("| path | kernels, fwd + bwd us (q and k) | golf's kernels us |\n|---|---:|---|")
    print(f"| inductor (torch.compile of the eager code) | {kernel_us(step(ref))[0]:.0f} | |")
    sweep = [(None, None)] if a.no_sweep else itertools.product((1024, 2048, 4096, 8192), (2, 4, 8))
    for elements, warps in sweep:
        if elements is not None:
            mod.ELEMENTS, mod.NUM_WARPS = elements, warps
        total, per_kernel = kernel_us(step(mod.qk_rope))
        # ROWS: the twelfth session's version, timed with --no-sweep from a copy of that commit's golf/
        setting = " ".join(f"{n} {getattr(mod, n)}" for n in ("ELEMENTS", "ROWS", "NUM_WARPS") if hasattr(mod, n))
        print(f"| golf::qk_rope, {setting} | {total:.0f} | {golf_kernels(per_kernel)} |")


if __name__ == "__main__":
    main()
