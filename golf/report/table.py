"""The ablation table: experiments grouped over seeds, mean ± std per metric, the leaderboard test, compliance.

A group is the runs whose params differ only in `train.seed`, on the same baseline commit with the
same code (dvc.lock's source hashes), so `dvc exp run --queue -S 'train.seed=1,2,3'` and the
commit row it branched from form one row. Two runs of one seed count once (an experiment that
repeats the commit's own seed reruns nothing and would copy its numbers). Queued, running and
failed experiments get a row of their own with no numbers.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

from golf.compliance import Compliance, from_stages
from golf.errors import GolfError
from golf.report import stats
from golf.report.exps import Experiment
from golf.report.timings import Records, own_stages, records_from_metrics, stage_order, wall_s

SEED_KEY = "train.seed"
HESSIAN_SOURCE_KEY = "hessian_calibrate.source"
LOSS_KEY = "ttt_eval.val_loss"
METRICS = {"val_bpb": "ttt_eval.val_bpb", "val_loss": LOSS_KEY, "float_bpb": "train.val_bpb",
           "total_bytes": "compress.total_bytes"}
"""Report column -> metric key: the headline BPB, its loss in nats/token, train's float BPB, the bytes."""


@dataclass
class Run:
    """One measured experiment: its stage records and the part of its time it spent itself."""

    exp: Experiment
    own_wall_s: float | None
    reused: list[str]
    """Stages whose timings equal the baseline commit's: not rerun, not counted in own_wall_s."""
    compliance: Compliance
    """Of the artifact's whole recipe: reused stages count (an experiment's artifact needed them)."""


@dataclass
class Group:
    members: list[Experiment]
    runs: list[Run] = field(default_factory=list)
    duplicates: list[str] = field(default_factory=list)
    """Names of runs dropped because their seed was already in the group."""

    def values(self, key: str) -> list[float]:
        return [v for r in self.runs if (v := _num(r.exp.metrics.get(key))) is not None]


def _num(v: Any) -> int | float | None:
    return v if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) else None


def group_key(e: Experiment) -> tuple:
    """Same baseline commit, same code, same params but train.seed; an unmeasured row stands alone."""
    if not e.measured:
        return ("unmeasured", e.rev, e.name)
    params = {k: v for k, v in e.params.items() if k != SEED_KEY}
    return (e.baseline or e.rev, json.dumps(params, sort_keys=True, default=str), e.code)


def make_run(e: Experiment, timings: dict[str, Records | None], by_rev: dict[str, Experiment]) -> Run:
    """A run's records, own time and compliance; `timings` maps revs to read_timings() results."""
    mine = timings.get(e.rev) or records_from_metrics(e.metrics)
    base_exp = by_rev.get(e.baseline)
    base = (timings.get(e.baseline) or records_from_metrics(base_exp.metrics if base_exp else {})) \
        if e.baseline else None
    own, reused = own_stages(mine, base)
    merged = records_from_metrics(e.metrics)
    for stage, values in mine.items():
        merged[stage] = {**merged.get(stage, {}), **values}
    return Run(exp=e, own_wall_s=wall_s(own), reused=reused,
               compliance=from_stages(merged, e.params.get(HESSIAN_SOURCE_KEY)))


def groups(exps: list[Experiment], timings: dict[str, Records | None]) -> list[Group]:
    """Experiments grouped over seeds, in order of first appearance."""
    by_rev = {e.rev: e for e in exps}
    out: dict[tuple, Group] = {}
    for e in exps:
        g = out.setdefault(group_key(e), Group(members=[]))
        g.members.append(e)
        if not e.measured:
            continue
        if any(r.exp.params.get(SEED_KEY) == e.params.get(SEED_KEY) for r in g.runs):
            g.duplicates.append(e.name)
            continue
        g.runs.append(make_run(e, timings, by_rev))
    return list(out.values())


def find_baseline(gs: list[Group], name: str) -> Group:
    """The group holding the experiment named `name` (or whose rev starts with it); GolfError if it
    is unknown, unmeasured, or has fewer than stats.MIN_SEEDS seeds with a val_loss."""
    for g in gs:
        for e in g.members:
            if e.name == name or (len(name) >= 4 and e.rev.startswith(name)):
                if not e.measured:
                    raise GolfError(f"--baseline {name}: that experiment is {e.state}, it has no numbers")
                n = len(g.values(LOSS_KEY))
                if n < stats.MIN_SEEDS:
                    raise GolfError(
                        f"--baseline {name}: {n} seed(s) with {LOSS_KEY}; a p-value needs >= {stats.MIN_SEEDS} "
                        f"seeds per side: queue more with dvc exp run --queue -S '{SEED_KEY}=1,2,3'")
                return g
    names = ", ".join(e.name for g in gs for e in g.members)
    raise GolfError(f"--baseline {name}: no experiment or rev of that name (have: {names})")


