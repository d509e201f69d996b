"""Run `golf train` as its own process (as a user would) and read back what it wrote.

Shared by bench_train.py, bench_parity.py and bench_quant.py. Each run gets its own folder and,
unless told otherwise, its own empty compile caches (`compile_cache_env`), so compile times are cold-start
times.
"""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


class StageFailed(SystemExit):
    """A golf stage exited non-zero; the message ends with the tail of its log. A SystemExit, so a
    script that does not catch it stops with that message (bench_train.py goes on to the next variant)."""

    def error_line(self) -> str:
        """The log tail's last line naming an error (`OutOfMemoryError: ...`, `golf train: error: ...`),
        else the message's first line."""
        lines = str(self).splitlines()
        errors = [ln.strip() for ln in lines[1:] if re.search(r"\w(Error|Exception)\b|\berror:", ln)]
        return (errors[-1] if errors else lines[0])[:160]


def golf(stage: str, args: list[str], log: Path, env: dict[str, str] | None = None) -> float:
    """Run `python -P -m stages.cli <stage> <args>`, its output to `log`; the process's wall seconds.

    -P keeps the working directory off sys.path and this checkout goes first on PYTHONPATH, so an env
    PYTHONPATH decides which tree's golf/ and stages/ run: bench_train.py's variant
    `old=PYTHONPATH=/tmp/old:$PYTHONPATH` (after `git worktree add /tmp/old HEAD`) runs the last commit's code.
    """
    log.parent.mkdir(parents=True, exist_ok=True)
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    t0 = time.perf_counter()
    with open(log, "w") as f:
        rc = subprocess.call([sys.executable, "-P", "-m", "stages.cli", stage, *args], cwd=ROOT, stdout=f,
                             stderr=subprocess.STDOUT, env={**os.environ, "PYTHONPATH": path, **(env or {})})
    wall = time.perf_counter() - t0
    if rc:
        tail = log.read_text(errors="replace").splitlines()[-15:]
        raise StageFailed(f"golf {stage} failed (exit {rc}); {log} ends:\n" + "\n".join(tail))
    return wall


def host_probe() -> dict:
    """The host a run's figures came from: its CPU model, core count and a fixed pure-Python loop's best of
    three seconds. Compiles and a launch-bound step run at the host's speed: the record's start took 511-571 s
    on some H200 machines and 771 s on one whose GPU idled 10-31% of golf's step (BENCHMARKS.md, nineteenth
    session); this line tells such machines apart."""
    model = "unknown CPU"
    try:
        model = next(ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                     if ln.startswith("model name"))
    except (OSError, StopIteration):
        pass
    best = float("inf")
    for _ in range(3):
        t0 = time.perf_counter()
        sum(i * i for i in range(1_000_000))
        best = min(best, time.perf_counter() - t0)
    return {"cpu": model, "cores": os.cpu_count(), "python_loop_s": round(best, 4)}


def host_line(probe: dict) -> str:
    """host_probe's dict as the line the benches print."""
    return (f"host: {probe['cpu']}, {probe['cores']} cores, "
            f"a 1e6-term Python sum in {probe['python_loop_s'] * 1e3:.0f} ms")


def compile_cache_env(cache: Path) -> dict[str, str]:
    """The environment that puts every compile cache a training run fills under `cache`: inductor's
    (with Triton's inside it) and the three the `gpu` extra keeps in /tmp/$USER by default, the CuTe DSL's
    compiled modules, quack's object files and FA4's kernels (its cache is off unless
    FLASH_ATTENTION_CUTE_DSL_CACHE_ENABLED=1: bench/cute_cache_probe.py). With only
    inductor's moved, a second run on a machine started with FA4 and quack already compiled (BENCHMARKS.md,
    fifteenth session)."""
    return {"TORCHINDUCTOR_CACHE_DIR": str(cache), "CUTE_DSL_CACHE_DIR": str(cache / "cute-dsl"),
            "QUACK_CACHE_DIR": str(cache / "quack"), "FLASH_ATTENTION_CUTE_DSL_CACHE_DIR": str(cache / "fa4")}


def step_flags(steps: int, warmup_steps: int) -> list[str]:
    """`golf train` flags of the benches' step mode: `steps` optimizer steps, no wall clock, looping from half
    of them, `warmup_steps` compile warm-up steps per graph, no evals during training."""
    return ["--max-wallclock-s", "0", "--iterations", str(steps), "--enable-looping-at", "0.5",
            "--warmup-steps", str(warmup_steps), "--val-every", "0"]


def train(workdir: Path, params: Path, tokens: Path, flags: list[str], warm_cache: bool = False,
          cache_dir: Path | None = None, env: dict[str, str] | None = None) -> dict:
    """Train once into `workdir`; {"metrics": train metrics, "rows": per-step rows, "process_s": wall}.

    The compile caches: under `cache_dir` if given (runs that pass the same one share them), else the
    machine's with warm_cache, else fresh ones in `workdir`: emptied first, since a workdir used again (a
    second call's `bench_train.py --workdir` on a machine still warm) held the last run's, which made a cold
    variant start in 35-42 s instead of 72-80 (BENCHMARKS.md, twenty-seventh session).
    """
    workdir.mkdir(parents=True, exist_ok=True)
    cache = cache_dir
    if cache is None and not warm_cache:
        cache = workdir / "inductor-cache"
        shutil.rmtree(cache, ignore_errors=True)
    env = {**(env or {}), **(compile_cache_env(cache) if cache else {})}
    args = ["--params", str(params), "--tokens", str(tokens), "--out", str(workdir / "model.safetensors"),
            "--metrics", str(workdir / "train.json"), "--plots", str(workdir / "train.csv"), *flags]
    wall = golf("train", args, workdir / "train.log", env)
    metrics = json.loads((workdir / "train.json").read_text())["train"]
    metrics |= json.loads((workdir / "timings" / "train.json").read_text())["train"]  # seconds, tokens/s, memory
    with open(workdir / "train.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    return {"metrics": metrics, "rows": rows, "process_s": wall}


def launch_s(run: dict) -> float:
    """Seconds from a `train` run's process launch to its stage's clock (interpreter start, CLI imports): its
    first_step_s leaves them out, and a start to the first step counts them."""
    return run["process_s"] - run["metrics"]["wall_s"]


def start_parts(metrics: dict) -> dict[str, float]:
    """Where the run's cold start went: {"setup": s, "plain": s, "looped": s} from the start_s_* timings."""
    return {k[len("start_s_"):]: v for k, v in metrics.items() if k.startswith("start_s_")}


def median(xs: list[float]) -> float:
    xs = sorted(xs)
    n = len(xs)
    return float("nan") if not n else xs[n // 2] if n % 2 else (xs[n // 2 - 1] + xs[n // 2]) / 2


def h100_params() -> Path:
    """params.yaml with the h100 preset overlay applied, as a full params file in a temp folder."""
    import tempfile

    from golf.presets import preset_params

    return preset_params("h100", ROOT, Path(tempfile.mkdtemp(prefix="golf-h100-")) / "params.yaml")
