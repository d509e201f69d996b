"""`dvc exp show --json` -> Experiment records: params, metrics, state and code of every row.

The dvc 3.x JSON is a list of commit entries {"rev", "name", "data": {"params": {file: {"data":
{...}}}, "metrics": {file: {"data": {...}}}, "deps": {path: {"hash", ...}}, "outs": {path: ...}},
"error", "experiments": [{"name", "executor": {"state"} | null, "revs": [entry, ...]}, ...] | null};
the first is usually "workspace". A queued, running or failed experiment (its executor's state,
or an error) is listed but never measured: a queued one's files are still its baseline's.
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from golf.errors import GolfError


@dataclass
class Experiment:
    name: str
    rev: str
    params: dict[str, Any]
    metrics: dict[str, Any]
    baseline: str = ""
    """rev of the commit this experiment branched from ("" for a commit row itself)."""
    changed: dict[str, Any] = field(default_factory=dict)
    state: str = ""
    """"" for a finished row; else "queued", "running", "failed" or "error" (no numbers to trust)."""
    code: tuple[tuple[str, str], ...] = ()
    """(path, hash) of every dvc.lock dep that no stage writes: the code and inputs the run used."""
    code_changed: bool = False
    """An experiment whose code differs from its baseline commit's (it ran on an edited workspace)."""

    @property
    def measured(self) -> bool:
        return not self.state


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


def _code(data: dict) -> tuple[tuple[str, str], ...]:
    """Deps that are no stage's output (source files, requirement pins), with their hashes."""
    outs = [str(o).rstrip("/") for o in (data.get("outs") or {})]
    written = lambda path: any(path == o or path.startswith(o + "/") for o in outs)  # noqa: E731
    deps = data.get("deps") or {}
    return tuple(sorted((str(p), str((d or {}).get("hash"))) for p, d in deps.items() if not written(str(p))))


def _entry(e: dict, name: str, baseline: str = "", executor: Any = None) -> Experiment:
    data = e.get("data") or {}
    state = str((executor or {}).get("state") or "") if isinstance(executor, dict) else ""
    state = "" if state == "success" else state
    if e.get("error") or (baseline and not data):
        state = state or "error"
    return Experiment(name=name, rev=str(e.get("rev") or ""), params=_files(data.get("params")),
                      metrics=_files(data.get("metrics")), baseline=baseline, state=state, code=_code(data))


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
                name = e.get("name") or exp.get("name") or str(e.get("rev", ""))[:7]
                row = _entry(e, name, baseline=rev, executor=exp.get("executor"))
                row.changed = {k: v for k, v in row.params.items() if base.params.get(k, _MISSING) != v}
                row.code_changed = bool(row.code and base.code and row.code != base.code)
                rows.append(row)
    return rows


_MISSING = object()
