"""golf.eval plain + sliding: exact BPB accounting, the window plan, errors (CPU, seconds)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from toy_model import ToyLM

from golf.artifact import sliding
from golf.artifact.scoring import Totals, check_sidecar
from golf.artifact.sliding import window_plan
from golf.errors import GolfError
from golf.eval import plain


def stream(n: int, vocab: int = 37, seed: int = 1, bos: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A val stream with BOS every few tokens and a synthetic sidecar (BOS = 0 bytes)."""
    rng = np.random.default_rng(seed)
    tok = rng.integers(1, vocab, size=n).astype(np.uint16)
    tok[rng.random(n) < 0.08] = bos
    tok[0] = bos
    vb = rng.integers(1, 5, size=n).astype(np.uint16)
    vb[tok == bos] = 0
    return tok, vb


class Uniform(torch.nn.Module):
    """Predicts the uniform distribution over V tokens: NLL = ln V everywhere."""

    def __init__(self, vocab: int):
        super().__init__()
        self.vocab = vocab
        self.w = torch.nn.Parameter(torch.zeros(1))

    def nll(self, idx, targets, adapter=None):
        logits = torch.zeros(*idx.shape, self.vocab) + self.w
        return torch.nn.functional.cross_entropy(logits.flatten(0, 1), targets.flatten(), reduction="none").view(targets.shape)


def coverage(n: int, seq_len: int, stride: int) -> np.ndarray:
    cnt = np.zeros(max(n - 1, 0), dtype=np.int64)
    for ws, a, b in window_plan(n, seq_len, stride):
        assert ws <= a < b <= min(ws + seq_len, n - 1)
        assert a == ws or b - a <= stride  # the first window scores all, later ones their last S
        assert a == ws or a - ws >= seq_len - stride  # context >= L - S
        cnt[a:b] += 1
    return cnt


