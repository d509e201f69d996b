"""The GPU's SM clock, power draw and temperature, sampled in a background thread while a benchmark runs,
so that kernel times from two runs can be read against the clocks they ran at.

Why: in the nineteenth session's A/B (BENCHMARKS.md) the same attention kernels took 136 ms a step in a run
whose GPU idled 25% of the time and 145-146 ms in runs idling 11-16%: the GPU was faster when it rested
more. A kernel-time difference between two runs is only the code's when their clocks agree.

    with ClockSampler() as clocks:
        ...                        # the work
        clocks.mark()              # from here on (e.g. after the compiling steps)
    print(clocks.summary())

The readings are torch.cuda's (clock_rate, power_draw, temperature: NVML through pynvml, which the lent
image has), for torch's current device; each is NVML's average over its own sample period (1/6 to 1 s).
"""

from __future__ import annotations

import threading
import time
from typing import Callable

Reading = tuple[float, float, float]  # SM MHz, watts, degrees C


def torch_reader() -> Callable[[], Reading]:
    """Reads the current CUDA device through torch.cuda (the device fixed now: the thread has its own)."""
    import torch

    device = torch.cuda.current_device()
    return lambda: (float(torch.cuda.clock_rate(device)), torch.cuda.power_draw(device) / 1e3,
                    float(torch.cuda.temperature(device)))


def summarize(samples: list[Reading]) -> str:
    """One line from (SM MHz, watts, C) samples."""
    if not samples:
        return "GPU clocks: no samples"
    mhz, watts, temp = zip(*samples)
    return (f"GPU clocks: SM {sum(mhz) / len(mhz):,.0f} MHz mean ({min(mhz):,.0f}-{max(mhz):,.0f}), "
            f"power {sum(watts) / len(watts):,.0f} W mean (max {max(watts):,.0f}), {max(temp):.0f} C max, "
            f"{len(samples)} samples")


class ClockSampler:
    """Calls `read` every `period_s` from entry to exit; `summary()` covers the samples after the last
    `mark()` (all of them without one). If a reading fails (no pynvml, say), sampling stops and the summary
    gives the error."""

    def __init__(self, read: Callable[[], Reading] | None = None, period_s: float = 0.1):
        self.read, self.period_s = read, period_s
        self.samples: list[tuple[float, Reading]] = []
        self.since = 0.0
        self.error: str | None = None
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> ClockSampler:
        try:
            self.read = self.read or torch_reader()
        except Exception as e:  # noqa: BLE001 - no CUDA: nothing to sample, and the summary says why
            self.error = f"{type(e).__name__}: {e}"
            return self
        self.thread.start()
        return self

    def _run(self) -> None:
        while not self.stop.is_set():
            try:
                reading = self.read()
            except Exception as e:  # noqa: BLE001 - reported by summary(), never raised into the benchmark
                self.error = f"{type(e).__name__}: {e}"
                return
            self.samples.append((time.time(), reading))
            self.stop.wait(self.period_s)

    def mark(self) -> None:
        self.since = time.time()

    def __exit__(self, *exc) -> None:
        self.stop.set()
        if self.thread.is_alive():
            self.thread.join(timeout=10)

    def summary(self) -> str:
        if self.error and not self.samples:
            return f"GPU clocks: not sampled ({self.error.splitlines()[0][:120]})"
        return summarize([r for t, r in self.samples if t >= self.since])
