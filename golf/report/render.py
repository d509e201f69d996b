"""The report's rows (golf/report/table.py) as markdown with footnotes, as CSV, and as a scatter plot."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

from golf.compliance import CAP_BYTES, EVAL_LIMIT_S, TRAIN_LIMIT_S
from golf.report import stats
from golf.report.table import BASELINE_COLUMNS, COLUMNS, LOSS_KEY, SEED_KEY

BYTES_PER_TOKEN_TOLERANCE = 1e-3
"""Relative gap in scored bytes/token beyond which nats/token no longer compare (another tokenizer or span)."""


def _float(v: float, col: str) -> str:
    if col in ("total_bytes", "max_total_bytes"):
        return f"{v:,.0f}"
    return f"{v:,.1f}" if col in ("wall_s", "train_s", "eval_s") else f"{v:.4f}"


def _stat(row: dict[str, Any], col: str) -> str:
    """"mean ± std" (std only for n > 1), "(n=k)" when fewer runs than the group have this metric."""
    if row[col] == "":
        return ""
    text = _float(row[col], col)
    if row[f"{col}_std"] != "":
        text += f" ± {_float(row[f'{col}_std'], col)}"
    if 0 < row[f"{col}_n"] < row["n"]:
        text += f" (n={row[f'{col}_n']})"
    return text


def _p(p: Any) -> str:
    return "" if p == "" else f"{p:.4f}" if p >= 1e-4 else f"{p:.1e}"


def _table(header: list[str], lines: list[list[str]]) -> list[str]:
    esc = lambda c: str(c).replace("|", "\\|")  # noqa: E731
    return ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|",
            *("| " + " | ".join(esc(c) for c in line) + " |" for line in lines)]


def main_table(rows: list[dict[str, Any]], baseline: str | None) -> list[str]:
    stat_cols = ("val_bpb", "val_loss", "float_bpb", "total_bytes", "wall_s")
    header = ["experiment", "rev", "n", "seeds", "changed_params", *stat_cols, "reused"]
    if baseline:
        header += ["Δ val_loss", "Δ val_bpb", "p_rule", "p_diff", "clears"]
    lines = []
    for r in rows:
        line = [r["experiment"], r["rev"], str(r["n"]), r["seeds"], r["changed_params"],
                *(_stat(r, c) for c in stat_cols), r["reused"]]
        if baseline:
            line += ["" if r["d_val_loss"] == "" else f"{r['d_val_loss']:+.4f}",
                     "" if r["d_val_bpb"] == "" else f"{r['d_val_bpb']:+.4f}",
                     _p(r["p_rule"]), _p(r["p_diff"]), r["clears"]]
        lines.append(line)
    return _table(header, lines)


def main_notes(rows: list[dict[str, Any]], baseline: str | None, duplicates: list[str]) -> list[str]:
    notes = [f"- n, seeds: runs whose params differ only in `{SEED_KEY}` (same baseline commit, same code) "
             "form one row; cells are mean ± sample std over them ((n=k): only k runs have that metric).",
             "- wall_s: the seconds each run spent itself; a stage under `reused` had the same timings as the "
             "run's baseline commit (not rerun) and is not counted."]
    if duplicates:
        notes.append(f"- dropped, their seed already in their row: {', '.join(duplicates)}.")
    if baseline:
        notes.append(
            f"- vs `{baseline}`: Δ = row mean - baseline mean. The leaderboard rule is tested in nats: on "
            f"`{LOSS_KEY}` (nats per scored token). p_rule: one-sided Welch t-test that the row is more than "
            f"{stats.MARGIN_NATS} nats better; clears = p_rule < {stats.ALPHA}. p_diff: two-sided Welch p of any "
            f"difference. A p-value needs >= {stats.MIN_SEEDS} seeds per side.")
        ref = next((r["bytes_per_token"] for r in rows if r.get("clears") == "(baseline)"), "")
        off = [r["experiment"] for r in rows if ref and r["bytes_per_token"] != "" and
               abs(r["bytes_per_token"] / ref - 1) > BYTES_PER_TOKEN_TOLERANCE]
        if off:
            notes.append(f"- {', '.join(off)}: scored bytes per token differ from the baseline's (another "
                         "tokenizer or span): their nats per token do not compare; compare val_bpb.")
    return notes


def _limit(value: Any, fits: str, fmt: str) -> str:
    if value == "":
        return "?"
    return f"{value:{fmt}} " + {"yes": "ok", "no": "OVER"}.get(fits, "?")


def compliance_table(rows: list[dict[str, Any]]) -> list[str]:
    header = ["experiment", "world_size", f"train_s (<= {TRAIN_LIMIT_S:.0f})", f"eval_s (<= {EVAL_LIMIT_S:.0f})",
              f"total_bytes (<= {CAP_BYTES:,})", "fits"]
    lines = []
    for r in rows:
        if not r["n"]:
            continue
        ws = {r["train_world_size"], r["eval_world_size"]}
        world = str(r["train_world_size"] or "?") if len(ws) == 1 else \
            f"train {r['train_world_size'] or '?'}, eval {r['eval_world_size'] or '?'}"
        verdicts = {"train": r["fits_train"], "eval": r["fits_eval"], "bytes": r["fits_bytes"]}
        over = [k for k, v in verdicts.items() if v == "no"]
        fits = f"no ({', '.join(over)})" if over else "?" if "?" in verdicts.values() else "yes"
        lines.append([r["experiment"], world, _limit(r["train_s"], r["fits_train"], ",.1f"),
                      _limit(r["eval_s"], r["fits_eval"], ",.1f"),
                      _limit(r["max_total_bytes"], r["fits_bytes"], ","), fits])
    return _table(header, lines)


COMPLIANCE_NOTES = [
    f"- The challenge's limits (timed on 8xH100): training <= {TRAIN_LIMIT_S:.0f} s, evaluation <= "
    f"{EVAL_LIMIT_S:.0f} s, code + compressed model <= {CAP_BYTES:,} bytes. Each cell is the worst seed of the row.",
    "- train_s: `train.train_s` (optimizer steps, as the records time them) plus `hessian_calibrate.collect_s` "
    "when `hessian_calibrate.source` is `train` (calibration on training data counts as training).",
    "- eval_s: the whole `ttt_eval` process (`ttt_eval.wall_s`: artifact decode and every scoring mode it ran).",
    "- Times are as measured, at the world size shown, on the machine that ran them: a verdict says whether "
    "the run fit there, not on 8xH100.",
]


def markdown(rows: list[dict[str, Any]], baseline: str | None = None, duplicates: list[str] = ()) -> str:
    """The ablation table with its footnotes, then the compliance table with its own."""
    lines = [*main_table(rows, baseline), "", *main_notes(rows, baseline, list(duplicates)), "",
             "Compliance:", "", *compliance_table(rows), "", *COMPLIANCE_NOTES]
    return "\n".join(lines) + "\n"


def csv_text(rows: list[dict[str, Any]], baseline: str | None = None) -> str:
    buf = io.StringIO()
    fields = [*COLUMNS, *(BASELINE_COLUMNS if baseline else ())]
    w = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n", extrasaction="ignore")
    w.writeheader()
    w.writerows(rows)
    return buf.getvalue()


def scatter_png(rows: list[dict[str, Any]], path: Path) -> int:
    """Bytes (x) vs val BPB (y), one labelled point per row with both, error bars = the seeds' std;
    returns the points drawn."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from golf.io.atomic import atomic_path

    std = lambda r, c: r[f"{c}_std"] or 0.0  # noqa: E731
    pts = [(r["total_bytes"], r["val_bpb"], std(r, "total_bytes"), std(r, "val_bpb"), r["experiment"], r["n"])
           for r in rows if r["total_bytes"] != "" and r["val_bpb"] != ""]
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=110)
    for x, y, xerr, yerr, name, n in pts:
        ax.errorbar([x], [y], xerr=[xerr], yerr=[yerr], fmt="o", markersize=5, capsize=3)
        ax.annotate(name if n < 2 else f"{name} (n={n})", (x, y), textcoords="offset points", xytext=(4, 4),
                    fontsize=8)
    if pts and max(p[0] for p in pts) > 0.5 * CAP_BYTES:
        ax.axvline(CAP_BYTES, color="red", linestyle="--", linewidth=1, label="16,000,000-byte cap")
        ax.legend(loc="best", fontsize=8)
    ax.set_xlabel("compress.total_bytes (mean ± std over seeds)")
    ax.set_ylabel("ttt_eval.val_bpb (lower is better)")
    ax.set_title(f"golf experiments: bytes vs BPB ({len(pts)} points)")
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return len(pts)
