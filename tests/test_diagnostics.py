"""ttt-eval diagnostics and the sliding question (issue 20 parts 4-5), CPU, seconds.

The window plan's context per token, plain vs sliding under document masking with the real GPT, the
by-window-position and word-class sums, their CSV / PNG, and the compliance verdict from headers.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
import pytest
import test_ttt
import torch
from test_eval import stream
from toy_model import ToyLM

from golf import compliance
from golf.artifact import sliding
from golf.artifact.bpb import Luts, sidecar
from golf.artifact.model import GPT
from golf.artifact.scoring import Totals
from golf.artifact.sliding import window_plan
from golf.eval import plain
from golf.eval.config import TttEvalConfig
from golf.eval.diagnostics import DiagTotals, plot_windows, window_table, word_classes
from golf.eval.run import run_modes
from golf.params import load_section

PARAMS = Path(__file__).resolve().parents[1] / "params.yaml"
tokens_dir = test_ttt.tokens_dir  # its val shards + tokenizer (a module-scoped fixture)


def window_start_of(n: int, seq_len: int, stride: int) -> np.ndarray:
    """For each target t (1..n-1), the start of the window that scores it (-1 at t = 0)."""
    ws = np.full(n, -1)
    for w, a, b in window_plan(n, seq_len, stride):
        ws[a + 1: b + 1] = w
    return ws


@pytest.mark.parametrize("n,seq_len,stride", [(200, 16, 4), (201, 16, 1), (97, 8, 3), (333, 32, 32), (64, 16, 5)])
def test_sliding_context_is_at_least_plains_up_to_seq_len_minus_stride(n, seq_len, stride):
    """Not ">= plain's" token by token: a token near the end of a plain window sees up to L inputs
    there, and L - S + 1 .. L in sliding. What holds: min(plain's, L - S + 1) <= sliding's <= L, and
    sliding's mean context is the larger (docs/diagnostics.md)."""
    s, p = window_start_of(n, seq_len, stride), window_start_of(n, seq_len, seq_len)
    assert (s[1:] >= 0).all() and (p[1:] >= 0).all()
    context_s, context_p = (np.arange(n) - s)[1:], (np.arange(n) - p)[1:]  # inputs the prediction of t sees
    assert (context_s >= np.minimum(context_p, seq_len - stride + 1)).all()
    assert (context_s <= seq_len).all()
    assert context_s.mean() >= context_p.mean()
    assert (context_s == context_p).all() == (stride == seq_len or n - 1 <= seq_len)


def doc_start_of(tok: np.ndarray, bos: int) -> np.ndarray:
    """For each position, the index of the last BOS at or before it (0 if none)."""
    idx = np.where(tok == bos, np.arange(len(tok)), 0)
    return np.maximum.accumulate(idx)


def test_under_doc_masking_sliding_equals_plain_where_the_document_fits_both_windows(tiny_model_config):
    torch.manual_seed(0)
    cfg = dataclasses.replace(tiny_model_config, doc_masked_attention=True)
    model = GPT(cfg).double()
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for prm in model.parameters():
            prm.add_(0.2 * torch.randn(prm.shape, generator=gen, dtype=prm.dtype))
    model.looping = True  # as every later stage runs it (golf/artifact/model/load.py)
    n, seq_len, stride = 300, 32, 8
    rng = np.random.default_rng(2)
    tok = rng.integers(2, cfg.vocab_size, n).astype(np.uint16)
    tok[rng.random(n) < 0.06] = cfg.bos_id
    tok[0] = cfg.bos_id
    vb = np.where(tok == cfg.bos_id, 0, 2).astype(np.uint16)
    tp, ts = Totals(vb, n, keep_tokens=True), Totals(vb, n, keep_tokens=True)
    plain.evaluate(model, tok, vb, seq_len, 4, "cpu", totals=tp)
    sliding.evaluate(model, tok, vb, seq_len, stride, 4, "cpu", totals=ts)
    # the prediction of target t reads inputs up to t-1; its document starts at the last BOS <= t-1
    doc = doc_start_of(tok, cfg.bos_id)[np.arange(n) - 1]
    fits = (doc >= window_start_of(n, seq_len, stride)) & (doc >= window_start_of(n, seq_len, seq_len))
    fits[0] = False
    assert fits.sum() > n // 2  # the property is tested on most tokens
    np.testing.assert_allclose(ts.token_nll[fits], tp.token_nll[fits], rtol=1e-9, atol=1e-12)
    # and where plain cut the document, sliding saw more of it: the NLLs differ
    assert not np.allclose(ts.token_nll[~fits][1:], tp.token_nll[~fits][1:])


def luts_for(vocab: int) -> Luts:
    ids = np.arange(vocab)
    return Luts(base_bytes=np.where(ids == 0, 0, ids % 4 + 1).astype(np.int16), has_leading_space=ids % 3 == 1, is_boundary=ids == 0)


def test_word_classes_follow_the_lut_flags():
    luts = luts_for(10)
    tok = np.array([0, 1, 2, 4, 0, 2, 3, 7, 0, 0])
    # 1: ▁ piece; 2 after 1: continuation; 4: ▁; 0: boundary; 2 after BOS: word start; 3: cont; 7: ▁
    assert word_classes(tok, luts).tolist() == [2, 0, 1, 0, 2, 0, 1, 0, 2, 2]


@pytest.mark.parametrize("stride", [16, 5])
def test_window_and_class_sums_partition_the_score(stride):
    vocab, n, seq_len = 37, 260, 16
    luts = luts_for(vocab)
    tok, _ = stream(n, vocab=vocab, seed=3)
    vb = sidecar(tok, luts, 0)
    classes = word_classes(tok, luts)
    tot = DiagTotals(vb, n, 4, seq_len, classes, keep_tokens=True)
    res = sliding.evaluate(ToyLM(seed=2), tok, vb, seq_len, stride, 3, "cpu", totals=tot)
    rows = tot.window_rows()
    assert [r["position"] for r in rows] == [0, 4, 8, 12]
    assert sum(r["tokens"] for r in rows) == res.tokens
    assert sum(r["nll"] * r["tokens"] for r in rows) == pytest.approx(res.loss * res.tokens, rel=1e-12)
    # plain: every offset once per full window; sliding: offsets below L - S only in the first window
    full = (n - 1) // seq_len
    low = [r["tokens"] for r in rows if r["position"] + 4 <= seq_len - stride]
    assert all(t == (4 * full if stride == seq_len else 4) for t in low)
    words = tot.class_stats()
    assert sum(w["tokens"] for w in words.values()) == res.tokens
    assert sum(w["bytes"] for w in words.values()) == res.bytes
    for i, name in enumerate(("word_start", "continuation", "boundary")):
        sel = classes == i
        sel[0] = False
        assert words[name]["tokens"] == int(sel.sum())
        if sel.any():
            assert words[name]["nll"] == pytest.approx(np.mean(tot.token_nll[sel]), rel=1e-12)
    assert words["boundary"]["bytes"] == 0 and words["boundary"]["bpb"] is None
    assert words["word_start"]["bpb"] == pytest.approx(
        words["word_start"]["nll"] * words["word_start"]["tokens"] / (math.log(2) * words["word_start"]["bytes"]))


def test_a_mode_without_window_positions_gets_no_rows():
    vb = np.ones(20, dtype=np.uint16)
    tot = DiagTotals(vb, 20, 4, 8)
    tot.add(torch.arange(1, 10), torch.ones(9), torch.arange(9) % 8)
    tot.add(torch.arange(10, 12), torch.ones(2))
    assert tot.window_rows() == [] and tot.class_stats() == {}


def test_window_csv_and_png(tmp_path):
    windows = {"plain": [{"position": 0, "tokens": 5, "nll": 3.0, "bpb": 1.5},
                         {"position": 8, "tokens": 5, "nll": 2.0, "bpb": 1.0}],
               "sliding": [{"position": 8, "tokens": 9, "nll": 2.1, "bpb": 1.1}], "ttt": []}
    table = window_table(windows)
    assert [r["position"] for r in table] == [0, 8]
    assert table[0]["tokens_sliding"] == 0 and table[0]["bpb_sliding"] == ""
    assert table[0]["bpb_ttt"] == "" and table[0]["dnll_ttt"] == "" and table[1]["bpb_sliding"] == 1.1
    png = tmp_path / "w.png"
    plot_windows(png, windows, {"plain": 1.25, "sliding": 1.1}, 16, 8)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_compliance_from_the_clocks_and_the_hessian_header():
    clock = {"train_s": 590.0, "world_size": 8}
    train, calib = {"source": "train"}, {"collect_s": 20.0}
    v = compliance.from_artifacts(clock, train, calib, 15_000_000, 120.0, 8)
    assert (v.train_s, v.calibration_s, v.fits_train, v.fits_eval, v.fits_bytes, v.fits) == \
        (610.0, 20.0, False, True, True, False)
    m = v.as_metrics()
    assert m["compliance_train_world_size"] == 8 and m["compliance_fits"] is False
    own = compliance.from_artifacts(clock, {"source": "self_generated"}, calib, 15_000_000, 120.0, 8)
    assert (own.train_s, own.fits) == (590.0, True)
    big = compliance.from_artifacts(clock, train, {"collect_s": 1.0}, 16_000_001, 700.0, 1)
    assert (big.fits_train, big.fits_eval, big.fits_bytes) == (True, False, False)
    unknown = compliance.from_artifacts(None, None, None, 100, 1.0, 1)
    assert unknown.train_s is None and unknown.fits_train is None and unknown.fits is None
    assert "compliance_train_s" not in unknown.as_metrics()


@pytest.mark.parametrize("stride", [32, 8])
def test_run_modes_pairs_every_mode_with_plain(stride):
    """The paired column splits sliding - plain BPB exactly; stride = seq_len changes nothing."""
    vocab, seq_len = 37, 32
    luts = luts_for(vocab)
    tok, _ = stream(400, vocab=vocab, seed=5)
    vb = sidecar(tok, luts, 0)
    cfg = dataclasses.replace(load_section(PARAMS, "ttt_eval", TttEvalConfig), seq_len=seq_len, stride=stride,
                              max_val_tokens=0, position_buckets=8, ttt_mode="none", sliding_enabled=True, batch_seqs=3)
    run = run_modes(ToyLM(seed=4, dtype=torch.float32), tok, vb, luts, 0, cfg, torch.device("cpu"))
    p, s = run["modes"]["plain"], run["modes"]["sliding"]
    assert p["paired"] == [] and [r["position"] for r in s["paired"]] == list(range(0, seq_len, 4))
    assert sum(r["dbpb_share"] for r in s["paired"]) == pytest.approx(s["result"].bpb - p["result"].bpb, abs=1e-6)
    if stride == seq_len:
        assert all(r["dnll"] == 0.0 for r in s["paired"])
    else:  # tokens late in their plain window already had >= L - S inputs: sliding changes them less
        assert max(abs(r["dnll"]) for r in s["paired"][-1:]) < max(abs(r["dnll"]) for r in s["paired"][:2])
    table = window_table({m: r["window"] for m, r in run["modes"].items()},
                         {m: r["paired"] for m, r in run["modes"].items()})
    assert {"dnll_sliding", "dbpb_share_sliding", "bpb_plain", "bpb_sliding"} <= set(table[0])


@pytest.mark.parametrize("mode", ["none", "lora"])
def test_stage_writes_diagnostics_and_the_compliance_verdict(tmp_path, tokens_dir, tiny_model_config, mode):
    """`golf ttt-eval` end to end: window CSV / PNG, word-class metrics, and compliance from the
    clocks beside the checkpoint and the Hessians and the Hessians' header (inside the DVC deps), with
    calibration on train data counted."""
    import json

    from test_ttt import make_artifact, run_stage

    from golf.io.checkpoint import FORMAT as CKPT_FORMAT
    from golf.io.checkpoint import VERSION as CKPT_VERSION
    from golf.io.metrics import write_clock
    from golf.io.tensors import save_tensors
    from golf.quant.hessian import FORMAT as H_FORMAT
    from golf.quant.hessian import VERSION as H_VERSION

    tokens, raw, n, sha = tokens_dir
    art = tmp_path / "a" / "model.golf"
    art.parent.mkdir()
    make_artifact(art, dataclasses.replace(tiny_model_config, vocab_size=320), sha)
    (art.parent / "train_gpt.py").write_text("# code\n" * 10)
    one = {"w": torch.zeros(1)}
    save_tensors(tmp_path / "ckpt", one, {"format": CKPT_FORMAT, "version": CKPT_VERSION})
    save_tensors(tmp_path / "hess", one, {"format": H_FORMAT, "version": H_VERSION, "source": "train"})
    write_clock(tmp_path / "ckpt", {"train_s": 595.5, "world_size": 8})
    write_clock(tmp_path / "hess", {"collect_s": 7.25})
    r, out = run_stage(tmp_path, tokens, art, mode, extra=["--checkpoint", str(tmp_path / "ckpt"),
                                                             "--hessians", str(tmp_path / "hess")])
    assert r.exit_code == 0, r.output
    m = json.loads((out / "m.json").read_text())["ttt_eval"]
    t = json.loads((out / "timings" / "m.json").read_text())["ttt_eval"]
    assert t["compliance_train_s"] == 602.75 and t["compliance_calibration_s"] == 7.25
    assert t["compliance_eval_s"] <= t["wall_s"]
    assert m["compliance_total_bytes"] == art.stat().st_size + 70 and m["compliance_fits_bytes"] is True
    assert m["compliance_fits_train"] is False and m["compliance_fits"] is False
    assert m["compliance_train_world_size"] == 8 and m["compliance_eval_world_size"] == 1
    assert m["tokens_word_start"] + m["tokens_continuation"] + m["tokens_boundary"] == n - 1
    assert m["bytes_word_start"] + m["bytes_continuation"] == raw
    assert {"val_bpb_word_start_plain", "val_bpb_continuation_sliding", "val_loss_word_start_sliding"} <= m.keys()
    header = (out / "w.csv").read_text().splitlines()[0].split(",")
    assert header[:4] == ["position", "tokens_plain", "nll_plain", "bpb_plain"] and "dnll_sliding" in header
    assert (out / "w.png").read_bytes()[:4] == b"\x89PNG"
    detail = json.loads((out / "art" / "sliding.json").read_text())
    assert detail["window"] and detail["paired"] and set(detail["words"]) == {"word_start", "continuation", "boundary"}
    if mode == "lora":  # LoRA TTT reports its chunk windows' offsets too, and pairs with plain
        ttt = json.loads((out / "art" / "ttt.json").read_text())
        assert sum(w["tokens"] for w in ttt["window"]) == n - 1
        assert sum(q["dbpb_share"] for q in ttt["paired"]) == pytest.approx(m["val_bpb_ttt"] - m["val_bpb_plain"], abs=1e-5)


def test_stage_without_clocks_leaves_train_time_unknown(tmp_path, tokens_dir, tiny_model_config):
    import json

    from test_ttt import make_artifact, run_stage

    tokens, raw, n, sha = tokens_dir
    make_artifact(tmp_path / "model.golf", dataclasses.replace(tiny_model_config, vocab_size=320), sha)
    r, out = run_stage(tmp_path, tokens, tmp_path / "model.golf", "none")
    assert r.exit_code == 0 and "no-hessians not found: left out of the compliance verdict" in r.output
    m = json.loads((out / "m.json").read_text())["ttt_eval"]
    assert "compliance_fits_train" not in m and "compliance_total_bytes" not in m
    assert m["compliance_fits_eval"] is True
