"""bench/gpu_clocks.py: readings summarized, sampled in a thread after a mark, and a failing reader
reported instead of raised (a stand-in reader here: the CPU machine has no GPU)."""

import sys
import threading
import time
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
import gpu_clocks  # noqa: E402


def test_the_summary_gives_mean_and_range():
    line = gpu_clocks.summarize([(1800.0, 600.0, 60.0), (1980.0, 700.0, 64.0)])
    assert "SM 1,890 MHz mean (1,800-1,980)" in line and "power 650 W mean (max 700)" in line
    assert "64 C max" in line and "2 samples" in line
    assert gpu_clocks.summarize([]) == "GPU clocks: no samples"


def wait_until(condition, timeout_s: float = 20.0) -> None:
    end = time.time() + timeout_s
    while not condition():
        assert time.time() < end, "timed out"
        time.sleep(0.005)


def test_only_the_samples_after_the_mark_are_summarized():
    hot = threading.Event()
    read = lambda: (2000.0, 300.0, 70.0) if hot.is_set() else (1000.0, 100.0, 50.0)  # noqa: E731
    with gpu_clocks.ClockSampler(read, period_s=0.01) as clocks:
        wait_until(lambda: len(clocks.samples) >= 3)
        hot.set()
        wait_until(lambda: clocks.samples[-1][1][0] == 2000.0)  # the readings have changed: mark
        clocks.mark()
        n = len(clocks.samples)
        wait_until(lambda: len(clocks.samples) >= n + 3)
    assert clocks.summary().startswith("GPU clocks: SM 2,000 MHz mean (2,000-2,000), power 300 W")
    assert not clocks.thread.is_alive()  # stopped on exit
    assert len(clocks.samples) >= 6


def test_a_failing_reader_is_reported_not_raised():
    def read():
        raise ModuleNotFoundError("pynvml does not seem to be installed")

    with gpu_clocks.ClockSampler(read, period_s=0.01) as clocks:
        wait_until(lambda: clocks.error is not None)
    assert clocks.summary() == ("GPU clocks: not sampled (ModuleNotFoundError: pynvml does not seem to be "
                                "installed)")


@pytest.mark.skipif(torch.cuda.is_available(), reason="the CPU path: with CUDA the reader works")
def test_without_cuda_the_default_reader_is_reported():
    with gpu_clocks.ClockSampler() as clocks:  # the CPU machine: torch.cuda has no device
        pass
    assert clocks.summary().startswith("GPU clocks: not sampled (")
