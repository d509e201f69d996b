"""The entry point of the bundled train_gpt.py: decode model.golf, dequantize, rebuild the GPT
from the header's model config, cross-check the val byte sidecar (check_val_bytes), and score
val with the sliding-window eval.

It runs the same library code as `golf ttt-eval` (golf.compress.bundle carries the modules), so
the script reproduces the stage's sliding-window BPB. A damaged artifact or missing shards end it
with one line on stderr and exit status 1, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

import torch

from golf.artifact.bpb import manifest_luts
from golf.artifact.container import load_artifact
from golf.artifact.dequant import dequantize
from golf.artifact.model.load import model_from_header
from golf.artifact.scoring import check_sidecar
from golf.artifact.shards import load_split, load_val_bytes
from golf.artifact.sliding import evaluate
from golf.errors import GolfError


def load_model(path: Path, device: Any) -> tuple[torch.nn.Module, dict]:
    """(GPT on `device` in eval mode, header) from the artifact alone; GolfError naming `path`."""
    tensors, header = load_artifact(Path(path))
    try:
        state = dequantize(tensors, header)
    except GolfError as e:
        raise GolfError(f"{path}: {e}") from None
    return model_from_header(header, state, device, source=str(path)), header


def check_val_bytes(tokens: Path) -> tuple:
    """Val tokens + sidecar, cross-checked as ttt-eval does: the manifest's proven total, and
    token by token the tokenizer's rule (CaseOps: operators at 0) when the manifest names one."""
    try:
        manifest = json.loads((tokens / "manifest.json").read_text())
    except ValueError as e:
        raise GolfError(f"{tokens / 'manifest.json'}: not valid JSON ({e})") from None
    proven = manifest.get("splits", {}).get("val", {}).get("bytes")
    val, vb = load_split(tokens, "val"), load_val_bytes(tokens, proven)
    if manifest.get("val_bytes_rule", "lut"):
        import sentencepiece

        sp = sentencepiece.SentencePieceProcessor(model_file=str(tokens / "tokenizer.model"))
        check_sidecar(val, vb, manifest_luts(sp, manifest))
    return val, vb


def run_artifact(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description="Score the golf artifact on the val split.")
    p.add_argument("--artifact", default=os.environ.get("GOLF_ARTIFACT", "model.golf"))
    p.add_argument("--tokens", default=os.environ.get("GOLF_TOKENS", "data/tokens"))
    p.add_argument("--seq-len", type=int, default=2048, help="window length (ttt_eval.seq_len)")
    p.add_argument("--stride", type=int, default=64, help="scored tokens per window (ttt_eval.stride)")
    p.add_argument("--batch-seqs", type=int, default=32)
    p.add_argument("--max-tokens", type=int, default=0, help="0 = whole val split")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    a = p.parse_args(argv)
    model, _ = load_model(a.artifact, a.device)
    val, vb = check_val_bytes(Path(a.tokens))
    if a.max_tokens:
        val, vb = val[:a.max_tokens], vb[:a.max_tokens]
    res = evaluate(model, val, vb, a.seq_len, min(a.stride, a.seq_len), a.batch_seqs, a.device)
    out = {"val_loss": res.loss, "val_bpb": res.bpb, "tokens": res.tokens, "bytes": res.bytes}
    print(" ".join(f"{k}:{v}" for k, v in out.items()), file=sys.stdout)
    return out


def main(argv: list[str] | None = None) -> None:
    try:
        run_artifact(argv)
    except (GolfError, OSError) as e:
        print(f"train_gpt.py: error: {e}", file=sys.stderr)
        raise SystemExit(1) from None
