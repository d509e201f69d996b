"""Run the enabled scoring modes of ttt_eval on one model and val stream.

plain always runs (the quantized non-sliding reference), then sliding (if enabled), then TTT
(if ttt_mode != none). The headline is chosen by configuration, not by outcome: the TTT score
if TTT ran, else sliding, else plain. Taking the minimum over passes would itself break C4
("no picking the best of several passes", docs/techniques.md §7.5).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from golf.artifact import sliding
from golf.artifact.scoring import as_numpy, check_inputs, check_sidecar
from golf.eval import lora_ttt, plain, ttt
from golf.eval.config import TttEvalConfig
from golf.eval.diagnostics import DiagTotals, paired_with_plain, plot_windows, window_table, word_classes


def run_modes(model: torch.nn.Module, val_tokens: Any, val_bytes: Any, luts: Any, bos_id: int,
              cfg: TttEvalConfig, device: torch.device, progress: bool = False) -> dict[str, Any]:
    """{"modes": {name: {result, eval_s, details, buckets, window, paired, words}}, "headline": name, ...}:
    buckets = BPB by val-stream span, window = by position in the window, paired = NLL minus plain's
    by plain window offset, words = by word class (golf/eval/diagnostics.py; {} without `luts`)."""
    tokens = as_numpy(val_tokens, "val tokens")
    vb = as_numpy(val_bytes, "val byte sidecar")
    total = len(tokens)
    if cfg.max_val_tokens:
        tokens, vb = tokens[: cfg.max_val_tokens], vb[: cfg.max_val_tokens]
    check_inputs(tokens, vb, cfg.seq_len)
    if luts is not None:
        check_sidecar(tokens, vb, luts)  # once, for the span every mode scores
    tokens, vb = np.ascontiguousarray(tokens), np.ascontiguousarray(vb)
    classes = word_classes(tokens, luts) if luts is not None else None
    out: dict[str, Any] = {}
    kept: dict[str, DiagTotals] = {}

    def timed(name: str, fn: Any) -> None:
        totals = kept[name] = DiagTotals(vb, len(tokens), cfg.position_buckets, cfg.seq_len, classes, keep_nll=True)
        t0 = time.perf_counter()
        got = fn(totals)
        res, details = got if isinstance(got, tuple) else (got, {})
        out[name] = {"result": res, "eval_s": round(time.perf_counter() - t0, 3), "details": details,
                     "buckets": totals.bucket_rows(), "window": totals.window_rows(),
                     "words": totals.class_stats()}

    timed("plain", lambda t: plain.evaluate(model, tokens, vb, cfg.seq_len, cfg.batch_seqs, device, totals=t,
                                            progress=progress))
    if cfg.sliding_enabled:
        timed("sliding", lambda t: sliding.evaluate(model, tokens, vb, cfg.seq_len, cfg.stride, cfg.batch_seqs, device,
                                                    totals=t, progress=progress))
    stride = cfg.stride if cfg.sliding_enabled else cfg.seq_len
    if cfg.ttt_mode == "chunk_sgd":
        timed("ttt", lambda t: ttt.evaluate(model, tokens, vb, cfg, stride=stride, device=device, totals=t,
                                            progress=progress))
    elif cfg.ttt_mode == "lora":
        timed("ttt", lambda t: lora_ttt.evaluate(model, tokens, vb, cfg, bos_id=bos_id, device=device, totals=t,
                                                 progress=progress))
    headline = "ttt" if "ttt" in out else "sliding" if "sliding" in out else "plain"
    for name in out:
        out[name]["paired"] = paired_with_plain(kept["plain"], kept[name], cfg.seq_len) if name != "plain" else []
    return {"modes": out, "headline": headline, "val_tokens_total": total, "val_tokens_used": len(tokens)}


def metrics_of(run: dict[str, Any]) -> dict[str, Any]:
    """The flat metrics of a run (measured numbers only)."""
    modes, head = run["modes"], run["modes"][run["headline"]]["result"]
    m: dict[str, Any] = {"val_bpb": head.bpb, "val_loss": head.loss, "headline_mode": run["headline"]}
    for name, r in modes.items():
        m[f"val_bpb_{name}"] = r["result"].bpb
    m.update({"tokens_scored": head.tokens, "bytes_scored": head.bytes,
              "val_tokens_total": run["val_tokens_total"], "val_tokens_used": run["val_tokens_used"]})
    for name, r in modes.items():  # word-start vs continuation (golf/eval/diagnostics.py)
        for cls in ("word_start", "continuation"):
            if cls in r["words"]:
                m[f"val_bpb_{cls}_{name}"] = r["words"][cls]["bpb"]
                m[f"val_loss_{cls}_{name}"] = r["words"][cls]["nll"]
    for cls, w in run["modes"][run["headline"]]["words"].items():  # the same tokens in every mode
        m[f"tokens_{cls}"], m[f"bytes_{cls}"] = w["tokens"], w["bytes"]
    for name, r in modes.items():
        m[f"eval_s_{name}"] = r["eval_s"]
        # scored val tokens per second of this mode (sliding runs more tokens through the model)
        m[f"tokens_per_s_{name}"] = round(r["result"].tokens / r["eval_s"], 1) if r["eval_s"] > 0 else 0.0
    return m


def score_artifact(cfg: TttEvalConfig, artifact: Path, tokens: Path, out: Path, plots: Path,
                   window_plots: Path, window_png: Path) -> dict[str, Any] | None:
    """The ttt_eval stage's work: the artifact alone, scored on val in every enabled mode; per-mode
    detail JSON under `out`, the headline's BPB by val-stream span at `plots`, every mode's NLL / BPB
    by window position at `window_plots` (CSV) and `window_png`. The metrics on rank 0, None on
    other ranks (torchrun: one process per GPU)."""
    from golf.artifact.runtime import init_dist, resolve_device
    from golf.data.tokens import TokenData
    from golf.eval.artifact import check_data, load_artifact_model
    from golf.io.atomic import atomic_write_text
    from golf.io.metrics import write_csv
    from golf.params import section_dict

    dctx, dev = init_dist(resolve_device(cfg.device, "ttt_eval.device"))
    data = TokenData(tokens)
    model, header = load_artifact_model(artifact, dev)
    check_data(artifact, header, data.manifest, data.val, model.cfg.vocab_size)
    try:
        run = run_modes(model, data.val, data.val_bytes, data.luts, data.bos_id, cfg, dev, progress=dctx.is_main)
    finally:
        if torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()
    if not dctx.is_main:
        return None
    for name, r in run["modes"].items():
        detail = {"mode": name, **r["result"].as_dict(), "eval_s": r["eval_s"], **r["details"],
                  "buckets": r["buckets"], "window": r["window"], "paired": r["paired"], "words": r["words"],
                  "ttt_eval": section_dict(cfg), "world_size": dctx.world_size}
        atomic_write_text(out / f"{name}.json", json.dumps(detail, indent=2) + "\n")
    write_csv(plots, run["modes"][run["headline"]]["buckets"])
    windows = {name: r["window"] for name, r in run["modes"].items()}
    paired = {name: r["paired"] for name, r in run["modes"].items()}
    write_csv(window_plots, window_table(windows, paired))
    overall = {name: r["result"].bpb for name, r in run["modes"].items()}
    plot_windows(window_png, windows, overall, cfg.seq_len, cfg.stride if cfg.sliding_enabled else cfg.seq_len, paired)
    return {**metrics_of(run), "world_size": dctx.world_size}


@dataclass(frozen=True)
class StageOutputs:
    """What the compliance verdict needs from the other stages' outputs: the clocks beside the checkpoint
    and the Hessians, the Hessians' header (each None when absent: a run by hand on an artifact alone)
    and the artifact's model + code bytes."""
    train_clock: dict[str, Any] | None
    hessian_header: dict[str, Any] | None
    hessian_clock: dict[str, Any] | None
    total_bytes: int | None
    missing: list[str]

    def verdict(self, eval_s: float, eval_world_size: int) -> dict[str, Any]:
        """golf/compliance.py's check as metrics: train and calibration times from the clocks, the
        calibration source from the Hessian header, this stage's seconds as the eval time."""
        from golf import compliance

        return compliance.from_artifacts(self.train_clock, self.hessian_header, self.hessian_clock, self.total_bytes,
                                         eval_s, eval_world_size).as_metrics()


