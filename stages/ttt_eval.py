"""ttt_eval: the score, from the compressed artifact alone: exact BPB, sliding windows, score-first TTT.

Reads artifacts/compress/model.golf (never the training checkpoint) and data/tokens (val + byte
sidecar + tokenizer), runs plain, sliding (if enabled) and TTT (if enabled), and writes
metrics/ttt_eval.json (val_bpb = the headline mode), plots/ttt_eval.csv (BPB by position in the
val stream) and artifacts/ttt_eval/<mode>.json. Under torchrun the ranks split windows / doc batches.
"""

from __future__ import annotations

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
    out: Annotated[Path, typer.Option(help="Folder for per-mode detail JSON.")] = Path("artifacts/ttt_eval"),
    metrics: Annotated[Path, typer.Option(help="Metrics JSON to write.")] = Path("metrics/ttt_eval.json"),
    plots: Annotated[Path, typer.Option(help="BPB-by-position CSV to write.")] = Path("plots/ttt_eval.csv"),
) -> None:
    """Score the artifact on the val split (plain, sliding, TTT)."""
    from golf.eval.run import score_artifact

    timer = Timer()
    values = score_artifact(cfg, artifact, tokens, out, plots)
    if values is not None:  # rank 0 writes the metrics
        finish("ttt_eval", metrics, {**values, "wall_s": timer.s})


command = ttt_eval
