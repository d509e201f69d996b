"""bench/bench_record.py's bookkeeping: the record's log parsed into rates and the times they cover, the
guard that keeps a golf run that shared the GPU with the record's measured steps out of the table, and the
host line printed with the table (bench/trainrun.py)."""

import argparse
import json
import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
import bench_record  # noqa: E402

TOKENS_PER_STEP = 786_432


def record_log(first_step_s: float, step_s: float, loop_at: int, steps: int) -> str:
    """A stamped log as the record writes it: a line every 5 steps, tok/s cumulative since step 1."""
    lines = []
    for s in [1, 2, *range(5, steps + 1, 5)]:
        t = first_step_s + (s - 1) * step_s
        rate = TOKENS_PER_STEP / step_s  # steady, so the cumulative rate is the same at every line
        lines.append(f"[{t:8.2f}] {s}/20000 train_loss: 5.0 train_time: 0.1m tok/s: {rate:.0f}")
        if s == loop_at:
            lines.append(f"[{t:8.2f}] layer_loop:enabled step:{loop_at}")
    return "\n".join(lines) + "\n"


def test_the_parsed_log_gives_the_rate_and_the_seconds_its_step_lines_span():
    p = bench_record.parse_record(record_log(first_step_s=500.0, step_s=0.5, loop_at=20, steps=35))
    assert p["first_step_s"] == 500.0 and p["loop_step"] == 20
    assert p["pre"] == pytest.approx(TOKENS_PER_STEP / 0.5, rel=1e-4)
    # from step 2's line (the first kept) to step 35's
    assert p["measured_s"] == [pytest.approx(500.5), pytest.approx(517.0)]


def golf_run(start: float, end: float) -> dict:
    return {"ran_s": [start, end]}


@pytest.mark.parametrize("start, end, shared", [
    (1000.0 + 520, 1000.0 + 640, False),   # after the record's last measured step
    (1000.0 - 200, 1000.0 - 10, False),    # before the record's launch
    (1000.0 + 505, 1000.0 + 600, True),    # began during its measured steps
    (1000.0 + 100, 1000.0 + 505, True),    # ended during them
    (1000.0 + 100, 1000.0 + 200, True),    # during its compile and warm-up (the same GPU and CPUs)
])
def test_a_golf_run_is_refused_when_it_overlapped_the_record(start, end, shared):
    rec = bench_record.parse_record(record_log(first_step_s=500.0, step_s=0.5, loop_at=20, steps=35))
    why = bench_record.shared_gpu(golf_run(start, end), rec, t0=1000.0)
    assert (why is not None) == shared
    if shared:
        assert "shared the GPU" in why


def test_a_golf_result_without_its_times_proves_nothing():
    rec = bench_record.parse_record(record_log(first_step_s=500.0, step_s=0.5, loop_at=20, steps=35))
    assert "lacks the times" in bench_record.shared_gpu({}, rec, t0=1000.0)


def test_golf_refuses_to_start_while_the_record_runs(tmp_path):
    (tmp_path / "record.json").write_text(json.dumps({"pgid": os.getpgid(0)}))  # this test's group: alive
    with pytest.raises(SystemExit, match="still running"):
        bench_record.refuse_beside_record(tmp_path)
    (tmp_path / "record.json").unlink()
    bench_record.refuse_beside_record(tmp_path)  # no record launched from here: golf may run


def test_every_golf_call_starts_with_empty_compile_caches(tmp_path, monkeypatch):
    """A second `side_by_side.sh golf` call once found the first's caches in the shared workdir: its start
    was warm (BENCHMARKS.md, twenty-fifth session)."""
    found = []

    def fake_train(workdir, params, tokens, flags):
        found.append(sorted(p.name for p in workdir.rglob("*")) if workdir.exists() else [])
        (workdir / "inductor-cache").mkdir(parents=True)  # what trainrun.train's run leaves (compile_cache_env)
        rows = [{"step": str(s), "tokens_per_s": "1e6"} for s in range(1, 9)]
        return {"metrics": {"wall_s": 9.0, "first_step_s": 5.0, "steps": 8, "attention_backend": "sdpa",
                            "cuda_graphs": False, "val_bpb": 2.0, "peak_mem_bytes": 2**30}, "rows": rows,
                "process_s": 10.0}

    monkeypatch.setattr(bench_record, "train", fake_train)
    params = Path(__file__).resolve().parents[1] / "params.yaml"
    a = argparse.Namespace(state_dir=tmp_path, params=params, tokens=tmp_path / "tokens", golf_steps=8,
                           warmup_steps=1, seed=0, golf_flag=[])
    bench_record.run_golf(a)
    bench_record.run_golf(a)
    assert found == [[], []]


def test_the_host_line_names_the_cpu_and_times_the_probe():
    probe = bench_record.host_probe()
    assert probe["cores"] >= 1 and 0 < probe["python_loop_s"] < 60
    line = bench_record.host_line(probe)
    assert line.startswith(f"host: {probe['cpu']}, {probe['cores']} cores") and line.endswith(" ms")



@pytest.mark.parametrize("error", [ProcessLookupError, PermissionError])
def test_stopping_a_record_that_is_gone_returns_at_once(monkeypatch, error):
    """A process group that no longer exists, or whose number now belongs to another user (what record_alive
    also reads as gone), ends stop_record at its first signal instead of raising."""
    sent = []

    def killpg(pgid, sig):
        sent.append(sig)
        raise error

    monkeypatch.setattr(bench_record.os, "killpg", killpg)
    bench_record.stop_record({"pgid": 12345})
    assert len(sent) == 1


def test_the_table_says_what_golfs_start_leaves_out_under_compile_ahead():
    golf = {"compile_ahead": True, "start_s": {"plain": 45.9, "looped": 7.8, "ahead_wait": 0.0}}
    assert "warm-up where looping switched on: 7.8 s, off its train clock" in bench_record.looped_later(golf)
    assert bench_record.looped_later({**golf, "compile_ahead": False}) is None
    assert bench_record.looped_later({"compile_ahead": True, "start_s": {"all": 20.0}}) is None
