"""The GPU's SM clock, power draw and temperature, sampled by nvidia-smi in a child process while a
benchmark runs, so that kernel times from two runs can be read against the clocks they ran at.

Why: in the nineteenth session's A/B (BENCHMARKS.md) the same attention kernels took 136 ms a step in a run
whose GPU idled 25% of the time and 145-146 ms in runs idling 11-16%: the GPU was faster when it rested
more. A kernel-time difference between two runs is only the code's when their clocks agree.

    with ClockSampler() as clocks:
        ...                        # the work
        clocks.mark()              # from here on (e.g. after the compiling steps)
    print(clocks.summary())
"""

from __future__ import annotations

import shutil
import subprocess
import threading
import time

FIELDS = ("clocks.sm", "power.draw", "temperature.gpu")


def parse_sample(line: str) -> tuple[str, float, float, float] | None:
    """(gpu uuid, SM MHz, watts, degrees C) from one `uuid,<FIELDS>` csv line, nounits; None if any is N/A."""
    parts = [p.strip() for p in line.split(",")]
    if len(parts) != 1 + len(FIELDS):
        return None
    try:
        return (parts[0], *map(float, parts[1:]))
    except ValueError:  # "[N/A]", "[Not Supported]"
        return None


def summarize(samples: list[tuple[float, float, float]]) -> str:
    """One line from (SM MHz, watts, C) samples."""
    if not samples:
        return "GPU clocks: no samples"
    mhz, watts, temp = zip(*samples)
    return (f"GPU clocks: SM {sum(mhz) / len(mhz):,.0f} MHz mean ({min(mhz):,.0f}-{max(mhz):,.0f}), "
            f"power {sum(watts) / len(watts):,.0f} W mean (max {max(watts):,.0f}), {max(temp):.0f} C max, "
            f"{len(samples)} samples")


def this_gpu_uuid() -> str | None:
    """nvidia-smi's name for torch's current device ("GPU-<uuid>"), or None where torch cannot say."""
    import torch

    uuid = getattr(torch.cuda.get_device_properties(torch.cuda.current_device()), "uuid", None)
    if uuid is None:
        return None
    uuid = str(uuid)
    return uuid if uuid.startswith("GPU-") else f"GPU-{uuid}"


class ClockSampler:
    """Samples every `period_ms` from entry to exit; `summary()` covers the samples after the last `mark()`
    (all of them without one), of the GPU named `uuid` where nvidia-smi sees several. Without nvidia-smi it
    samples nothing and says so."""

    def __init__(self, period_ms: int = 100, uuid: str | None = None):
        self.period_ms, self.uuid = period_ms, uuid
        self.samples: list[tuple[float, tuple[str, float, float, float]]] = []
        self.since = 0.0
        self.proc: subprocess.Popen | None = None
        self.reader: threading.Thread | None = None

    def __enter__(self) -> ClockSampler:
        exe = shutil.which("nvidia-smi")
        if exe is None:
            return self
        query = ",".join(("uuid", *FIELDS))
        self.proc = subprocess.Popen([exe, f"--query-gpu={query}", "--format=csv,noheader,nounits",
                                      f"--loop-ms={self.period_ms}"], stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL, text=True)
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()
        return self

    def _read(self) -> None:
        for line in self.proc.stdout:
            sample = parse_sample(line)
            if sample is not None:
                self.samples.append((time.time(), sample))

    def mark(self) -> None:
        self.since = time.time()

    def __exit__(self, *exc) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
            self.reader.join(timeout=10)

    def summary(self) -> str:
        if self.proc is None:
            return "GPU clocks: not sampled (no nvidia-smi on PATH)"
        kept = [s for t, s in self.samples if t >= self.since]
        if len({s[0] for s in kept}) > 1:  # several GPUs in view: this process's alone
            kept = [s for s in kept if s[0] == self.uuid]
        return summarize([s[1:] for s in kept])
