"""The entry point of the bundled train_gpt.py: decode model.golf, dequantize, rebuild the GPT
from the header's model config, and score val with the sliding-window eval.

Written against the contracts (golf.compress.container.decode, golf.quant.qmodel.dequantize,
golf.model GPT/ModelConfig, golf.data.shards.load_split, golf.eval.sliding.evaluate); it runs
both as a normal module and flattened into the bundle (its golf imports are stripped there).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import typing

import torch

from golf.compress.container import decode
from golf.data.shards import load_split
from golf.eval.sliding import evaluate
from golf.model.config import ModelConfig
from golf.model.gpt import GPT
from golf.quant.qmodel import dequantize


def _config(cls: type, values: dict) -> object:
    """A frozen config from JSON values (lists -> tuples; no golf.params / yaml in the bundle)."""
    hints = typing.get_type_hints(cls)
    kw = {f.name: tuple(values[f.name]) if typing.get_origin(hints[f.name]) is tuple else values[f.name]
          for f in dataclasses.fields(cls)}
    return cls(**kw)


def run_artifact(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description="Score the golf artifact on the val split.")
    p.add_argument("--artifact", default=os.environ.get("GOLF_ARTIFACT", "model.golf"))
    p.add_argument("--tokens", default=os.environ.get("GOLF_TOKENS", "data/tokens"))
    p.add_argument("--seq-len", type=int, default=0, help="0 = the model's train seq_len when recorded, else 2048")
    p.add_argument("--stride", type=int, default=64)
    p.add_argument("--batch-seqs", type=int, default=32)
    p.add_argument("--max-tokens", type=int, default=0, help="0 = whole val split")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    a = p.parse_args(argv)
    with open(a.artifact, "rb") as f:
        tensors, header = decode(f.read())
    cfg = _config(ModelConfig, header["model"])
    model = GPT(cfg)
    model.load_state_dict(dequantize(tensors, header), strict=True)
    model = model.to(a.device).eval()
    model.looping = getattr(cfg, "num_loops", 0) > 0
    seq_len = a.seq_len or int(header.get("quantize", {}).get("eval_seq_len", 0) or 2048)
    val, vb = load_split(a.tokens, "val"), load_split(a.tokens, "val_bytes")
    if a.max_tokens:
        val, vb = val[:a.max_tokens], vb[:a.max_tokens]
    res = evaluate(model, val, vb, seq_len, min(a.stride, seq_len), a.batch_seqs, a.device)
    out = {"val_loss": res.loss, "val_bpb": res.bpb, "tokens": res.tokens, "bytes": res.bytes}
    print(" ".join(f"{k}:{v}" for k, v in out.items()), file=sys.stdout)
    return out
