"""golf preset NAME: apply presets/NAME.yaml (an overlay) onto params.yaml, then validate every section.

Not a pipeline stage: it edits params.yaml, and `dvc repro` then reruns what the new values change.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer


def preset(
    name: Annotated[str, typer.Argument(help="Preset name: a file presets/NAME.yaml (cpu-small, h100, record).")],
    params: Annotated[Path, typer.Option(help="Params file to rewrite in place.")] = Path("params.yaml"),
    presets: Annotated[Path, typer.Option(help="Folder of preset overlays.")] = Path("presets"),
    out: Annotated[Optional[Path], typer.Option(
        help="Write the full params file here instead of rewriting --params (for `--params` of one stage).")] = None,
) -> None:
    """Switch params.yaml to a preset: its keys are set, comments and every other key are kept."""
    from golf.errors import GolfError
    from golf.presets import apply_overlay, read_overlay

    try:
        overlay = read_overlay(presets / f"{name}.yaml")
        text = apply_overlay(params.read_text(encoding="utf-8"), overlay, source=str(presets / f"{name}.yaml"))
        write_validated(text, params, out)
    except (GolfError, OSError) as e:
        typer.secho(f"golf preset: error: {e}", err=True, fg="red")
        raise typer.Exit(1) from None
    changed = sum(len(v) for v in overlay.values())
    where = f"{out} holds {params} with" if out else f"{params} now holds"
    typer.echo(f"golf preset: {where} preset {name} ({changed} keys set)" + ("" if out else "; `dvc repro` reruns what changed"))


def write_validated(text: str, params: Path, out: Path | None) -> None:
    """Write the new params text to `out` (or over `params`) only once every section of it validates."""
    from golf.io.atomic import atomic_write_text

    staged = params.with_name(f".{params.name}.staged")
    staged.write_text(text, encoding="utf-8")
    try:
        validate_all(staged)  # an overlay that breaks validation never lands
    finally:
        staged.unlink(missing_ok=True)
    atomic_write_text(out or params, text)


def validate_all(path: Path) -> None:
    """Every stage's sections of a params file load (the same checks each stage makes before work)."""
    import importlib

    from golf.params import load_section
    from stages.cli import STAGES

    for stage in STAGES:
        for section, cls in importlib.import_module(f"stages.{stage}").command.__sections__.items():
            load_section(path, section, cls)


command = preset
