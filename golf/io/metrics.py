"""metrics/<stage>.json (flat measured numbers under the stage's name) and plots/<name>.csv."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any, Iterable, Mapping

from golf.io.atomic import atomic_write_text


def write_metrics(path: Path, stage: str, values: Mapping[str, Any]) -> None:
    """{"<stage>": {...}}: unique `dvc metrics show` columns. Measured values only, never params."""
    atomic_write_text(path, json.dumps({stage: dict(values)}, indent=2, sort_keys=True) + "\n")


def read_metrics(path: Path, stage: str) -> dict[str, Any]:
    return json.loads(Path(path).read_text())[stage]


def write_csv(path: Path, rows: Iterable[Mapping[str, Any]]) -> None:
    """A CSV series for `dvc plots` (columns from the first row)."""
    rows = list(rows)
    buf = io.StringIO()
    if rows:
        w = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
        w.writeheader()
        w.writerows(rows)
    atomic_write_text(path, buf.getvalue())