def test_window_plan_scores_every_target_exactly_once():
    for n in list(range(1, 40)) + [97, 128, 129, 130, 1000, 1025]:
        for seq_len in (1, 2, 3, 5, 8, 16, 33):
            for stride in sorted({s for s in (1, 2, 3, seq_len // 2, seq_len - 1, seq_len) if 1 <= s <= seq_len}):
                cnt = coverage(n, seq_len, stride)
                assert (cnt == 1).all(), (n, seq_len, stride)


def test_window_plan_matches_the_records_rule():
    # starts 0, S, 2S, ... kept while ws + L - S < M (M = N - 1 targets)
    n, seq_len, stride = 1000, 64, 16
    plan = window_plan(n, seq_len, stride)
    want = [ws for ws in range(0, n, stride) if ws == 0 or ws + seq_len - stride < n - 1]
    assert plan[:, 0].tolist() == want


def test_window_plan_rejects_bad_stride():
    with pytest.raises(ValueError):
        window_plan(100, 8, 9)
    with pytest.raises(ValueError):
        window_plan(100, 8, 0)


@pytest.mark.parametrize("n,seq_len", [(200, 16), (201, 16), (217, 16), (65, 8)])
def test_plain_scores_every_token_after_the_first_once(n, seq_len):
    model = ToyLM()
    tok, vb = stream(n)
    tot = Totals(vb, n, keep_tokens=True)
    res = plain.evaluate(model, tok, vb, seq_len, 3, "cpu", totals=tot)
    assert tot.count[0] == 0 and (tot.count[1:] == 1).all()
    assert res.tokens == n - 1
    assert res.bytes == int(vb[1:].sum())
    assert res.loss == pytest.approx(np.nansum(tot.token_nll) / (n - 1), rel=1e-12)
    assert res.bpb == pytest.approx(np.nansum(tot.token_nll) / (math.log(2) * vb[1:].sum()), rel=1e-12)


def test_plain_equals_sliding_with_stride_equal_seq_len():
    model = ToyLM(seed=3)
    tok, vb = stream(301, seed=4)
    a = plain.evaluate(model, tok, vb, 24, 4, "cpu")
    assert a == sliding.evaluate(model, tok, vb, 24, 24, 4, "cpu")
    b = sliding.evaluate(model, tok, vb, 24, 24, 2, "cpu")
    assert (a.tokens, a.bytes) == (b.tokens, b.bytes)
    assert a.bpb == pytest.approx(b.bpb, rel=1e-12)


def test_sliding_scores_each_token_once_and_batching_does_not_matter():
    model = ToyLM(seed=5)
    tok, vb = stream(250, seed=6)
    t1 = Totals(vb, len(tok), keep_tokens=True)
    r1 = sliding.evaluate(model, tok, vb, 32, 8, 1, "cpu", totals=t1)
    t2 = Totals(vb, len(tok), keep_tokens=True)
    r2 = sliding.evaluate(model, tok, vb, 32, 8, 7, "cpu", totals=t2)
    assert (t1.count[1:] == 1).all() and (t2.count[1:] == 1).all()
    np.testing.assert_allclose(t1.token_nll[1:], t2.token_nll[1:], rtol=1e-10)
    assert r1.bpb == pytest.approx(r2.bpb, rel=1e-10)
    # each scored token sees exactly the context the plan promises: recompute a few by hand
    with torch.no_grad():
        for t in (1, 31, 32, 33, 100, 249):
            ws = max(0, (t - 1 - 32) // 8 + 1) * 8 if t - 1 >= 32 else 0
            x = torch.from_numpy(tok[ws:t].astype(np.int64))[None]
            y = torch.from_numpy(tok[ws + 1:t + 1].astype(np.int64))[None]
            assert model.nll(x, y)[0, -1].item() == pytest.approx(t1.token_nll[t], rel=1e-9), t


def test_sliding_beats_plain_on_a_model_that_uses_context():
    # sanity, not a strict law: more context per token should not hurt a fixed random model much
    model = ToyLM(seed=7)
    tok, vb = stream(400, seed=8)
    p = plain.evaluate(model, tok, vb, 32, 4, "cpu")
    s = sliding.evaluate(model, tok, vb, 32, 4, 4, "cpu")
    assert p.tokens == s.tokens and p.bytes == s.bytes


def test_uniform_model_bpb_is_closed_form():
    vocab = 29
    tok, vb = stream(513, vocab=vocab, seed=9)
    res = plain.evaluate(Uniform(vocab), tok, vb, 64, 3, "cpu")
    want = math.log2(vocab) * (len(tok) - 1) / int(vb[1:].sum())
    assert res.bpb == pytest.approx(want, rel=1e-6)
    assert res.loss == pytest.approx(math.log(vocab), rel=1e-6)
    res = sliding.evaluate(Uniform(vocab), tok, vb, 64, 16, 3, "cpu")
    assert res.bpb == pytest.approx(want, rel=1e-6)


def test_byte_denominator_is_the_raw_text_bytes():
    """A byte-level 'tokenizer' built in-process: each token is one UTF-8 byte, BOS costs 0."""
    docs = ["héllo wörld", "naïve café — ok", "plain ascii text", "日本語"]
    bos = 256
    tok, vb = [], []
    for d in docs:
        raw = d.encode("utf-8")
        tok += [bos] + list(raw)
        vb += [0] + [1] * len(raw)
    tok, vb = np.array(tok, dtype=np.uint16), np.array(vb, dtype=np.uint16)
    res = plain.evaluate(Uniform(257), tok, vb, 8, 2, "cpu")
    assert res.bytes == sum(len(d.encode("utf-8")) for d in docs)
    assert res.tokens == len(tok) - 1  # BOS of docs 2.. are scored (0 bytes), as in the records


def test_sidecar_cross_check_against_the_lut_rule():
    from golf.artifact.bpb import Luts, sidecar

    v = 37
    luts = Luts(base_bytes=np.arange(v, dtype=np.int16) % 4, has_leading_space=np.arange(v) % 3 == 1,
                is_boundary=np.arange(v) == 0)
    tok, _ = stream(300, vocab=v, seed=10)
    vb = sidecar(tok, luts, 0)
    assert check_sidecar(tok, vb, luts) == int(vb[1:].sum())
    res = plain.evaluate(Uniform(v), tok, vb, 32, 4, "cpu", luts=luts)
    assert res.bytes == int(vb[1:].sum())
    bad = vb.copy()
    bad[57] += 1
    with pytest.raises(GolfError, match="does not match the tokenizer"):
        plain.evaluate(Uniform(v), tok, bad, 32, 4, "cpu", luts=luts)


def test_errors_for_bad_inputs():
    model = ToyLM()
    tok, vb = stream(40)
    with pytest.raises(GolfError, match="shorter than one window"):
        plain.evaluate(model, tok, vb, 64, 2, "cpu")
    with pytest.raises(GolfError, match="sidecar"):
        plain.evaluate(model, tok, vb[:30], 8, 2, "cpu")
    with pytest.raises(GolfError, match="0 bytes"):
        plain.evaluate(model, tok, np.zeros_like(vb), 8, 2, "cpu")
    with pytest.raises(GolfError, match="1-D"):
        plain.evaluate(model, tok.reshape(4, 10), vb, 8, 2, "cpu")
    with pytest.raises(ValueError):
        sliding.evaluate(model, tok, vb, 8, 9, 2, "cpu")
