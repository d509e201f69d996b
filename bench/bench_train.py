"""Training speed of `golf train` at a preset's model: start-to-first-step, tokens/s before and after
depth recurrence switches on, MFU, peak memory; several variants in one run, so ratios are fair.

    python bench/bench_train.py                      # the h100 preset, 3 variants, 40 steps each
    python bench/bench_train.py --quick              # 16 steps each
    python bench/bench_train.py --variant "cudnn=--attention-backend cudnn" --variant "base="
    python bench/bench_train.py --variant "base=" --variant "cdt=TORCHINDUCTOR_COORDINATE_DESCENT_TUNING=1"
    python bench/bench_train.py --abba --variant "base=" --variant "off=--no-compile-ahead"   # base off off#2 base#2
    git worktree add /tmp/old HEAD
    python bench/bench_train.py --variant "new=" --variant "old=PYTHONPATH=/tmp/old:$PYTHONPATH"

A variant's leading NAME=VALUE words are environment variables of its process (inductor knobs; a
PYTHONPATH runs another checkout's golf/ and stages/, bench/trainrun.py `golf`: a change with no knob, such
as a kernel's tile, against the commit before it, in one run).
The start to the first step counts the process launch (interpreter, CLI imports) before the stage's clock.
Each variant is a separate `golf train` process with fresh compile caches (cold compile;
--warm-cache reuses the machine's). Start times differ by machine (64-67 s on one H200, 91-97 s on
another, the same code: BENCHMARKS.md, twenty-sixth session): compare variants of one call, and read the
host line. The first run of a call was 8-14 s slower than a later run of the same code in three calls
on two H200s (twenty-seventh session): --abba runs the variants, then again in reverse order, and gives each
one's mean start. In step mode: looping switches on at half the steps. tokens/s is the median over the
steps of each phase after its first two. MFU: golf.train.loop's FLOPs per token of each phase's graph x its
tokens/s, over the params file's train.peak_flops. `avg` is what a
wall-clock run that loops from 35% of its time would get (0.35 x before + 0.65 x after), the
record's own schedule. Ratios are against the first variant; bench/bench_record.py runs the record
script beside golf on the same machine.
"""

from __future__ import annotations

import argparse
import json
import re
import shlex
import tempfile
from pathlib import Path

from trainrun import (
    ROOT,
    StageFailed,
    h100_params,
    host_line,
    host_probe,
    launch_s,
    median,
    start_parts,
    step_flags,
    train,
)

ENV_WORD = re.compile(r"^[A-Z_][A-Z0-9_]*=")  # an environment variable in a variant's words
LOOP_TIME_FRAC = 0.35
# CUDA graphs (on in the h100 preset) need one whole-model graph, so the blocks variants run without them
DEFAULT_VARIANTS = ["model=--compile-scope model", "blocks=--compile-scope blocks --no-cuda-graphs",
                    "blocks_cudnn=--compile-scope blocks --no-cuda-graphs --attention-backend cudnn"]


def flops_per_token(params: Path, seq_len: int) -> tuple[float, float]:
    """Training FLOPs per token before and after looping (golf.train.loop.model_flops_per_token)."""
    from golf.artifact.model import GPT, ModelConfig
    from golf.params import load_section
    from golf.train.loop import model_flops_per_token

    model = GPT(load_section(params, "model", ModelConfig))
    out = []
    for looping in (False, True):
        model.looping = looping
        out.append(model_flops_per_token(model, seq_len))
    return out[0], out[1]


def phase_rates(rows: list[dict], switch: int) -> tuple[float, float]:
    """Median tokens/s of the steps before looping (1..switch) and after, skipping 2 at each start."""
    rate = {int(r["step"]): float(r["tokens_per_s"]) for r in rows}
    pre = [v for s, v in rate.items() if 2 < s <= switch]
    post = [v for s, v in rate.items() if s > switch + 2]
    return median(pre), median(post)


