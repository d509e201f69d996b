"""The seeded ablation of docs/ablation.md: every row at N train seeds, mean ± std, a Welch test
against the baseline (golf/report/stats.py), on one machine without DVC (a lent GPU has none).

    python bench/seeded_ablation.py --tokens data/tokens --seeds 1,2,3 --jobs 12 \
        --set train.device=cuda --set train.compile='"off"' --out /tmp/abl --json $OUT/ablation.json
    python bench/seeded_ablation.py --report docs/ablation_seeds.json --png docs/ablation_seeds.png   # again

Each run is a folder laid out like the repo (params.yaml, data/tokens as a link) in which the stage
commands run in one process with their default paths, as `dvc repro` would run them:
train -> hessian-calibrate -> quantize -> prune-to-budget -> compress -> ttt-eval. The params are
./params.yaml (cpu-small) with the row's keys and the seed set, then every --set. Rows that change
only keys after train reuse the baseline's checkpoint of the same seed (a copy) and start at
hessian-calibrate, as DVC would. `--rows a,b` runs a subset (with the baseline). A finished run
with the same params is kept, so a second call (another --rows, or after a time limit) resumes.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import date
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
STAGES = ["train", "hessian-calibrate", "quantize", "prune-to-budget", "compress", "ttt-eval"]
BASE = "base"
# name -> (keys, what it is); docs/ablation.md has the reasons and the studies they come from
ROWS: dict[str, tuple[dict, str]] = {
    BASE: ({}, "params.yaml (cpu-small)"),
    # the studies' negative results
    "cat_squared": ({"train.cat_every": 1}, "CAT, golf's squared form, weight 1000 every step"),
    "cat_study": ({"train.cat_form": "sigmoid", "train.cat_weight": 0.001, "train.cat_every": 50},
                  "CAT in the study's form: sigmoid soft-round, weight 0.001 every 50 steps"),
    "two_four": ({"prune_to_budget.method": "two_four"}, "2:4 on the codes after GPTQ, by |q|"),
    "hessian_two_four": ({"prune_to_budget.method": "hessian_two_four"}, "2:4 after GPTQ, Hessian-guided"),
    "sparse24_pre_gptq": ({"quantize.mlp_sparsity_24": True}, "2:4 on MLP weights before GPTQ, mask held"),
    "moe": ({"model.moe_num_experts": 4, "model.moe_top_k": 1, "train.moe_aux_weight": 0.01},
            "MoE MLP, 4 experts, top-1"),
    "kan": ({"model.mlp_kind": "kan"}, "KAN MLP, B-spline grid 5 order 3"),
    "codebook64": ({"quantize.codebook_k": 64}, "64-entry k-means codebook per tensor"),
    "magnitude10": ({"prune_to_budget.method": "magnitude", "prune_to_budget.magnitude_fraction": 0.1},
                    "magnitude pruning, 10% of each matrix"),
    "mtp": ({"model.mtp_heads": 1, "train.mtp_weight": 0.3}, "multi-token prediction (t+2 head, 0.3)"),
    "embed64": ({"model.embed_dim": 64}, "factorized embedding, e = 64"),
    "hadamard": ({"quantize.hadamard": True}, "block Walsh-Hadamard rotation before GPTQ"),
    # issue 20's new toggles
    "value_residual": ({"model.value_residual": True}, "value residual (ResFormer)"),
    "lora_k_mlp_o": ({"ttt_eval.lora_sites": ["attn.c_k", "mlp", "attn.proj"]}, "LoRA TTT on K, MLP, O only"),
    "ema_no_warmup": ({"train.ema_warmup": False}, "EMA without its warm-up"),
    "tight_swa": ({"train.swa_enabled": True, "train.swa_mode": "swa_of_ema", "train.swa_max_lr_mul": 0.2,
                   "train.swa_every": 10}, "SWA of EMA snapshots every 10 steps while lr < 0.2"),
    "late_qat": ({"train.qat_start_frac": 0.85}, "late QAT over the last 15% of steps"),
    "cyclic_momentum": ({"train.muon_momentum_cycle_steps": 50, "train.muon_momentum_cycle_min": 0.85},
                        "Muon momentum triangle 0.85-0.95, period 50"),
}


def retrains(keys: dict) -> bool:
    return any(k.split(".")[0] in ("model", "train") for k in keys)


def write_params(base: dict, keys: dict, path: Path) -> None:
    params = json.loads(json.dumps(base))
    for k, v in keys.items():
        section, key = k.split(".", 1)
        if key not in params.get(section, {}):
            raise SystemExit(f"{k}: no such key in params.yaml")
        params[section][key] = v
    path.write_text(yaml.safe_dump(params, sort_keys=False))


def run_stages(run: Path) -> None:
    """--run: the stages of one run folder, in this process (one import of torch for all of them)."""
    from typer.main import get_command

    from stages.cli import app

    os.chdir(run)
    cli = get_command(app)
    first = (run / "first_stage").read_text().strip()
    for stage in STAGES[STAGES.index(first):]:
        t0 = time.perf_counter()
        cli.main(args=[stage], prog_name="golf", standalone_mode=False)
        print(f"ablation: {run.name} {stage} {time.perf_counter() - t0:.1f} s", flush=True)


def launch(run: Path) -> float:
    t0 = time.perf_counter()
    with open(run / "log.txt", "w") as f:
        rc = subprocess.call([sys.executable, __file__, "--run", str(run)], stdout=f, stderr=subprocess.STDOUT,
                             env={**os.environ, "OMP_NUM_THREADS": "1"})
    if rc:
        tail = "\n".join((run / "log.txt").read_text(errors="replace").splitlines()[-6:])
        print(f"ablation: {run.name} FAILED (exit {rc}):\n{tail}", flush=True)
    return time.perf_counter() - t0


def prepare(out: Path, name: str, seed: int, base: dict, sets: dict, tokens: Path) -> Path | None:
    """The run's folder, ready to launch; None when a finished run with the same params is there (resume)."""
    run = out / f"{name}-{seed}"
    params = out / f".{name}-{seed}.yaml"
    write_params(base, {**ROWS[name][0], "train.seed": seed, **sets}, params)
    if metrics(run) and (run / "params.yaml").read_text() == params.read_text():
        return None
    shutil.rmtree(run, ignore_errors=True)
    (run / "data").mkdir(parents=True)
    (run / "data" / "tokens").symlink_to(tokens.resolve())
    params.rename(run / "params.yaml")
    first = "train"
    if name != BASE and not retrains(ROWS[name][0]):
        src = out / f"{BASE}-{seed}"
        shutil.copytree(src / "artifacts" / "train", run / "artifacts" / "train")
        first = "hessian-calibrate"
    (run / "first_stage").write_text(first + "\n")
    return run


