"""quantize: GPTQ (or RTN) with std clipping, per-group bit widths and LQER; dequantized val BPB.

Reads the checkpoint, its Hessians and data/tokens; writes artifacts/quantize/qmodel.safetensors
(golf.qmodel v1), artifacts/quantize/report.json (per-tensor detail) and metrics/quantize.json
(val_bpb of the dequantized model, quant_gap_bpb against the checkpoint, bytes, error stats).
Inputs are checked before GPTQ runs; outputs are written last (golf/quant/run.py).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from golf.eval.settings import EvalConfig
from golf.quant.config import QuantizeConfig
from stages.common import Timer, finish, stage_command


@stage_command(cfg="quantize", ev="eval")
def quantize(
    cfg: QuantizeConfig,
    ev: EvalConfig,
    checkpoint: Annotated[Path, typer.Option(help="Trained model (golf.artifact.model).")] = Path("artifacts/train/model.safetensors"),
    hessians: Annotated[Path, typer.Option(help="Hessians (golf.hessians).")] = Path("artifacts/hessian_calibrate/hessians.safetensors"),
    tokens: Annotated[Path, typer.Option(help="Tokenized data (val split for the eval).")] = Path("data/tokens"),
    out: Annotated[Path, typer.Option(help="Quantized model to write.")] = Path("artifacts/quantize/qmodel.safetensors"),
    report: Annotated[Path, typer.Option(help="Per-tensor report JSON.")] = Path("artifacts/quantize/report.json"),
    metrics: Annotated[Path, typer.Option(help="Metrics JSON.")] = Path("metrics/quantize.json"),
) -> None:
    """Quantize the checkpoint and score the dequantized model on val."""
    from golf.quant.run import quantize_checkpoint

    timer = Timer()
    values = quantize_checkpoint(cfg, ev, checkpoint, hessians, tokens, out, report)
    finish("quantize", metrics, {**values, "wall_s": timer.s})


command = quantize