def variant_figures(run: dict, steps: int, fpt: tuple[float, float], peak: float) -> dict:
    """What one variant's `golf train` run measured (trainrun.train's dict), for the table and --json."""
    m = run["metrics"]
    pre, post = phase_rates(run["rows"], steps // 2)
    launch = launch_s(run)
    return {"first_step_s": m["first_step_s"] + launch, "start_s": {"launch": round(launch, 3), **start_parts(m)},
            "pre": pre, "post": post,
            "avg": LOOP_TIME_FRAC * pre + (1 - LOOP_TIME_FRAC) * post,
            "mfu_pre": fpt[0] * pre / peak, "mfu_post": fpt[1] * post / peak,
            "peak_gib": m["peak_mem_bytes"] / 2**30, "attention": m["attention_backend"],
            "compile_ahead": m.get("compile_ahead"), "compile_ahead_kernels": m.get("compile_ahead_kernels"),
            "mlp": m.get("fused_mlp") or "eager", "process_s": run["process_s"], "val_bpb": m["val_bpb"]}


def run_order(specs: list[str], abba: bool) -> list[str]:
    """The NAME=FLAGS specs in the order they run: as given, or with `abba` as given and then reversed, each
    second run named NAME#2."""
    if not abba:
        return specs
    return specs + [f"{name}#2={flags}" for name, _, flags in (s.partition("=") for s in reversed(specs))]


def mean_starts(results: list[dict]) -> dict[str, float]:
    """Each variant's mean start to the first step over its runs (NAME and NAME#2), in first-run order."""
    runs: dict[str, list[float]] = {}
    for r in results:
        if "failed" not in r:
            runs.setdefault(r["variant"].removesuffix("#2"), []).append(r["first_step_s"])
    return {name: sum(v) / len(v) for name, v in runs.items()}


def print_table(results: list[dict]) -> None:
    """Markdown, ratios against the first variant that ran; a failed variant gets its error line, and
    variants that ran on different attention backends get a warning (e.g. FA4 not importable in one)."""
    ran = [r for r in results if "failed" not in r]
    print("| variant | start to 1st step s | tok/s before loop | after | avg (35% pre) | MFU before / after "
          "| peak GiB | attention / MLP |")
    print("|---|---:|---:|---:|---:|---:|---:|---|")
    for r in results:
        if "failed" in r:
            print(f"| {r['variant']} | failed: {r['failed']} |")
            continue
        cells = [f"{r['first_step_s']:.1f}"]
        for k in ("pre", "post", "avg"):
            cells.append(f"{r[k] / 1e6:.3f} M ({r[k] / ran[0][k]:.2f})")
        cells += [f"{r['mfu_pre'] * 100:.1f}% / {r['mfu_post'] * 100:.1f}%", f"{r['peak_gib']:.1f}", f"{r['attention']} / {r['mlp']}"]
        print(f"| {r['variant']} | " + " | ".join(cells) + " |")
    backends = sorted({r["attention"] for r in ran})
    if len(backends) > 1:
        print(f"\nWARNING: the variants ran on different attention backends ({', '.join(backends)}): their ratios "
              "compare attention kernels too (is FlashAttention 4 importable in every one?)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--params", type=Path, default=None, help="full params file (default: the h100 preset)")
    ap.add_argument("--tokens", type=Path, default=ROOT / "data/tokens")
    ap.add_argument("--steps", type=int, default=40, help="optimizer steps per variant (half before looping)")
    ap.add_argument("--warmup-steps", type=int, default=3, help="compile warm-up steps per graph")
    ap.add_argument("--quick", action="store_true", help="16 steps per variant")
    ap.add_argument("--variant", action="append", metavar="NAME=FLAGS",
                    help="a name and `golf train` flags (repeatable); default: " + "; ".join(DEFAULT_VARIANTS))
    ap.add_argument("--warm-cache", action="store_true", help="share the machine's inductor cache (warm start)")
    ap.add_argument("--abba", action="store_true",
                    help="run the variants, then again in reverse order (a first run on a machine can be slower)")
    ap.add_argument("--workdir", type=Path, default=None, help="keep each run's files here (default: a temp dir)")
    ap.add_argument("--json", type=Path, default=None, help="also write the results here")
    a = ap.parse_args()
    a.params = a.params or h100_params()
    steps = 16 if a.quick else a.steps
    base = step_flags(steps, a.warmup_steps)
    work = a.workdir or Path(tempfile.mkdtemp(prefix="bench-train-"))
    from golf.params import read_params

    train_params = read_params(a.params)["train"]
    fpt = flops_per_token(a.params, int(train_params["train_seq_len"]))
    peak = float(train_params["peak_flops"]) or float("nan")  # 0 = no MFU
    results = []
    for spec in run_order(a.variant or DEFAULT_VARIANTS, a.abba):
        name, _, flags = spec.partition("=")
        words = shlex.split(flags)
        env = dict(w.split("=", 1) for w in words if ENV_WORD.match(w))
        try:
            r = train(work / name, a.params, a.tokens, base + [w for w in words if not ENV_WORD.match(w)],
                      a.warm_cache, env=env)
        except StageFailed as e:  # one variant out of memory (say) need not cost the others
            print(e, flush=True)
            results.append({"variant": name, "flags": flags, "failed": e.error_line()})
            continue
        res = {"variant": name, "flags": flags, **variant_figures(r, steps, fpt, peak)}
        results.append(res)
        print(json.dumps(res), flush=True)
    print(f"\n{steps} steps per variant ({a.params.name}); ratios vs the first variant that ran; MFU over "
          f"train.peak_flops = {peak:.3g} FLOP/s\n{host_line(host_probe())}")
    print_table(results)
    if a.abba:
        print("\nmean start to the first step: " + ", ".join(f"{k} {v:.1f} s" for k, v in mean_starts(results).items()))
    if a.json:
        a.json.write_text(json.dumps(results, indent=1) + "\n")
    if any("failed" in r for r in results):
        raise SystemExit(1)


if __name__ == "__main__":
    main()
