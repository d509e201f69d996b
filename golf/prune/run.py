"""The prune_to_budget stage's work: qmodel -> the pruned qmodel that fits the budget, and its val BPB.

Every input is checked before the first compressor probe: a budget the code alone cannot fit
(golf/prune/budget.py), Hessians collected from another checkpoint than the one the qmodel was
quantized from (the qmodel header's checkpoint_sha256, golf/quant/run.py), the val shards and one
eval window. The pruned qmodel is written last, after its eval.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Callable

from golf.compress.config import CompressConfig
from golf.errors import GolfError
from golf.eval.settings import EvalConfig, val_prefix
from golf.prune.config import PruneConfig
from golf.quant.run import load_hessians, log_stderr


def _hessians(cfg: PruneConfig, path: Path, header: dict, qmodel: Path) -> dict | None:
    if not (cfg.hessian_weighted or cfg.method == "hessian_two_four"):
        return None
    sha = header.get("checkpoint_sha256")
    if not isinstance(sha, str):
        raise GolfError(f"{qmodel}: no checkpoint_sha256 in its header to check the Hessians against (rerun quantize)")
    return load_hessians(path, sha, f"the checkpoint {qmodel} was quantized from")[0]


def _score(cfg: PruneConfig, ev: EvalConfig, tensors: dict, header: dict, val: Any, val_bytes: Any) -> float:
    """Plain val BPB of the pruned, dequantized model."""
    from golf.artifact.dequant import dequantize
    from golf.artifact.model.load import model_from_header
    from golf.artifact.runtime import resolve_device
    from golf.eval.plain import evaluate
    from golf.quant.hessian import prepare_eval

    device = resolve_device(cfg.device, "prune_to_budget.device")
    model = prepare_eval(model_from_header(header, dequantize(tensors, header), device, source="pruned qmodel"))
    return evaluate(model, val, val_bytes, ev.seq_len, ev.batch_seqs, device, progress=True).bpb


def prune_qmodel(cfg: PruneConfig, ccfg: CompressConfig, ev: EvalConfig, qmodel: Path, hessians: Path, tokens: Path,
                 out: Path, log: Callable[[str], None] = log_stderr) -> dict[str, Any]:
    """Prune, score, then write `out`; the metrics."""
    from golf.compress import bundle, container
    from golf.data.tokens import TokenData
    from golf.prune.budget import check_budget, prune_to_budget
    from golf.quant.qmodel import load_qmodel, save_qmodel

    tensors, header = load_qmodel(qmodel)
    code_bytes = bundle.code_bytes(bundle.build_script())
    check_budget(cfg, code_bytes)
    H = _hessians(cfg, hessians, header, qmodel)
    val = val_prefix(TokenData(tokens), ev) if cfg.eval_enabled else None
    cache: dict = {}
    pruned, new_header, rep = prune_to_budget(tensors, header, cfg, code_bytes,
                                              lambda t, h: len(container.encode(t, h, ccfg, cache)), H,
                                              log=lambda line: log(f"golf prune-to-budget: {line}"))
    val_bpb = _score(cfg, ev, pruned, new_header, *val) if val else math.nan
    save_qmodel(out, pruned, new_header)
    return {"values_zeroed": rep.values_zeroed, "selective_zeroed": rep.selective_zeroed,
            "rule_zeroed": rep.rule_zeroed, "candidates": rep.candidates, "bytes_before": rep.bytes_before,
            "bytes_after": rep.bytes_after, "code_bytes": code_bytes, "budget_bytes": cfg.budget_bytes,
            "probes": rep.probes, "val_bpb": val_bpb}