def metrics(run: Path) -> dict | None:
    try:
        t = json.loads((run / "metrics" / "ttt_eval.json").read_text())["ttt_eval"]
        c = json.loads((run / "metrics" / "compress.json").read_text())["compress"]
    except (OSError, KeyError, ValueError):
        return None
    return {"val_bpb": t["val_bpb"], "val_loss": t["val_loss"], "total_bytes": c["total_bytes"]}


def table(results: dict[str, list[dict]]) -> list[dict]:
    from golf.report.stats import compare, summarize

    base = [r["val_loss"] for r in results[BASE]]
    rows = []
    for name, runs in results.items():
        bpb, loss, size = (summarize([r[k] for r in runs]) for k in ("val_bpb", "val_loss", "total_bytes"))
        row = {"row": name, "what": ROWS[name][1], "n": len(runs), "val_bpb": bpb.mean if bpb else math.nan,
               "val_bpb_std": bpb.std if bpb else None, "total_bytes": size.mean if size else math.nan,
               "total_bytes_std": size.std if size else None}
        if name != BASE and runs:
            c = compare(base, [r["val_loss"] for r in runs])
            row |= {"delta_nats": c.delta, "p_diff": c.p_diff, "p_rule": c.p_rule, "clears": c.clears}
        rows.append(row)
    return rows


def print_table(rows: list[dict]) -> None:
    fmt = lambda x, f: "-" if x is None or (isinstance(x, float) and math.isnan(x)) else format(x, f)  # noqa: E731
    print("| row | what | n | val_bpb mean ± std | Δ nats vs base | p (two-sided) | bytes |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['row']} | {r['what']} | {r['n']} | {fmt(r['val_bpb'], '.4f')} ± {fmt(r['val_bpb_std'], '.4f')} "
              f"| {fmt(r.get('delta_nats'), '+.4f')} | {fmt(r.get('p_diff'), '.3g')} | {fmt(r['total_bytes'], ',.0f')} |")


