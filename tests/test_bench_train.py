"""bench/bench_train.py's figures: a variant's start to its first step counts the process launch, as
bench/bench_record.py's side by side does (bench/trainrun.py launch_s)."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
import bench_train  # noqa: E402


def test_the_start_to_the_first_step_counts_the_launch_before_the_stage_clock():
    metrics = {"first_step_s": 60.0, "wall_s": 80.0, "start_s_setup": 5.0, "start_s_looped": 50.0,
               "peak_mem_bytes": 2**30, "attention_backend": "sdpa", "val_bpb": 2.0}
    rows = [{"step": str(s), "tokens_per_s": "1e6"} for s in range(1, 9)]
    run = {"metrics": metrics, "rows": rows, "process_s": 83.5}  # 3.5 s before the stage's clock started
    r = bench_train.variant_figures(run, steps=8, fpt=(1.0, 1.0), peak=1.0)
    assert r["first_step_s"] == pytest.approx(63.5)
    assert r["start_s"] == {"launch": 3.5, "setup": 5.0, "looped": 50.0}
