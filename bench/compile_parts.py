"""Where golf's cold compile goes: dynamo alone, dynamo + AOTAutograd, and the whole inductor compile,
for the plain graph and the looped one, each in a fresh process with empty compile caches
(trainrun.compile_cache_env).

    python bench/compile_parts.py                                   # the h100 preset on this machine's device
    python bench/compile_parts.py --backends eager,aot_eager --flags "device=cpu train_seq_len=256 train_batch_tokens=2048"

Each run is golf's own train loop (golf.train.loop.train: the model, fused kernels, attention backend and
mix-order cap as training sets them up) for one step with no warm-up and no evals, torch.compile's backend
swapped: `eager` (dynamo's trace, then eager ATen), `aot_eager` (plus AOTAutograd's joint trace and
partition) or `inductor` (training's). The first step's seconds, minus the first step of the same phase
compiled already, is that backend's compile; the differences between backends are dynamo's,
AOTAutograd's and inductor's shares. For inductor it also prints torch's own compile timers (`--timed`).
The `start_s` timings of bench_train and bench_record hold the whole compile only.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import torch
from profile_train import run_phase, scalar
from trainrun import ROOT, compile_cache_env, h100_params


def one(params: Path, tokens: Path, flags: dict, backend: str, looping: bool) -> dict:
    """In this process: two steps of one phase with `backend`; the seconds of each, and torch's compile
    timers (seconds per timed function, summed over its calls)."""
    torch.compile = functools.partial(torch.compile, backend=backend)  # what Stepper.compile calls
    _, cfg, res = run_phase(params, tokens, {**flags, "compile": "on"}, looping, 2)
    steps = [cfg.train_batch_tokens / float(r["tokens_per_s"]) for r in res.rows]
    timed = {name: sum(s) for name, s in torch._dynamo.utils.compilation_time_metrics.items()}
    return {"backend": backend, "looping": looping, "first_step_s": steps[0], "second_step_s": steps[1],
            "timed": timed}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--params", type=Path, default=None, help="full params file (default: the h100 preset)")
    ap.add_argument("--tokens", type=Path, default=ROOT / "data/tokens")
    ap.add_argument("--flags", default="", help='train keys as KEY=VALUE, e.g. "device=cpu"')
    ap.add_argument("--backends", default="eager,aot_eager,inductor", help="comma-separated torch.compile backends")
    ap.add_argument("--timed", type=int, default=15, help="the inductor compiles' top N timed functions")
    ap.add_argument("--one", default=None, help=argparse.SUPPRESS)  # BACKEND,LOOPING: the child's run
    a = ap.parse_args()
    a.params = a.params or h100_params()
    flags = {k: scalar(v) for k, v in (kv.split("=", 1) for kv in a.flags.split())}
    if a.one:
        backend, looping = a.one.split(",")
        print(json.dumps(one(a.params, a.tokens, flags, backend, looping == "1")))
        return
    print("| phase | backend | first step (compile + step), s | a compiled step, s | compile, s |\n|---|---|---:|---:|---:|")
    timed = {}
    for looping in (False, True):
        for backend in a.backends.split(","):
            with tempfile.TemporaryDirectory(prefix="compile-parts.") as cache:
                out = subprocess.run([sys.executable, __file__, "--params", str(a.params), "--tokens", str(a.tokens),
                                      "--flags", a.flags, "--one", f"{backend},{int(looping)}"], capture_output=True,
                                     text=True, env={**os.environ, **compile_cache_env(Path(cache))})
            if out.returncode:
                raise SystemExit(f"{backend} looping={looping} failed:\n{out.stderr[-2000:]}")
            r = json.loads(out.stdout.strip().splitlines()[-1])
            print(f"| {'looped' if looping else 'plain'} | {backend} | {r['first_step_s']:.1f} | "
                  f"{r['second_step_s']:.2f} | {r['first_step_s'] - r['second_step_s']:.1f} |", flush=True)
            if backend == "inductor":
                timed["looped" if looping else "plain"] = r["timed"]
    print_timed(timed, a.timed)


def print_timed(timed: dict[str, dict[str, float]], top: int) -> None:
    """torch's own compile timers (torch._dynamo.utils.compilation_time_metrics: the `dynamo_timed`
    functions, summed over calls; nested, so they overlap) for each phase's inductor compile."""
    if not timed or top <= 0:
        return
    first = next(iter(timed.values()))
    names = sorted(set().union(*timed.values()), key=lambda n: -first.get(n, 0.0))[:top]
    print(f"\n| torch's compile timer, s | {' | '.join(timed)} |\n|---|{'---:|' * len(timed)}")
    for n in names:
        print(f"| {n} | {' | '.join(f'{t.get(n, 0.0):.1f}' for t in timed.values())} |")


if __name__ == "__main__":
    main()
