"""Each experiment's own stage times: read `metrics/timings/<stage>.json` at its git rev, drop the reused.

Timings (wall_s, train_s, first_step_s, tokens_per_s, encode_s, ...) live in
`metrics/timings/<stage>.json`, a file git tracks and DVC does not, so a rerun with identical
outputs leaves `dvc status` clean. `dvc exp run` commits the workspace, so an experiment's
timings are `git show <exp-rev>:metrics/timings/<stage>.json`. A stage the experiment did not
rerun (DVC found it up to date, or restored it from its cache) still has its baseline commit's
file, byte for byte: that time belongs to the baseline, not to the experiment.

Where a rev has no timings folder (a `dvc exp show --json` saved on another machine, or a commit
from before timings had their own files), a stage's record is its metrics block, which held its
wall_s then: an unchanged block means the stage was not rerun just the same.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any, Mapping

TIMINGS_DIR = "metrics/timings"
PIPELINE = ("corpus", "tokenize", "train", "hessian_calibrate", "quantize", "prune_to_budget", "compress",
            "ttt_eval")
"""The stage order of dvc.yaml (stages/cli.py: STAGES), for listing stages in pipeline order."""

Records = dict[str, dict[str, Any]]
"""{stage: {key: value}}."""


def stage_order(stages: list[str] | set[str]) -> list[str]:
    """Stages in pipeline order; unknown names after, alphabetically."""
    rank = {s: i for i, s in enumerate(PIPELINE)}
    return sorted(stages, key=lambda s: (rank.get(s, len(PIPELINE)), s))


def parse_timings(text: str, stage: str) -> dict[str, Any] | None:
    """One timings file's values: {"<stage>": {...}} (as metrics files) or a flat {...}; None if unreadable."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        return None
    if isinstance(data, dict) and set(data) == {stage} and isinstance(data[stage], dict):
        data = data[stage]
    return data if isinstance(data, dict) else None


def _git(args: list[str], cwd: Path) -> str | None:
    try:
        out = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=False)
    except (FileNotFoundError, NotADirectoryError):
        return None
    return out.stdout if out.returncode == 0 else None


def read_timings(rev: str, cwd: Path = Path(".")) -> Records | None:
    """{stage: values} of every metrics/timings/*.json at `rev` ("workspace": the files on disk);
    None when that rev has no timings folder or git cannot read it."""
    if rev == "workspace":
        files = sorted((Path(cwd) / TIMINGS_DIR).glob("*.json"))
        texts = {f.stem: f.read_text(encoding="utf-8") for f in files}
    else:
        texts = _git_texts(rev, Path(cwd))
    if not texts:
        return None
    records = {stage: parse_timings(text, stage) for stage, text in texts.items()}
    return {stage: values for stage, values in records.items() if values is not None}


def _git_texts(rev: str, cwd: Path) -> dict[str, str]:
    """{stage: file text} of TIMINGS_DIR/*.json at rev (`git ls-tree`, then `git show` per file)."""
    listing = _git(["ls-tree", "--name-only", rev, f"{TIMINGS_DIR}/"], cwd) if rev else None
    paths = [p for p in (listing or "").splitlines() if p.endswith(".json")]
    texts = {Path(p).stem: _git(["show", f"{rev}:{p}"], cwd) for p in paths}
    return {stage: text for stage, text in texts.items() if text is not None}


def records_from_metrics(metrics: Mapping[str, Any]) -> Records:
    """Flat "<stage>.<key>" metrics -> {stage: {key: value}}."""
    out: Records = {}
    for key, value in metrics.items():
        stage, dot, name = key.partition(".")
        if dot:
            out.setdefault(stage, {})[name] = value
    return out


def own_stages(records: Records, baseline: Records | None) -> tuple[Records, list[str]]:
    """(the stages this run ran itself, the stages whose record equals the baseline's: not rerun)."""
    if baseline is None:
        return dict(records), []
    reused = [s for s, values in records.items() if baseline.get(s) == values]
    return {s: v for s, v in records.items() if s not in reused}, stage_order(reused)


def wall_s(records: Records) -> float | None:
    """Sum of the stages' wall_s; None when none reports one."""
    walls = [v.get("wall_s") for v in records.values()]
    walls = [float(w) for w in walls if isinstance(w, (int, float)) and not isinstance(w, bool)]
    return round(sum(walls), 3) if walls else None
