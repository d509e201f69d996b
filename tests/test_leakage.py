"""C1/C3: changing tokens after position p never changes the score of any token at or before p.

Run for plain, sliding, chunked-SGD TTT and doc-LoRA TTT (+ phased global SGD), each on a
stream and on the same stream with everything after p replaced (new BOS positions included).
A deliberately peeking TTT (trains on a chunk before scoring it) must fail the same check.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch
from toy_model import ToyLM

from golf.artifact import sliding
from golf.artifact.scoring import Totals
from golf.artifact.sliding import score_windows, window_plan
from golf.eval import lora_ttt, plain, ttt
from golf.eval.config import TttEvalConfig
from golf.params import load_section

BOS = 0
N = 160
SEQ = 24


def streams(p: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    a = rng.integers(1, 37, size=N).astype(np.uint16)
    a[rng.random(N) < 0.07] = BOS
    a[0] = BOS
    b = a.copy()
    b[p + 1:] = rng.integers(0, 37, size=N - p - 1)  # future tokens, BOS positions included
    vb = np.ones(N, dtype=np.uint16)
    return a, b, vb


def per_token(mode: str, tokens: np.ndarray, vb: np.ndarray) -> np.ndarray:
    model = ToyLM(seed=11)
    tot = Totals(vb, len(tokens), keep_tokens=True)
    if mode == "plain":
        plain.evaluate(model, tokens, vb, SEQ, 2, "cpu", totals=tot)
    elif mode == "sliding":
        sliding.evaluate(model, tokens, vb, SEQ, 5, 3, "cpu", totals=tot)
    elif mode == "chunk_sgd":
        ttt.evaluate(model, tokens, vb, ttt_cfg(seq_len=SEQ, batch_seqs=2, chunk_tokens=20, lr=0.05, momentum=0.9,
                                                epochs=2, grad_clip=1.0, param_filter=()),
                     stride=8, device="cpu", totals=tot)
    elif mode == "lora":
        lora_ttt.evaluate(model, tokens, vb, ttt_cfg(
            seq_len=SEQ, chunk_size=4, batch_docs=3, lora_rank=3, lora_alpha=6.0, lora_lr=0.05, beta1=0.0, beta2=0.99,
            eps=1e-10, weight_decay=0.5, phased_prefix_docs=6, phased_num_phases=2, global_lr=0.02,
            global_momentum=0.9, global_epochs=1, global_chunk_tokens=16, batch_seqs=2, grad_clip=1.0, seed=0),
            bos_id=BOS, device="cpu", totals=tot)
    elif mode == "peeking_chunk_sgd":
        peeking_chunk_sgd(model, tokens, tot)
    else:
        raise AssertionError(mode)
    assert tot.count[0] == 0 and (tot.count[1:] == 1).all(), f"{mode}: not every token scored exactly once"
    return tot.token_nll


def peeking_chunk_sgd(model: torch.nn.Module, tokens: np.ndarray, tot: Totals) -> None:
    """ILLEGAL on purpose: trains on each chunk *before* scoring it (breaks C3)."""
    params = list(model.parameters())
    opt = torch.optim.SGD(params, lr=0.05, momentum=0.9)
    plan = window_plan(len(tokens), SEQ, 8)
    chunk_of = plan[:, 1] // 20
    m = len(tokens) - 1
    for c in range(-(-m // 20)):
        ttt.train_span(model, params, opt, tokens, c * 20, min((c + 1) * 20, m), SEQ, 2, 1.0, torch.device("cpu"))
        score_windows(model, tokens, plan[chunk_of == c], SEQ, 2, torch.device("cpu"), tot)


def leaks(mode: str, p: int) -> bool:
    a, b, vb = streams(p)
    na, nb = per_token(mode, a, vb), per_token(mode, b, vb)
    assert not np.allclose(na[p + 1:], nb[p + 1:]), "the change after p should change later scores"
    return not np.allclose(na[1: p + 1], nb[1: p + 1], rtol=0, atol=1e-9)


@pytest.mark.parametrize("mode", ["plain", "sliding", "chunk_sgd", "lora"])
@pytest.mark.parametrize("p", [37, 90])
def test_future_tokens_never_change_earlier_scores(mode, p):
    assert not leaks(mode, p)


@pytest.mark.parametrize("p", [37, 90])
def test_the_leakage_check_catches_a_peeking_ttt(p):
    assert leaks("peeking_chunk_sgd", p)


def test_ttt_modes_actually_adapt():
    """Guard against a vacuous pass: the TTT scores differ from the frozen model's."""
    a, _, vb = streams(50)
    frozen = per_token("sliding", a, vb)
    for mode in ("chunk_sgd", "lora"):
        assert not np.allclose(per_token(mode, a, vb)[40:], frozen[40:]), mode


def ttt_cfg(**over) -> TttEvalConfig:
    """params.yaml's ttt_eval section with the test's settings."""
    base = load_section(Path(__file__).resolve().parents[1] / "params.yaml", "ttt_eval", TttEvalConfig)
    small = dataclasses.replace(base, stride=1, chunk_size=1, max_val_tokens=0)  # valid with any test seq_len
    return dataclasses.replace(small, **over)
