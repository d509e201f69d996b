"""The sliding question on CPU: when can sliding-window eval score worse than plain eval?

A tiny golf GPT (params.yaml's `model` section, shrunk) is trained for a few AdamW steps on random
windows of `--seq-len` tokens of a synthetic stream of documents (each document draws its tokens from
its own small "topic" subset of the vocabulary, so context that identifies the topic helps), then
scored by ttt-eval's run_modes (plain + sliding, the same code as `golf ttt-eval`) at the training
seq_len. It prints both BPBs and plain's by-window-position table with sliding's paired difference
(golf/eval/diagnostics.py). docs/diagnostics.md reads it.

    python bench/sliding_positions.py --steps 0 30 300 --doc-mask
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import numpy as np
import torch

from golf.artifact.bpb import Luts
from golf.artifact.model.config import ModelConfig
from golf.artifact.model.gpt import GPT
from golf.eval.config import TttEvalConfig
from golf.eval.run import run_modes
from golf.params import load_section

PARAMS = Path(__file__).resolve().parents[1] / "params.yaml"
VOCAB, BOS = 256, 1


def topic_stream(n: int, seed: int, mean_doc: int) -> np.ndarray:
    """BOS-separated documents; each uses 24 tokens of the vocabulary, Zipf-like within them."""
    rng = np.random.default_rng(seed)
    out: list[np.ndarray] = []
    total = 0
    while total < n:
        length = 2 + int(rng.exponential(mean_doc))
        topic = rng.choice(np.arange(2, VOCAB), 24, replace=False)
        p = 1.0 / np.arange(1, 25)
        doc = rng.choice(topic, length, p=p / p.sum())
        out.append(np.concatenate([[BOS], doc]))
        total += length + 1
    return np.concatenate(out)[:n].astype(np.uint16)


def luts() -> Luts:
    ids = np.arange(VOCAB)
    return Luts(base_bytes=np.where(ids == BOS, 0, 1 + ids % 3).astype(np.int16),
                has_leading_space=ids % 4 == 0, is_boundary=ids == BOS)


def train(model: GPT, tokens: np.ndarray, steps: int, seq_len: int, batch: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.0)
    model.train()
    for _ in range(steps):
        starts = rng.integers(0, len(tokens) - seq_len - 1, batch)
        xy = torch.from_numpy(np.stack([tokens[s: s + seq_len + 1] for s in starts]).astype(np.int64))
        loss, _ = model.train_loss(xy[:, :-1], xy[:, 1:])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, nargs="+", default=[0, 30, 300])
    ap.add_argument("--seq-len", type=int, default=128)
    ap.add_argument("--stride", type=int, default=16)
    ap.add_argument("--mean-doc", type=int, default=200)
    ap.add_argument("--doc-mask", action="store_true")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    torch.set_num_threads(1)
    cfg = load_section(PARAMS, "model", ModelConfig, dict(
        vocab_size=VOCAB, bos_id=BOS, num_layers=4, model_dim=64, num_heads=4, num_kv_heads=2, xsa_last_n=4,
        loop_start=1, loop_end=1, num_loops=0, parallel_start_layer=3, ve_layers=[], ve_dim=0))
    cfg = dataclasses.replace(cfg, doc_masked_attention=a.doc_mask)
    ecfg = load_section(PARAMS, "ttt_eval", TttEvalConfig, dict(
        seq_len=a.seq_len, stride=a.stride, batch_seqs=8, max_val_tokens=0, device="cpu", ttt_mode="none",
        position_buckets=a.seq_len // a.stride * 2, sliding_enabled=True, chunk_size=min(32, a.seq_len)))
    train_tok, val = topic_stream(400_000, a.seed, a.mean_doc), topic_stream(24_000, a.seed + 1, a.mean_doc)
    lut = luts()
    from golf.artifact.bpb import sidecar

    vb = sidecar(val, lut, BOS)
    torch.manual_seed(a.seed)
    model = GPT(cfg)
    done = 0
    print(f"seq_len {a.seq_len}, stride {a.stride}, doc mask {a.doc_mask}, mean doc {a.mean_doc} tokens")
    for steps in sorted(a.steps):
        train(model, train_tok, steps - done, a.seq_len, 16, a.seed + steps)
        done = steps
        run = run_modes(model, val, vb, lut, BOS, ecfg, torch.device("cpu"))
        p, s = run["modes"]["plain"], run["modes"]["sliding"]
        print(f"\nsteps {steps}: plain {p['result'].bpb:.4f}  sliding {s['result'].bpb:.4f}  "
              f"(sliding - plain {s['result'].bpb - p['result'].bpb:+.4f}); word_start / continuation BPB, plain "
              f"{p['words']['word_start']['bpb']:.4f} / {p['words']['continuation']['bpb']:.4f}")
        print("  offset  plain_nll  plain_bpb  sliding-plain nll (same tokens, by plain offset)  share of the BPB gap")
        pair = {r["position"]: r for r in s["paired"]}
        for r in p["window"]:
            q = pair[r["position"]]
            print(f"  {r['position']:6d}  {r['nll']:9.4f}  {r['bpb']:9.4f}  {q['dnll']:+10.4f}  {q['dbpb_share']:+10.5f}")

if __name__ == "__main__":
    main()