def _changed(g: Group) -> str:
    """The params the row changed against its baseline commit, train.seed left out unless unmeasured."""
    e = g.members[0]
    if not e.baseline or any(not m.baseline for m in g.members):
        return "(baseline)"
    pairs = sorted((k, v) for k, v in e.changed.items() if k != SEED_KEY or not e.measured)
    text = " ".join(f"{k}={json.dumps(v)}" for k, v in pairs)
    if e.code_changed:
        text += " (other code)" if text else "(other code)"
    return text or ("(seed only)" if e.measured else "")


def _summary_cells(col: str, values: list[float]) -> dict[str, Any]:
    s = stats.summarize(values)
    mean = "" if s is None else values[0] if s.n == 1 else s.mean  # one run: its value as recorded
    return {col: mean, f"{col}_std": "" if s is None or s.std is None else s.std,
            f"{col}_n": s.n if s else 0}


def _worst(runs: list[Run]) -> dict[str, Any]:
    """The group's compliance: the largest time and size of any seed; it fits only if every seed fits."""
    cs = [r.compliance for r in runs]

    def most(attr: str) -> Any:
        vals = [getattr(c, attr) for c in cs if getattr(c, attr) is not None]
        return max(vals) if vals else ""

    def fits(attr: str) -> str:
        verdicts = [getattr(c, attr) for c in cs]
        return "" if not cs else "no" if False in verdicts else "?" if None in verdicts else "yes"

    return {"train_world_size": most("train_world_size"), "train_s": most("train_s"),
            "calibration_s": most("calibration_s"), "eval_world_size": most("eval_world_size"),
            "eval_s": most("eval_s"), "max_total_bytes": most("total_bytes"),
            "fits_train": fits("fits_train"), "fits_eval": fits("fits_eval"), "fits_bytes": fits("fits_bytes")}


def _vs_baseline(g: Group, base: Group) -> dict[str, Any]:
    if g is base:
        return {"d_val_loss": "", "d_val_bpb": "", "p_rule": "", "p_diff": "", "clears": "(baseline)"}
    cand, ref = g.values(LOSS_KEY), base.values(LOSS_KEY)
    if not cand:
        return {"d_val_loss": "", "d_val_bpb": "", "p_rule": "", "p_diff": "", "clears": ""}
    c = stats.compare(ref, cand)
    bpb, ref_bpb = stats.summarize(g.values(METRICS["val_bpb"])), stats.summarize(base.values(METRICS["val_bpb"]))
    blank = lambda p: "" if p is None else p  # noqa: E731
    return {"d_val_loss": c.delta, "d_val_bpb": bpb.mean - ref_bpb.mean if bpb and ref_bpb else "",
            "p_rule": blank(c.p_rule), "p_diff": blank(c.p_diff),
            "clears": f"n<{stats.MIN_SEEDS}" if len(cand) < stats.MIN_SEEDS else
            "no variance" if c.p_rule is None else "yes" if c.clears else "no"}


def table(gs: list[Group], baseline: Group | None = None) -> list[dict[str, Any]]:
    """One dict per group: see COLUMNS (CSV) for the keys; "" where a value is missing."""
    rows = []
    for g in gs:
        e = g.members[0]
        seeds = sorted({r.exp.params.get(SEED_KEY) for r in g.runs}, key=str)
        row: dict[str, Any] = {
            "experiment": e.name if e.measured else f"{e.name} ({e.state})", "rev": e.rev[:7],
            "n": len(g.runs), "seeds": " ".join(map(str, seeds)), "changed_params": _changed(g)}
        for col, key in METRICS.items():
            row.update(_summary_cells(col, g.values(key)))
        ratios = [b / t for r in g.runs if (b := _num(r.exp.metrics.get("ttt_eval.bytes_scored")))
                  and (t := _num(r.exp.metrics.get("ttt_eval.tokens_scored")))]
        row["bytes_per_token"] = round(stats.summarize(ratios).mean, 4) if ratios else ""
        row.update(_summary_cells("wall_s", [r.own_wall_s for r in g.runs if r.own_wall_s is not None]))
        row["reused"] = " ".join(stage_order({s for r in g.runs for s in r.reused}))
        row.update(_worst(g.runs))
        if baseline is not None:
            row.update(_vs_baseline(g, baseline))
        rows.append(row)
    return rows


COLUMNS = ("experiment", "rev", "n", "seeds", "changed_params",
           *(f"{c}{s}" for c in METRICS for s in ("", "_std", "_n")), "bytes_per_token",
           "wall_s", "wall_s_std", "wall_s_n", "reused",
           "train_world_size", "train_s", "calibration_s", "eval_world_size", "eval_s", "max_total_bytes",
           "fits_train", "fits_eval", "fits_bytes")
BASELINE_COLUMNS = ("d_val_loss", "d_val_bpb", "p_rule", "p_diff", "clears")
