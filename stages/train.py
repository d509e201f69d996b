"""train: the GPT with Muon + AdamW, EMA and a wall-clock (or step) schedule, on the tokenized shards.

Writes artifacts/train/model.safetensors (the averaged weights, config in the header),
plots/train.csv (one row per step) and metrics/train.json. With train.nproc_per_node > 1 it runs
itself again under torchrun (DDP); the children read the same resolved sections.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from golf.artifact.model.config import ModelConfig
from golf.train.config import TrainConfig
from stages.common import Timer, finish, stage_command


@stage_command(model_cfg="model", cfg="train")
def train(model_cfg: ModelConfig, cfg: TrainConfig,
          tokens: Annotated[Path, typer.Option(help="Tokenized shards (tokenize's output).")] = Path("data/tokens"),
          out: Annotated[Path, typer.Option(help="Checkpoint to write.")] = Path("artifacts/train/model.safetensors"),
          metrics: Annotated[Path, typer.Option(help="Metrics JSON to write.")] = Path("metrics/train.json"),
          plots: Annotated[Path, typer.Option(help="Per-step CSV to write.")] = Path("plots/train.csv")) -> None:
    """Train the model and save its EMA weights."""
    timer = Timer()
    from golf.artifact.runtime import launched_by_torchrun

    if cfg.nproc_per_node > 1 and not launched_by_torchrun():
        from golf.train.launch import relaunch

        relaunch(model_cfg, cfg, {"tokens": tokens, "out": out, "metrics": metrics, "plots": plots})
        return

    from golf.train.run import run_training

    values = run_training(model_cfg, cfg, tokens, out, plots, started=timer.t0)
    if values is not None:  # rank 0 writes the metrics
        finish("train", metrics, {**values, "wall_s": timer.s})


command = train

if __name__ == "__main__":  # the torchrun children: python -m stages.train --params <resolved> ...
    typer.run(command)
