"""How much of golf's cold start is the CuTe DSL kernels' JIT (FA4's attention, quack's MLP GEMMs): `golf train`
three times at the h100 preset, every cache empty, then with FA4's and quack's disk caches copied from that
run and inductor's still empty, then cold again; the start to the first step and its parts for each.

    python bench/cute_cache_probe.py --tokens .device-data/tokens

FA4's disk cache is off by default; each run turns it on (FLASH_ATTENTION_CUTE_DSL_CACHE_ENABLED=1) in its own
folder (trainrun.compile_cache_env). The gap between the cold runs and the warm one bounds what compiling those
kernels elsewhere while training compiles its graph could take off the start (BENCHMARKS.md, twenty-sixth
session).
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path

from trainrun import ROOT, h100_params, host_line, host_probe, launch_s, start_parts, step_flags, train

KERNEL_CACHES = ("cute-dsl", "quack", "fa4")  # compile_cache_env's folders for the CuTe DSL's kernels


def run(work: Path, params: Path, tokens: Path, steps: int, seed: Path | None = None) -> dict:
    """One cold-inductor `golf train` in `work`; with `seed`'s kernel caches (a cache folder) copied in first."""
    cache = work / "cache"
    shutil.rmtree(work, ignore_errors=True)
    cache.mkdir(parents=True)
    for sub in KERNEL_CACHES if seed else ():
        if (seed / sub).exists():
            shutil.copytree(seed / sub, cache / sub)
    r = train(work, params, tokens, step_flags(steps, 3), cache_dir=cache,
              env={"FLASH_ATTENTION_CUTE_DSL_CACHE_ENABLED": "1"})
    launch = launch_s(r)
    return {"first_step_s": r["metrics"]["first_step_s"] + launch,
            "start_s": {"launch": round(launch, 3), **start_parts(r["metrics"])}, "cache": cache}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tokens", type=Path, default=ROOT / "data/tokens")
    ap.add_argument("--steps", type=int, default=8, help="optimizer steps per run (looping from half)")
    a = ap.parse_args()
    params, work = h100_params(), Path(tempfile.mkdtemp(prefix="cute-cache-"))
    print(host_line(host_probe()))
    print("| run | start to 1st step s | launch / setup / looped / plain s |\n|---|---:|---|")
    cold = show("cold", run(work / "cold", params, a.tokens, a.steps))
    show("warm CuTe DSL caches", run(work / "warm", params, a.tokens, a.steps, seed=cold["cache"]))
    show("cold again", run(work / "cold-again", params, a.tokens, a.steps))


def show(name: str, r: dict) -> dict:
    """Print one run's row as it ends; the run."""
    s = r["start_s"]
    parts = " / ".join(f"{s.get(k, float('nan')):.1f}" for k in ("launch", "setup", "looped", "plain"))
    print(f"| {name} | {r['first_step_s']:.1f} | {parts} |", flush=True)
    return r


if __name__ == "__main__":
    main()
