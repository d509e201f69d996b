"""report: the ablation table of `dvc exp show --json` as markdown (stdout), CSV and a bytes-vs-BPB PNG.

Not a pipeline stage (no params section, nothing in dvc.yaml): run it after `dvc exp run` /
`dvc queue start` to compare experiments. `--json-file` reads a saved `dvc exp show --json`
instead of running dvc (tests, or a table from another machine's experiments).
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
) -> None:
    """Table of experiments: changed params, ttt_eval.val_bpb, compress.total_bytes, total wall_s."""
    from golf import report as rp
    from golf.errors import GolfError
    from golf.io.atomic import atomic_write_text

    try:
        if json_file is None:
            show = rp.exp_show_json()
        elif not json_file.is_file():
            raise GolfError(f"{json_file}: file not found")
        else:
            show = rp.parse_json(json_file.read_text(encoding="utf-8"), str(json_file))
        rows = rp.table(rp.experiments(show, workspace=workspace))
    except GolfError as e:
        typer.secho(f"golf report: error: {e}", err=True, fg="red")
        raise typer.Exit(1) from None
    typer.echo(rp.markdown(rows), nl=False)
    atomic_write_text(csv, rp.csv_text(rows))
    points = rp.scatter_png(rows, png)
    typer.echo(f"golf report: {len(rows)} rows -> {csv}; {points} points -> {png}", err=True)


command = report
