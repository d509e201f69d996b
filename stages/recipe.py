"""golf recipe NAME: apply recipes/NAME.yaml (its preset first, then the recipe) onto params.yaml, validated.

Not a pipeline stage: like `golf preset`, it edits params.yaml (docs/recipes.md lists the recipes).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer


def recipe(
    name: Annotated[str, typer.Argument(help="Recipe name: a file recipes/NAME.yaml (see docs/recipes.md).")],
    params: Annotated[Path, typer.Option(help="Params file to rewrite in place.")] = Path("params.yaml"),
    recipes: Annotated[Path, typer.Option(help="Folder of recipe overlays.")] = Path("recipes"),
    presets: Annotated[Path, typer.Option(help="Folder of preset overlays (a recipe names its preset).")] = Path("presets"),
    out: Annotated[Optional[Path], typer.Option(
        help="Write the full params file here instead of rewriting --params.")] = None,
) -> None:
    """Switch params.yaml to a recipe: its preset's keys, then the recipe's, are set; comments are kept."""
    from golf.errors import GolfError
    from golf.presets import recipe_preset, recipe_text
    from stages.preset import write_validated

    path = recipes / f"{name}.yaml"
    try:
        write_validated(recipe_text(params.read_text(encoding="utf-8"), path, presets), params, out)
    except (GolfError, OSError) as e:
        typer.secho(f"golf recipe: error: {e}", err=True, fg="red")
        raise typer.Exit(1) from None
    base = recipe_preset(path)
    where = f"{out} holds {params} with" if out else f"{params} now holds"
    typer.echo(f"golf recipe: {where} recipe {name}" + (f" (on preset {base})" if base else "")
               + ("" if out else "; `dvc repro` reruns what changed"))


command = recipe
