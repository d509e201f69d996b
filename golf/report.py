"""The ablation table: `dvc exp show --json` -> one row per experiment, as markdown, CSV and a scatter plot.

Each row: the experiment's name, the params it changed against its baseline commit (the commit
row `dvc exp show` nests it under), ttt_eval.val_bpb, compress.total_bytes, and the total wall
time, the sum of every stage's `wall_s` metric (for a stage DVC restored from cache that is the
time of the run that first produced it: the cost of the experiment's artifacts, not of the call).

The dvc 3.x JSON is a list of commit entries {"rev", "name", "data": {"params": {file: {"data":
{...}}}, "metrics": {file: {"data": {...}}}}, "error", "experiments": [{"name", "revs": [entry,
...]}, ...] | null}; the first is usually "workspace". A failed or queued experiment may lack
data: its cells stay empty rather than breaking the table.
"""

from __future__ import annotations

import csv
import io
import json
import math
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from golf.errors import GolfError

CAP_BYTES = 16_000_000
BPB_KEY, BYTES_KEY = "ttt_eval.val_bpb", "compress.total_bytes"
COLUMNS = ("experiment", "rev", "changed_params", "val_bpb", "total_bytes", "wall_s")


@dataclass
class Experiment:
    name: str
    rev: str
    params: dict[str, Any]
    metrics: dict[str, Any]
    baseline: str = ""
    """rev of the commit this experiment branched from ("" for a commit row itself)."""
    changed: dict[str, Any] = field(default_factory=dict)


def exp_show_json(cwd: Path | None = None) -> Any:
    """Run `dvc exp show --json` and parse its output (GolfError if dvc fails)."""
    try:
        out = subprocess.run(["dvc", "exp", "show", "--json"], cwd=cwd, capture_output=True, text=True, check=False)
    except FileNotFoundError:
        raise GolfError("dvc is not installed (pip install dvc)") from None
    if out.returncode != 0:
        raise GolfError(f"`dvc exp show --json` failed: {out.stderr.strip().splitlines()[-1:] or out.returncode}")
    return parse_json(out.stdout, "dvc exp show --json")


def parse_json(text: str, source: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise GolfError(f"{source}: not JSON ({e})") from None


def flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    """{"quantize": {"codebook_k": 16}} -> {"quantize.codebook_k": 16}; lists stay values."""
    if not isinstance(tree, dict):
        return {prefix: tree} if prefix else {}
    out: dict[str, Any] = {}
    for k, v in tree.items():
        out.update(flatten(v, f"{prefix}.{k}" if prefix else str(k)))
    return out


def _files(block: Any) -> dict[str, Any]:
    """Merge {file: {"data": {...}}} into one flat dict; a file other than params.yaml prefixes its keys."""
    out: dict[str, Any] = {}
    for fname, content in (block or {}).items():
        data = content.get("data") if isinstance(content, dict) else None
        flat = flatten(data or {})
        if fname not in ("params.yaml", "") and not fname.startswith("metrics/"):
            flat = {f"{fname}:{k}": v for k, v in flat.items()}
        out.update(flat)
    return out


def _entry(e: dict, name: str, baseline: str = "") -> Experiment:
    data = e.get("data") or {}
    return Experiment(name=name, rev=str(e.get("rev") or ""), params=_files(data.get("params")),
                      metrics=_files(data.get("metrics")), baseline=baseline)


def experiments(show: Any, workspace: bool = False) -> list[Experiment]:
    """Commit rows and their experiments, in `dvc exp show` order; `changed` filled against the baseline."""
    if not isinstance(show, list):
        raise GolfError(f"dvc exp show --json: expected a list of commits, found {type(show).__name__}")
    rows: list[Experiment] = []
    for commit in show:
        if not isinstance(commit, dict):
            continue
        rev = str(commit.get("rev") or "")
        if rev == "workspace" and not workspace:
            continue
        base = _entry(commit, commit.get("name") or (rev if rev == "workspace" else rev[:7]))
        rows.append(base)
        for exp in commit.get("experiments") or []:
            for e in exp.get("revs") or []:
                row = _entry(e, e.get("name") or exp.get("name") or str(e.get("rev", ""))[:7], baseline=rev)
                row.changed = {k: v for k, v in row.params.items() if base.params.get(k, _MISSING) != v}
                rows.append(row)
    return rows


_MISSING = object()


def wall_s(metrics: dict[str, Any]) -> float | None:
    """Sum of every stage's wall_s (keys `<stage>.wall_s`); None when no stage reports one."""
    walls = [v for k, v in metrics.items() if k.count(".") == 1 and k.endswith(".wall_s")
             and isinstance(v, (int, float)) and not isinstance(v, bool)]
    return round(float(sum(walls)), 3) if walls else None


def table(rows: list[Experiment]) -> list[dict[str, Any]]:
    """The report's rows: one dict per experiment with COLUMNS as keys ("" where a value is missing)."""
    out = []
    for r in rows:
        changed = "(baseline)" if not r.baseline else (
            " ".join(f"{k}={json.dumps(v)}" for k, v in sorted(r.changed.items())) or "(none)")
        out.append({"experiment": r.name, "rev": r.rev[:7], "changed_params": changed,
                    "val_bpb": r.metrics.get(BPB_KEY, ""), "total_bytes": r.metrics.get(BYTES_KEY, ""),
                    "wall_s": "" if (w := wall_s(r.metrics)) is None else w})
    return out


def _cell(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4f}" if abs(v) < 100 else f"{v:,.1f}"
    if isinstance(v, int) and not isinstance(v, bool):
        return f"{v:,}"
    return str(v).replace("|", "\\|")


def markdown(rows: list[dict[str, Any]]) -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "|".join("---" for _ in COLUMNS) + "|"]
    lines += ["| " + " | ".join(_cell(r[c]) for c in COLUMNS) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def csv_text(rows: list[dict[str, Any]]) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(COLUMNS), lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    return buf.getvalue()


def _num(v: Any) -> float | None:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) else None


def scatter_png(rows: list[dict[str, Any]], path: Path) -> int:
    """Bytes (x) vs val BPB (y), one labelled point per experiment with both; returns the points drawn."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from golf.io.atomic import atomic_path

    pts = [(_num(r["total_bytes"]), _num(r["val_bpb"]), r["experiment"]) for r in rows]
    pts = [(x, y, n) for x, y, n in pts if x is not None and y is not None]
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=110)
    for x, y, n in pts:
        ax.scatter([x], [y], s=24)
        ax.annotate(n, (x, y), textcoords="offset points", xytext=(4, 4), fontsize=8)
    if pts and max(x for x, _, _ in pts) > 0.5 * CAP_BYTES:
        ax.axvline(CAP_BYTES, color="red", linestyle="--", linewidth=1, label="16,000,000-byte cap")
        ax.legend(loc="best", fontsize=8)
    ax.set_xlabel("compress.total_bytes")
    ax.set_ylabel("ttt_eval.val_bpb (lower is better)")
    ax.set_title(f"golf experiments: bytes vs BPB ({len(pts)} points)")
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return len(pts)
