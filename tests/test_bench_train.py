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
    assert r["compile_ahead"] is None and r["compile_ahead_kernels"] is None  # not in these metrics
    metrics |= {"compile_ahead": True, "compile_ahead_kernels": False}
    r = bench_train.variant_figures(run, steps=8, fpt=(1.0, 1.0), peak=1.0)
    assert r["compile_ahead"] is True and r["compile_ahead_kernels"] is False  # whose graph and kernels were used


def _fake_golf(seen: dict):
    """trainrun.golf's stand-in: records what the cache folder held at launch, writes what train() reads."""
    def golf(stage, args, log, env=None):
        cache = Path(env["TORCHINDUCTOR_CACHE_DIR"])
        seen["cache_files"] = sorted(p.name for p in cache.rglob("*")) if cache.exists() else []
        out = {a: Path(args[i + 1]) for i, a in enumerate(args) if a.startswith("--")}
        out["--metrics"].write_text('{"train": {"val_bpb": 2.0}}')
        (out["--metrics"].parent / "timings").mkdir(exist_ok=True)
        (out["--metrics"].parent / "timings" / "train.json").write_text('{"train": {"wall_s": 1.0}}')
        out["--plots"].write_text("step,tokens_per_s\n1,1e6\n")
        return 2.0
    return golf


def test_a_workdir_used_again_starts_its_run_with_empty_compile_caches(tmp_path, monkeypatch):
    """bench_train.py --workdir on a machine still warm from the last call: the same variant's folder held the
    last run's inductor and kernel caches, and a "cold" start took 35-42 s instead of 72-80 (BENCHMARKS.md,
    twenty-seventh session). A shared cache_dir is the caller's to keep."""
    import trainrun

    seen = {}
    monkeypatch.setattr(trainrun, "golf", _fake_golf(seen))
    stale = tmp_path / "off" / "inductor-cache" / "fa4"
    stale.mkdir(parents=True)
    (stale / "kernel.o").write_bytes(b"old")
    trainrun.train(tmp_path / "off", tmp_path / "p.yaml", tmp_path / "tokens", [])
    assert seen["cache_files"] == []
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "kept").write_text("warm")
    trainrun.train(tmp_path / "s", tmp_path / "p.yaml", tmp_path / "tokens", [], cache_dir=shared)
    assert seen["cache_files"] == ["kept"]


def test_abba_runs_the_variants_then_again_reversed_and_averages_each_ones_starts():
    """--abba: the first run of a call was 8-14 s slower than a later one of the same code (BENCHMARKS.md,
    twenty-seventh session), so each variant also runs in the other half of the order, and its mean counts."""
    order = bench_train.run_order(["a=", "b=--no-compile-ahead X=1"], abba=True)
    assert order == ["a=", "b=--no-compile-ahead X=1", "b#2=--no-compile-ahead X=1", "a#2="]
    assert bench_train.run_order(["a=", "b="], abba=False) == ["a=", "b="]
    results = [{"variant": "a", "first_step_s": 80.0}, {"variant": "b", "first_step_s": 82.6},
               {"variant": "b#2", "first_step_s": 77.7}, {"variant": "a#2", "failed": "oom"}]
    assert bench_train.mean_starts(results) == pytest.approx({"a": 80.0, "b": 80.15})
