"""report: the ablation table of `dvc exp show --json` as markdown (stdout), CSV and a bytes-vs-BPB PNG.

Not a pipeline stage (no params section, nothing in dvc.yaml): run it in the repo after
`dvc exp run` / `dvc queue start` to compare experiments. Runs that differ only in `train.seed`
are one row (mean ± std); `--baseline NAME` adds the leaderboard's significance test against
that row. Each experiment's own stage times come from `metrics/timings/` at its git rev.
`--json-file` reads a saved `dvc exp show --json` instead of running dvc (tests, or a table from
another machine's experiments: timings then come from the metrics it holds).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer


def report(
    json_file: Annotated[Optional[Path], typer.Option(
        help="A saved `dvc exp show --json` output; default: run dvc here.")] = None,
    csv: Annotated[Path, typer.Option(help="CSV table to write.")] = Path("plots/ablation.csv"),
    png: Annotated[Path, typer.Option(help="Bytes-vs-BPB scatter plot to write.")] = Path("plots/ablation.png"),
    workspace: Annotated[bool, typer.Option(
        "--workspace/--no-workspace", help="Include the uncommitted workspace row.")] = False,
    baseline: Annotated[Optional[str], typer.Option(
        help="Experiment name or rev whose row the others are tested against (needs >= 2 seeds).")] = None,
) -> None:
    """Experiments grouped over train.seed: mean ± std of BPB, bytes and own wall time; compliance."""
    from golf.errors import GolfError
    from golf.io.atomic import atomic_write_text
    from golf.report import exps, render, table, timings

    try:
        if json_file is None:
            show = exps.exp_show_json()
        elif not json_file.is_file():
            raise GolfError(f"{json_file}: file not found")
        else:
            show = exps.parse_json(json_file.read_text(encoding="utf-8"), str(json_file))
        runs = exps.experiments(show, workspace=workspace)
        revs = {e.rev for e in runs if e.measured} | {e.baseline for e in runs if e.baseline}
        groups = table.groups(runs, {rev: timings.read_timings(rev) for rev in revs})
        base = table.find_baseline(groups, baseline) if baseline else None
        rows = table.table(groups, base)
    except GolfError as e:
        typer.secho(f"golf report: error: {e}", err=True, fg="red")
        raise typer.Exit(1) from None
    duplicates = [name for g in groups for name in g.duplicates]
    typer.echo(render.markdown(rows, baseline, duplicates), nl=False)
    atomic_write_text(csv, render.csv_text(rows, baseline))
    points = render.scatter_png(rows, png)
    typer.echo(f"golf report: {len(rows)} rows -> {csv}; {points} points -> {png}", err=True)


command = report
