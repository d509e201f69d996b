"""The entry point of the bundled train_gpt.py: decode model.golf, dequantize, rebuild the GPT
from the header's model config, and score val with the sliding-window eval.

It runs the same library code as `golf ttt-eval` (golf.compress.bundle carries the modules), so
the script reproduces the stage's sliding-window BPB.
"""

from __future__ import annotations

import argparse
import os
import sys

import torch

from golf.artifact.container import decode
from golf.artifact.shards import load_split
from golf.artifact.sliding import evaluate
from golf.artifact.model.load import model_from_header
from golf.artifact.dequant import dequantize


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
    with open(a.artifact, "rb") as f:
        tensors, header = decode(f.read())
    model = model_from_header(header, dequantize(tensors, header), a.device, source=a.artifact)
    val, vb = load_split(a.tokens, "val"), load_split(a.tokens, "val_bytes")
    if a.max_tokens:
        val, vb = val[:a.max_tokens], vb[:a.max_tokens]
    res = evaluate(model, val, vb, a.seq_len, min(a.stride, a.seq_len), a.batch_seqs, a.device)
    out = {"val_loss": res.loss, "val_bpb": res.bpb, "tokens": res.tokens, "bytes": res.bytes}
    print(" ".join(f"{k}:{v}" for k, v in out.items()), file=sys.stdout)
    return out