def stage_outputs(checkpoint: Path, hessians: Path, artifact: Path) -> StageOutputs:
    """Read the clocks of train's checkpoint and of hessian-calibrate's output (golf/io/metrics.py
    `clock_path`: outputs of both stages in dvc.yaml and deps of ttt_eval, so the verdict never depends on
    metrics/timings/, which DVC does not track), the Hessians' header, and the artifact
    folder's bytes (golf/compress/run.py writes model.golf and train_gpt.py side by side)."""
    from golf.io.metrics import clock_path, read_clock
    from golf.io.tensors import read_header
    from golf.quant.hessian import FORMAT as H_FORMAT
    from golf.quant.hessian import VERSION as H_VERSION

    train_clock, hessian_clock = read_clock(checkpoint), read_clock(hessians)
    hessian_header = read_header(hessians, H_FORMAT, H_VERSION) if hessians.is_file() else None
    code = artifact.parent / "train_gpt.py"
    total = artifact.stat().st_size + code.stat().st_size if artifact.is_file() and code.is_file() else None
    missing = [str(clock_path(checkpoint))] * (train_clock is None)
    # an absent Hessians file is named once, not again as its absent clock
    missing += [str(hessians)] if hessian_header is None else [str(clock_path(hessians))] * (hessian_clock is None)
    return StageOutputs(train_clock, hessian_header, hessian_clock, total, missing)
