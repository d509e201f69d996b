"""prune_to_budget: zero the cheapest ±1 codes until code + compressed model fit the byte budget.

Reads artifacts/quantize/qmodel.safetensors (and the Hessians when a Hessian-weighted rule asks),
probes sizes with the exact `compress` config and the real code bundle, writes the pruned qmodel
(header adds `prune_to_budget` decisions) and scores it on val.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from golf.compress.config import CompressConfig
from golf.eval.settings import EvalConfig
from golf.prune.config import PruneConfig
from stages.common import Timer, finish, stage_command


@stage_command(cfg="prune_to_budget", compress_cfg="compress", ev="eval")
def prune_to_budget(
    cfg: PruneConfig,
    compress_cfg: CompressConfig,
    ev: EvalConfig,
    qmodel: Annotated[Path, typer.Option(help="Quantized model (golf.qmodel).")] = Path("artifacts/quantize/qmodel.safetensors"),
    hessians: Annotated[Path, typer.Option(help="Hessians, for hessian_weighted / hessian_two_four.")] = Path("artifacts/hessian_calibrate/hessians.safetensors"),
    tokens: Annotated[Path, typer.Option(help="Tokenized data (val split for the eval).")] = Path("data/tokens"),
    out: Annotated[Path, typer.Option(help="Pruned quantized model to write.")] = Path("artifacts/prune_to_budget/qmodel.safetensors"),
    metrics: Annotated[Path, typer.Option(help="Metrics JSON.")] = Path("metrics/prune_to_budget.json"),
) -> None:
    """Prune the fewest codes that make code + compressed model fit the budget."""
    from golf.compress import bundle, container
    from golf.io.tensors import load_tensors
    from golf.prune.budget import prune_to_budget as fit
    from golf.quant import qmodel as qm

    timer = Timer()
    tensors, header = qm.load_qmodel(qmodel)
    H = None
    if cfg.hessian_weighted or cfg.method == "hessian_two_four":
        from golf.quant.hessian import FORMAT, VERSION
        H, _ = load_tensors(hessians, FORMAT, VERSION)
    code_bytes = bundle.code_bytes(bundle.build_script())
    cache: dict = {}
    pruned, new_header, rep = fit(tensors, header, cfg, code_bytes,
                                  lambda t, h: len(container.encode(t, h, compress_cfg, cache)), H,
                                  log=lambda line: typer.echo(f"golf prune-to-budget: {line}", err=True))
    qm.save_qmodel(out, pruned, new_header)
    val_bpb = _eval(cfg, ev, pruned, new_header, tokens) if cfg.eval_enabled else float("nan")
    finish("prune_to_budget", metrics, {
        "values_zeroed": rep.values_zeroed, "selective_zeroed": rep.selective_zeroed, "rule_zeroed": rep.rule_zeroed,
        "candidates": rep.candidates, "bytes_before": rep.bytes_before, "bytes_after": rep.bytes_after,
        "code_bytes": code_bytes, "budget_bytes": cfg.budget_bytes, "probes": rep.probes,
        "val_bpb": val_bpb, "wall_s": timer.s})


def _eval(cfg: PruneConfig, ev: EvalConfig, tensors: dict, header: dict, tokens: Path) -> float:
    """Plain val BPB of the pruned, dequantized model."""
    from golf.data.tokens import TokenData
    from golf.eval.plain import evaluate
    from golf.artifact.model.load import model_from_header
    from golf.artifact.runtime import resolve_device
    from golf.quant.hessian import prepare_eval
    from golf.artifact.dequant import dequantize

    device = resolve_device(cfg.device, "prune_to_budget.device")
    model = model_from_header(header, dequantize(tensors, header), device, source="pruned qmodel")
    prepare_eval(model)
    data = TokenData(tokens)
    n = ev.max_tokens or len(data.val)
    return evaluate(model, data.val[:n], data.val_bytes[:n], ev.seq_len, ev.batch_seqs, device,
                    progress=True).bpb


command = prune_to_budget
