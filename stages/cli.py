"""`golf`: one command per pipeline stage; each reads files, writes files and metrics/<stage>.json."""

import importlib

import typer

STAGES = ["corpus", "tokenize", "train", "hessian_calibrate", "quantize", "prune_to_budget",
          "compress", "ttt_eval"]

app = typer.Typer(
    name="golf",
    help="Parameter Golf as a pipeline of stages: "
         "corpus -> tokenize -> train -> hessian-calibrate -> quantize -> prune-to-budget -> compress -> ttt-eval. "
         "Every option defaults to params.yaml; run the whole DAG with `dvc repro`.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,  # never dump tensors into a traceback
)


@app.callback()
def main() -> None:
    """Keeps `golf <stage>` a command group."""


for _name in STAGES:
    app.command(_name.replace("_", "-"))(importlib.import_module(f"stages.{_name}").command)
app.command("report")(importlib.import_module("stages.report").command)  # not a stage: reads `dvc exp show`
app.command("preset")(importlib.import_module("stages.preset").command)  # not a stage: edits params.yaml
app.command("recipe")(importlib.import_module("stages.recipe").command)  # not a stage: edits params.yaml


if __name__ == "__main__":  # `python -m stages.cli <stage>`: the same app without the console script
    app()
