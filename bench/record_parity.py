"""Loss parity with the 1.0611 record script: the same number of steps on the same tokens, N seeds
each, val BPB of golf against the record's (issue 17's parity target).

    python bench/record_parity.py --record .record/train_gpt.py --steps 40 --seeds 1,2 --json $OUT/parity.json

Both train in step mode (the schedule by step, no wall clock) with the record README's settings
(bench/bench_record.py: RECORD_ENV; golf: the h100 preset, the same values), and stop after --steps.
The record runs eager: bench/record_eager.py makes torch.compile the identity, which skips its ~10
minutes of compiling and changes no math; its `PREQUANT_ONLY=1` stops it after the float evals.
golf runs as shipped (compiled, fused kernels), the seeds sharing one inductor cache.

Two numbers per run, both on the whole val split at seq_len 2048:
  raw  the weights after the last step (record: its "N/N val_bpb" line; golf: val_bpb_raw)
  ema  the EMA weights (record: "diagnostic pre-quantization post-ema"; golf: val_bpb).
The raw pair is the parity measure: golf's EMA warms up (golf/optim/ema.py) and the record's does
not, so after a few dozen steps the record's EMA is still mostly its random init. Runs go two at a
time on the one GPU (a record beside a golf run: the record is GPU-bound while golf compiles).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import tempfile
from concurrent.futures import ThreadPoolExecutor
from datetime import date
from pathlib import Path

from bench_record import RECORD_ENV, record_data
from trainrun import ROOT, h100_params, train

RAW_LINE = re.compile(r"(\d+)/(\d+) val_loss: ([\d.]+) val_bpb: ([\d.]+)", re.M)
EMA_LINE = re.compile(r"diagnostic pre-quantization post-ema val_loss:([\d.]+) val_bpb:([\d.]+)")


def run_record(script: Path, tokens: Path, steps: int, seed: int, work: Path) -> dict:
    """One eager record run in step mode; its raw and EMA val BPB."""
    work.mkdir(parents=True, exist_ok=True)
    ds, tok = record_data(tokens, work / "data")
    env = {**os.environ, **RECORD_ENV, "RUN_ID": f"parity{seed}", "DATA_DIR": f"{work / 'data'}/",
           "DATA_PATH": str(ds), "TOKENIZER_PATH": str(tok), "ITERATIONS": str(steps), "SEED": str(seed),
           "MAX_WALLCLOCK_SECONDS": "0", "WARMUP_STEPS": "0", "PREQUANT_ONLY": "1", "VAL_LOSS_EVERY": "0",
           "PYTHONPATH": os.pathsep.join([str(ROOT / "bench" / "fa3_standin"), str(ROOT),
                                         os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)}
    log = work / "record.log"
    cmd = ["torchrun", "--standalone", "--nproc_per_node=1", str(ROOT / "bench" / "record_eager.py"),
           str(script.resolve())]
    with open(log, "w") as f:
        rc = subprocess.call(cmd, cwd=work, env=env, stdout=f, stderr=subprocess.STDOUT)
    text = log.read_text(errors="replace")
    raw, ema = RAW_LINE.findall(text), EMA_LINE.search(text)
    if rc or not raw or not ema:
        raise SystemExit(f"record seed {seed} failed (exit {rc}); {log} ends:\n" + "\n".join(text.splitlines()[-15:]))
    last = raw[-1]
    if int(last[0]) != steps:
        raise SystemExit(f"record seed {seed}: last val line is step {last[0]}, not {steps}")
    return {"seed": seed, "raw": float(last[3]), "ema": float(ema[2])}


def run_golf(params: Path, tokens: Path, steps: int, seed: int, work: Path, cache: Path) -> dict:
    flags = ["--max-wallclock-s", "0", "--iterations", str(steps), "--val-every", "0", "--seed", str(seed)]
    m = train(work, params, tokens, flags, cache_dir=cache)["metrics"]
    return {"seed": seed, "raw": m["val_bpb_raw"], "ema": m["val_bpb"], "steps": m["steps"]}


def summary(runs: list[dict]) -> dict:
    out = {}
    for k in ("raw", "ema"):
        xs = [r[k] for r in runs]
        out[k] = {"mean": statistics.fmean(xs), "std": statistics.stdev(xs) if len(xs) > 1 else float("nan")}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--record", type=Path, required=True, help="the record's train_gpt.py")
    ap.add_argument("--tokens", type=Path, default=ROOT / "data/tokens", help="golf's tokens, for both")
    ap.add_argument("--params", type=Path, default=None, help="golf's full params file (default: the h100 preset)")
    ap.add_argument("--steps", type=int, default=40, help="optimizer steps of every run")
    ap.add_argument("--seeds", default="1,2", help="comma-separated seeds, each run by both")
    ap.add_argument("--work", type=Path, default=None, help="run folders (default: a temp folder)")
    ap.add_argument("--json", type=Path, default=None, help="where to write the result")
    a = ap.parse_args()
    if not a.record.is_file():
        ap.error(f"--record {a.record}: not found (fetch openai/parameter-golf into an ignored folder)")
    seeds = [int(s) for s in a.seeds.split(",")]
    params = a.params or h100_params()
    work = a.work or Path(tempfile.mkdtemp(prefix="golf-parity-"))
    cache = work / "golf-inductor-cache"
    # golf's first seed compiles while the first record run trains; later golf seeds reuse its cache
    jobs = [("golf", seeds[0]), *(("record", s) for s in seeds), *(("golf", s) for s in seeds[1:])]
    with ThreadPoolExecutor(max_workers=2) as pool:
        futures = [(who, pool.submit(run_record, a.record, a.tokens, a.steps, s, work / f"record-{s}") if who == "record"
                    else pool.submit(run_golf, params, a.tokens, a.steps, s, work / f"golf-{s}", cache))
                   for who, s in jobs]
        results = {"golf": [], "record": []}
        for who, f in futures:
            results[who].append(f.result())
            print(who, json.dumps(results[who][-1]), flush=True)
    import torch

    out = {"date": date.today().isoformat(), "gpu": torch.cuda.get_device_name(), "steps": a.steps,
           "tokens": str(a.tokens), **results, "summary": {k: summary(v) for k, v in results.items()}}
    print(f"\n| {a.steps} steps, val BPB | raw weights, mean ± std | EMA weights, mean ± std |\n|---|---:|---:|")
    for who in ("golf", "record"):
        s = out["summary"][who]
        print(f"| {who} (seeds {a.seeds}) | {s['raw']['mean']:.4f} ± {s['raw']['std']:.4f} "
              f"| {s['ema']['mean']:.4f} ± {s['ema']['std']:.4f} |")
    if a.json:
        a.json.write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
