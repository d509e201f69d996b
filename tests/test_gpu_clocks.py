"""bench/gpu_clocks.py: nvidia-smi's samples parsed, summarized, and taken from a child process (a stand-in
nvidia-smi script on PATH here: the CPU machine has none)."""

import os
import stat
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
import gpu_clocks  # noqa: E402


def test_a_sample_line_parses_and_an_unavailable_field_drops_it():
    assert gpu_clocks.parse_sample("GPU-ab12, 1980, 512.34, 61\n") == ("GPU-ab12", 1980.0, 512.34, 61.0)
    assert gpu_clocks.parse_sample("GPU-ab12, 1980, [N/A], 61") is None
    assert gpu_clocks.parse_sample("garbage") is None


def test_the_summary_gives_mean_and_range():
    line = gpu_clocks.summarize([(1800.0, 600.0, 60.0), (1980.0, 700.0, 64.0)])
    assert "SM 1,890 MHz mean (1,800-1,980)" in line and "power 650 W mean (max 700)" in line
    assert "64 C max" in line and "2 samples" in line
    assert gpu_clocks.summarize([]) == "GPU clocks: no samples"


def fake_nvidia_smi(folder: Path, lines: list[str], pause_s: float) -> None:
    """A script named nvidia-smi printing `lines` with `pause_s` between them, then waiting to be stopped."""
    script = folder / "nvidia-smi"
    body = "".join(f"echo '{line}'; sleep {pause_s}\n" for line in lines)
    script.write_text(f"#!/bin/sh\n{body}exec sleep 30\n")
    script.chmod(script.stat().st_mode | stat.S_IXUSR)


def wait_for_samples(clocks: gpu_clocks.ClockSampler, n: int, timeout_s: float = 20.0) -> None:
    end = time.time() + timeout_s
    while len(clocks.samples) < n:
        assert time.time() < end, f"{len(clocks.samples)} of {n} samples after {timeout_s} s"
        time.sleep(0.01)


def test_samples_after_the_mark_of_this_gpu_are_summarized(tmp_path, monkeypatch):
    fake_nvidia_smi(tmp_path, ["GPU-a, 1000, 100, 50", "GPU-b, 1, 1, 1", "GPU-a, 2000, 300, 70",
                               "GPU-b, 1, 1, 1"], pause_s=0.3)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    with gpu_clocks.ClockSampler(uuid="GPU-a") as clocks:
        wait_for_samples(clocks, 2)
        clocks.mark()
        wait_for_samples(clocks, 4)
    assert clocks.summary().startswith("GPU clocks: SM 2,000 MHz mean (2,000-2,000), power 300 W")
    assert clocks.proc.poll() is not None  # the child is stopped on exit


def test_without_nvidia_smi_it_says_so(monkeypatch):
    monkeypatch.setattr(gpu_clocks.shutil, "which", lambda name: None)
    with gpu_clocks.ClockSampler() as clocks:
        pass
    assert "no nvidia-smi" in clocks.summary()
