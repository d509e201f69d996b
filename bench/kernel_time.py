"""Device time of the kernels a function launches, from torch.profiler: no host launch gaps (a compiled
training step hides those), unlike CUDA events around the call. Used by bench_qk_rope.py and
bench_xsa_gate.py."""

from __future__ import annotations

import torch
from torch.profiler import ProfilerActivity, profile


def kernel_us(fn, reps: int = 20) -> tuple[float, dict[str, float]]:
    """(all kernels' device us per call of fn, {kernel name: us per call}) over reps calls, after 3 warm-ups."""
    for _ in range(3):
        fn()
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(reps):
            fn()
        torch.cuda.synchronize()
    per_kernel = {e.key: e.self_device_time_total / reps for e in prof.key_averages()
                  if e.device_type == torch.autograd.DeviceType.CUDA and e.self_device_time_total > 0}
    return sum(per_kernel.values()), per_kernel


def golf_kernels(per_kernel: dict[str, float]) -> str:
    """'name us, ...' for golf's own kernels (the ones named golf_*)."""
    return ", ".join(f"{k} {v:.0f}" for k, v in sorted(per_kernel.items()) if k.startswith("golf_"))
