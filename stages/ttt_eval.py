"""ttt_eval: the score, from the compressed artifact alone: exact BPB, sliding windows, score-first TTT.

Reads artifacts/compress/model.golf (never the training checkpoint) and data/tokens (val + byte
sidecar + tokenizer), runs plain, sliding (if enabled) and TTT (if enabled), and writes
metrics/ttt_eval.json (val_bpb = the headline mode), plots/ttt_eval.csv (BPB by position in the
val stream) and artifacts/ttt_eval/<mode>.json. Under torchrun the ranks split windows / doc batches.
"""

from __future__ import annotations

import json
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
    device: Annotated[str, typer.Option(help="cuda, cpu or auto (cuda when available).")] = "auto",
) -> None:
    """Score the artifact on the val split (plain, sliding, TTT)."""
    import torch

    from golf.artifact.runtime import init_dist, resolve_device
    from golf.data.tokens import TokenData
    from golf.eval.artifact import check_data, load_artifact_model
    from golf.eval.run import metrics_of, run_modes
    from golf.io.atomic import atomic_write_text
    from golf.io.metrics import write_csv
    from golf.params import section_dict

    timer = Timer()
    dctx, dev = init_dist(resolve_device(device, "--device (command line)"))
    rank, world = dctx.rank, dctx.world_size
    data = TokenData(tokens)
    model, header = load_artifact_model(artifact, dev)
    check_data(artifact, header, data.manifest, data.val, model.cfg.vocab_size)
    try:
        run = run_modes(model, data.val, data.val_bytes, data.luts, data.bos_id, cfg, dev, progress=rank == 0)
    finally:
        if torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()
    if rank != 0:
        return
    for name, r in run["modes"].items():
        detail = {"mode": name, **r["result"].as_dict(), "eval_s": r["eval_s"], **r["details"],
                  "buckets": r["buckets"], "ttt_eval": section_dict(cfg), "world_size": world}
        atomic_write_text(out / f"{name}.json", json.dumps(detail, indent=2) + "\n")
    write_csv(plots, run["modes"][run["headline"]]["buckets"])
    finish("ttt_eval", metrics, {**metrics_of(run), "world_size": world, "wall_s": timer.s})


command = ttt_eval
