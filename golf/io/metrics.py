"""metrics/<stage>.json (what a stage produced), metrics/timings/<stage>.json (how fast), plots/<name>.csv,
and the clock sidecar beside a stage output (`clock_path`).

Outcomes (BPB, bytes, counts) are DVC metrics, so `dvc metrics diff` and `dvc exp show` lead with
them. Timings (seconds, tokens/s, MFU, peak memory) change on every run with identical outputs, so
they go to a file DVC does not track: rerunning a stage by hand leaves `dvc status` clean, and an
experiment's own timings are still in its git commit (`golf report` reads them there).
"""

from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path
from typing import Any, Iterable, Mapping

from golf.errors import GolfError
from golf.io.atomic import atomic_write_text

TIMING = re.compile(r".*_s(_.+)?|tokens_per_s.*|mfu|peak_mem_bytes")


def is_timing(key: str) -> bool:
    """wall_s, first_step_s, eval_s_plain, tokens_per_s_ttt, mfu, peak_mem_bytes, ..."""
    return TIMING.fullmatch(key) is not None


def timings_path(metrics_path: Path) -> Path:
    """metrics/<stage>.json -> metrics/timings/<stage>.json."""
    return Path(metrics_path).parent / "timings" / Path(metrics_path).name


def write_stage_metrics(path: Path, stage: str, values: Mapping[str, Any]) -> None:
    """The outcomes to `path`, the timings beside it under timings/."""
    write_metrics(path, stage, {k: v for k, v in values.items() if not is_timing(k)})
    write_metrics(timings_path(path), stage, {k: v for k, v in values.items() if is_timing(k)})


def write_metrics(path: Path, stage: str, values: Mapping[str, Any]) -> None:
    """{"<stage>": {...}}: unique `dvc metrics show` columns. Measured values only, never params."""
    atomic_write_text(path, json.dumps({stage: dict(values)}, indent=2, sort_keys=True) + "\n")


def read_metrics(path: Path, stage: str) -> dict[str, Any]:
    return json.loads(Path(path).read_text())[stage]


def clock_path(output: Path) -> Path:
    """Where the seconds measured while writing `output` go: beside it, model.safetensors -> model.clock.json.

    An output of its own in dvc.yaml, beside the file and not inside it: the same inputs then write the
    same bytes, so a checkpoint's sha256 (which the artifact carries) and the artifact's byte count (the
    score) do not change with the clock, and a rerun that wrote the same bytes reruns only the stage
    that reads the clock (ttt_eval), not every stage after it."""
    output = Path(output)
    return output.with_name(output.stem + ".clock.json")


def clear_clock(output: Path) -> None:
    """Remove `output`'s clock before `output` is rewritten: a run that dies in between leaves no stale one."""
    clock_path(output).unlink(missing_ok=True)


def write_clock(output: Path, values: Mapping[str, Any]) -> None:
    atomic_write_text(clock_path(output), json.dumps(dict(values), indent=2, sort_keys=True) + "\n")


def read_clock(output: Path) -> dict[str, Any] | None:
    """`output`'s clock, or None when it has none (an output from before clocks, or copied alone)."""
    path = clock_path(output)
    if not path.is_file():
        return None
    try:
        values = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise GolfError(f"{path}: not valid JSON ({e.msg} at line {e.lineno})") from None
    if not isinstance(values, dict):
        raise GolfError(f"{path}: expected a JSON object of measured seconds, got {type(values).__name__}")
    return values


def write_csv(path: Path, rows: Iterable[Mapping[str, Any]]) -> None:
    """A CSV series for `dvc plots` (columns from the first row)."""
    rows = list(rows)
    buf = io.StringIO()
    if rows:
        w = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
        w.writeheader()
        w.writerows(rows)
    atomic_write_text(path, buf.getvalue())
