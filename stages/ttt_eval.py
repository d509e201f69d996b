"""ttt_eval: the score, from the compressed artifact alone: exact BPB, sliding windows, score-first TTT.

Reads artifacts/compress/model.golf (never the training checkpoint's weights) and data/tokens (val +
byte sidecar + tokenizer), runs plain, sliding (if enabled) and TTT (if enabled), and writes
metrics/ttt_eval.json (val_bpb = the headline mode, word-start vs continuation BPB per mode, the
compliance verdict), plots/ttt_eval.csv (the headline's BPB by span of the val stream),
plots/ttt_eval_window.{csv,png} (every mode's NLL and BPB by position in the window: docs/diagnostics.md)
and artifacts/ttt_eval/<mode>.json. Under torchrun the ranks split windows / doc batches.

The compliance verdict (golf/compliance.py) reads the clocks beside the checkpoint (train time, world
size) and the Hessians (calibration time), and the Hessians' header (calibration source): all inside
DVC deps of this stage, so it never depends on metrics/timings/, which DVC does not track.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from golf.eval.config import TttEvalConfig
from stages.common import Timer, finish, stage_command


@stage_command(cfg="ttt_eval")
def ttt_eval(
    cfg: TttEvalConfig,
    artifact: Annotated[Path, typer.Option(help="The compressed artifact (compress's output).")] = Path("artifacts/compress/model.golf"),
    tokens: Annotated[Path, typer.Option(help="Tokenized shards (tokenize's output).")] = Path("data/tokens"),
    checkpoint: Annotated[Path, typer.Option(help="Train's checkpoint: only its clock (train time, model.clock.json beside it) is read.")] = Path("artifacts/train/model.safetensors"),
    hessians: Annotated[Path, typer.Option(help="hessian-calibrate's output: only its header (source) and clock (time) are read.")] = Path("artifacts/hessian_calibrate/hessians.safetensors"),
    out: Annotated[Path, typer.Option(help="Folder for per-mode detail JSON.")] = Path("artifacts/ttt_eval"),
    metrics: Annotated[Path, typer.Option(help="Metrics JSON to write.")] = Path("metrics/ttt_eval.json"),
    plots: Annotated[Path, typer.Option(help="BPB-by-val-stream-span CSV to write.")] = Path("plots/ttt_eval.csv"),
    window_plots: Annotated[Path, typer.Option(help="NLL/BPB-by-window-position CSV to write.")] = Path("plots/ttt_eval_window.csv"),
    window_png: Annotated[Path, typer.Option(help="The same as a PNG plot.")] = Path("plots/ttt_eval_window.png"),
) -> None:
    """Score the artifact on the val split (plain, sliding, TTT)."""
    from golf.eval.run import score_artifact, stage_outputs

    timer = Timer()
    outputs = stage_outputs(checkpoint, hessians, artifact)  # read (and checked) before scoring
    values = score_artifact(cfg, artifact, tokens, out, plots, window_plots, window_png)
    if values is not None:  # rank 0 writes the metrics
        eval_s = timer.s
        finish("ttt_eval", metrics, {**values, **outputs.verdict(eval_s, values["world_size"]), "wall_s": eval_s})
        if outputs.missing:
            print(f"golf ttt-eval: {' and '.join(outputs.missing)} not found: left out of the compliance verdict",
                  file=sys.stderr)


command = ttt_eval
