"""The quantize stage's work: checkpoint + Hessians + val tokens -> qmodel, per-tensor report, metrics.

Every input is read and checked before GPTQ runs (the Hessians' checkpoint sha256, the val shards,
one eval window), and the outputs are written only after the last step succeeded, so a bad input
or a failed eval leaves no new file behind. The qmodel header records the checkpoint's sha256
(`checkpoint_sha256`), so prune_to_budget can refuse Hessians of another checkpoint too.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any, Callable

from golf.errors import GolfError
from golf.eval.settings import EvalConfig, same_as_checkpoint, val_prefix
from golf.quant.config import QuantizeConfig


def log_stderr(line: str) -> None:
    print(line, file=sys.stderr)


def load_hessians(path: Path, checkpoint_sha256: str, of: str) -> tuple[dict, dict]:
    """(Hessians, header), refused unless collected from the checkpoint with that sha256 (`of` names it)."""
    from golf.io.tensors import load_tensors
    from golf.quant import hessian

    H, header = load_tensors(path, hessian.FORMAT, hessian.VERSION)
    if header.get("model_sha256") != checkpoint_sha256:
        raise GolfError(f"{path}: collected from another checkpoint than {of} (rerun hessian-calibrate)")
    return H, header


def qat_grid_note(train: dict[str, Any], cfg: QuantizeConfig) -> str | None:
    """A line for stderr when the checkpoint was trained with late QAT (its header's train section,
    golf/train/qat.py) on another grid than some matrix group of quantize's plan; else None."""
    if not train.get("qat_start_frac"):
        return None
    qat = (train.get("qat_bits"), train.get("qat_clip_sigmas"))
    plan = {"matrix": (cfg.matrix_bits, cfg.clip_sigmas),
            "attn": (cfg.attn_bits or cfg.matrix_bits, cfg.attn_clip_sigmas or cfg.clip_sigmas),
            "mlp": (cfg.mlp_bits or cfg.matrix_bits, cfg.mlp_clip_sigmas or cfg.clip_sigmas)}
    other = [f"{g} {b} bits / {k} sigmas" for g, (b, k) in plan.items() if (b, k) != qat]
    if not other:
        return None
    return (f"golf quantize: the checkpoint trained with late QAT on a {qat[0]}-bit / {qat[1]}-sigma grid "
            f"(train.qat_bits / qat_clip_sigmas); quantize uses {', '.join(other)}")


def quantize_checkpoint(cfg: QuantizeConfig, ev: EvalConfig, checkpoint: Path, hessians: Path, tokens: Path,
                        out: Path, report: Path, log: Callable[[str], None] = log_stderr) -> dict[str, Any]:
    """Quantize, score the dequantized model on val, then write `out` and `report`; the metrics."""
    from golf.artifact.dequant import dequantize
    from golf.artifact.runtime import resolve_device
    from golf.data.tokens import TokenData
    from golf.eval.plain import evaluate
    from golf.io.atomic import atomic_write_text
    from golf.io.checkpoint import load_model
    from golf.quant import hessian, qmodel

    device = resolve_device(cfg.device, "quantize.device")
    model, header = load_model(checkpoint, str(device))
    sha = hessian.file_sha256(checkpoint)
    H, h_header = load_hessians(hessians, sha, str(checkpoint))
    val, val_bytes = val_prefix(TokenData(tokens), ev)
    same_as_train = same_as_checkpoint(ev, header)
    note = qat_grid_note(header.get("train", {}), cfg)
    if note:
        log(note)
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    t0 = time.perf_counter()
    tensors, q_header, rep = qmodel.quantize_state_dict(state, H, cfg, header, names=model.hessian_sites(),
                                                        progress=True, device=device)
    q_header["checkpoint_sha256"] = sha
    quantize_s = time.perf_counter() - t0

    def score() -> float:
        hessian.prepare_eval(model)
        return evaluate(model, val, val_bytes, ev.seq_len, ev.batch_seqs, device, progress=True).bpb

    if not same_as_train:
        log(f"golf quantize: eval (seq_len {ev.seq_len}, max_tokens {ev.max_tokens}) differs from the "
            "checkpoint's; evaluating the float model too")
    float_bpb = float(header["val_bpb"]) if same_as_train else score()
    model.load_state_dict({k: v.to(device) for k, v in dequantize(tensors, q_header).items()}, strict=True)
    t0 = time.perf_counter()
    val_bpb = score()
    eval_s = time.perf_counter() - t0
    qmodel.save_qmodel(out, tensors, q_header)
    atomic_write_text(report, json.dumps(rep, indent=1, sort_keys=True) + "\n")
    return {"val_bpb": val_bpb, "float_val_bpb": float_bpb, "quant_gap_bpb": val_bpb - float_bpb,
            "float_reevaluated": not same_as_train, "eval_seq_len": ev.seq_len, "eval_tokens": len(val),
            **rep["summary"], "hessian_tokens": int(h_header.get("tokens", 0)),
            "quantize_s": round(quantize_s, 3), "eval_s": round(eval_s, 3)}
