"""The thin CLI layer: one Typer module per pipeline stage, mounted by stages.cli."""
