"""quantize: GPTQ (or RTN) with std clipping, per-group bit widths and LQER; dequantized val BPB.

Reads the checkpoint, its Hessians and data/tokens; writes artifacts/quantize/qmodel.safetensors
(golf.qmodel v1), artifacts/quantize/report.json (per-tensor detail) and metrics/quantize.json
(val_bpb of the dequantized model, quant_gap_bpb against the checkpoint, bytes, error stats).
"""

from __future__ import annotations

import json
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
    from golf.data.tokens import TokenData
    from golf.errors import GolfError
    from golf.eval.plain import evaluate
    from golf.io.atomic import atomic_write_text
    from golf.io.tensors import load_tensors
    from golf.io.checkpoint import load_model
    from golf.artifact.dequant import dequantize
    from golf.artifact.runtime import resolve_device
    from golf.quant import hessian, qmodel
    from golf.eval.settings import same_as_checkpoint

    timer = Timer()
    device = resolve_device(cfg.device, "quantize.device")
    model, header = load_model(checkpoint, str(device))
    H, h_header = load_tensors(hessians, hessian.FORMAT, hessian.VERSION)
    if h_header.get("model_sha256") != hessian.file_sha256(checkpoint):
        raise GolfError(f"{hessians}: collected from another checkpoint than {checkpoint} (rerun hessian-calibrate)")
    same_as_train = same_as_checkpoint(ev, header)
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    t_quant = Timer()
    tensors, q_header, rep = qmodel.quantize_state_dict(state, H, cfg, header, names=model.hessian_sites(),
                                                        progress=True, device=device)
    quantize_s = t_quant.s
    qmodel.save_qmodel(out, tensors, q_header)
    atomic_write_text(report, json.dumps(rep, indent=1, sort_keys=True) + "\n")

    data = TokenData(tokens)
    n = ev.max_tokens or len(data.val)
    val, val_bytes = data.val[:n], data.val_bytes[:n]

    def score() -> float:
        hessian.prepare_eval(model)
        return evaluate(model, val, val_bytes, ev.seq_len, ev.batch_seqs, device, progress=True).bpb

    if not same_as_train:
        typer.echo(f"golf quantize: eval (seq_len {ev.seq_len}, max_tokens {ev.max_tokens}) differs from the checkpoint's; evaluating the float model too", err=True)
    float_bpb = float(header["val_bpb"]) if same_as_train else score()
    model.load_state_dict({k: v.to(device) for k, v in dequantize(tensors, q_header).items()}, strict=True)
    t_eval = Timer()
    val_bpb = score()
    eval_s = t_eval.s
    s = rep["summary"]
    finish("quantize", metrics, {
        "val_bpb": val_bpb, "float_val_bpb": float_bpb, "quant_gap_bpb": val_bpb - float_bpb,
        "float_reevaluated": not same_as_train,
        "eval_seq_len": ev.seq_len, "eval_tokens": int(n), **s,
        "hessian_tokens": int(h_header.get("tokens", 0)), "quantize_s": quantize_s, "eval_s": eval_s,
        "wall_s": timer.s})


command = quantize