def write_png(rows: list[dict], path: Path) -> None:
    """One bar per row: val BPB mean ± std over the seeds (sorted), the baseline's mean as a line,
    the row's mean bytes in its label."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    done = sorted((r for r in rows if r["n"]), key=lambda r: r["val_bpb"])
    base = next(r["val_bpb"] for r in rows if r["row"] == BASE)
    fig, ax = plt.subplots(figsize=(8, 0.32 * len(done) + 1.2), dpi=110)
    y = range(len(done))
    ax.errorbar([r["val_bpb"] for r in done], y, xerr=[r["val_bpb_std"] or 0.0 for r in done], fmt="o",
                capsize=3, markersize=4)
    ax.axvline(base, color="grey", linestyle="--", linewidth=1, label=f"{BASE} mean {base:.4f}")
    ax.set_yticks(list(y), [f"{r['row']} ({r['total_bytes'] / 1e3:,.0f} KB)" for r in done], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel(f"ttt_eval.val_bpb, mean ± std over {max(r['n'] for r in done)} seeds (lower is better)")
    ax.legend(loc="lower right", fontsize=8)
    ax.grid(True, axis="x", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, format="png")
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--tokens", type=Path, default=ROOT / "data/tokens", help="golf tokens (tokenize's output)")
    ap.add_argument("--params", type=Path, default=ROOT / "params.yaml", help="the baseline params")
    ap.add_argument("--seeds", default="1,2,3", help="train.seed values, each row at every one")
    ap.add_argument("--rows", default="", help="comma-separated subset of the rows (default: all)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="a params value for every run (YAML), e.g. train.device=cuda")
    ap.add_argument("--jobs", type=int, default=2, help="runs at a time")
    ap.add_argument("--out", type=Path, default=Path("/tmp/golf-ablation"), help="run folders")
    ap.add_argument("--json", type=Path, default=None, help="where to write the table and every run's numbers")
    ap.add_argument("--png", type=Path, default=None, help="where to draw each row's BPB with error bars")
    ap.add_argument("--report", type=Path, default=None, help="only print the table (and --png) of a saved --json")
    a = ap.parse_args()
    if a.run:
        return run_stages(a.run)
    if a.report:
        saved = json.loads(a.report.read_text())
        rows = table({n: runs for n, runs in saved["runs"].items() if n in ROWS})
        print_table(rows)
        return write_png(rows, a.png) if a.png else None
    names = [BASE, *[n for n in a.rows.split(",") if n and n != BASE]] if a.rows else list(ROWS)
    unknown = [n for n in names if n not in ROWS]
    if unknown:
        ap.error(f"--rows: unknown {unknown}; rows: {', '.join(ROWS)}")
    seeds = [int(s) for s in a.seeds.split(",")]
    sets = {k: yaml.safe_load(v) for k, v in (s.split("=", 1) for s in a.set)}
    base = yaml.safe_load(a.params.read_text())
    a.out.mkdir(parents=True, exist_ok=True)
    trained = [n for n in names if n == BASE or retrains(ROWS[n][0])]
    t0 = time.perf_counter()
    with ThreadPoolExecutor(max_workers=a.jobs) as pool:  # training rows first: the others copy base's checkpoint
        for group in (trained, [n for n in names if n not in trained]):
            runs = [prepare(a.out, n, s, base, sets, a.tokens) for n in group for s in seeds]
            list(pool.map(launch, [r for r in runs if r is not None]))
    results = {n: [m for s in seeds if (m := metrics(a.out / f"{n}-{s}"))] for n in names}
    rows = table(results)
    print(f"\n{len(names)} rows x {len(seeds)} seeds in {time.perf_counter() - t0:.0f} s; sets {sets}\n")
    print_table(rows)
    if a.png:
        write_png(rows, a.png)
    if a.json:
        a.json.write_text(json.dumps({"date": date.today().isoformat(), "seeds": seeds, "sets": sets,
                                      "rows": rows, "runs": results}, indent=1) + "\n")


if __name__ == "__main__":
    main()
