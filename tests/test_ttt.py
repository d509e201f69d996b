"""golf.eval TTT modes (chunked SGD, doc-LoRA + phased SGD) and the `golf ttt-eval` stage (CPU, seconds)."""

from __future__ import annotations

import dataclasses
import json
import math
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from toy_model import ToyLM

from golf.artifact import sliding
from golf.artifact.scoring import Totals
from golf.errors import GolfError
from golf.eval import lora_ttt, ttt
from golf.eval.config import TttEvalConfig
from golf.params import load_section

LORA = dict(seq_len=24, chunk_size=5, batch_docs=3, lora_rank=3, lora_alpha=6.0, lora_lr=0.05, beta1=0.0,
            beta2=0.99, eps=1e-10, weight_decay=0.5, phased_prefix_docs=0, phased_num_phases=0, global_lr=0.01,
            global_momentum=0.9, global_epochs=1, global_chunk_tokens=16, batch_seqs=2, grad_clip=1.0, seed=0)
SGD = dict(seq_len=24, batch_seqs=2, chunk_tokens=20, lr=0.05, momentum=0.9, epochs=2, grad_clip=1.0,
           param_filter=())
TTT = dataclasses.replace(load_section(Path(__file__).resolve().parents[1] / "params.yaml", "ttt_eval", TttEvalConfig),
                          stride=1, chunk_size=1, max_val_tokens=0)  # valid with any seq_len of the tests


def lora(model, tok, vb, **kw):
    """lora_ttt.evaluate with LORA's settings (+ overrides), on the CPU."""
    over = {k: v for k, v in kw.items() if k in LORA}
    rest = {k: v for k, v in kw.items() if k not in LORA}
    return lora_ttt.evaluate(model, tok, vb, dataclasses.replace(TTT, **{**LORA, **over}), device="cpu", **rest)


def sgd(model, tok, vb, stride=8, **kw):
    """ttt.evaluate with SGD's settings (+ overrides), on the CPU."""
    over = {k: v for k, v in kw.items() if k in SGD}
    rest = {k: v for k, v in kw.items() if k not in SGD}
    return ttt.evaluate(model, tok, vb, dataclasses.replace(TTT, **{**SGD, **over}), stride=stride, device="cpu",
                        **rest)


def stream(n: int = 150, seed: int = 0, bos: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    tok = rng.integers(1, 37, size=n).astype(np.uint16)
    tok[rng.random(n) < 0.07] = bos
    tok[0] = bos
    vb = rng.integers(1, 4, size=n).astype(np.uint16)
    vb[tok == bos] = 0
    return tok, vb


# -- chunked SGD -----------------------------------------------------------------------------

def test_chunk_sgd_scores_every_token_once_and_leaves_the_callers_model_alone():
    model = ToyLM(seed=2)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    tok, vb = stream()
    tot = Totals(vb, len(tok), keep_tokens=True)
    res, det = sgd(model, tok, vb, totals=tot)
    assert (tot.count[1:] == 1).all() and tot.count[0] == 0
    assert res.tokens == len(tok) - 1 and res.bytes == int(vb[1:].sum())
    assert det["chunks"] == math.ceil((len(tok) - 1) / 20) and det["steps"] > 0
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_chunk_sgd_with_zero_lr_equals_sliding():
    model = ToyLM(seed=3)
    tok, vb = stream(seed=4)
    res, _ = sgd(model, tok, vb, lr=0.0)
    ref = sliding.evaluate(model, tok, vb, 24, 8, 2, "cpu")
    assert res.bpb == pytest.approx(ref.bpb, rel=1e-12) and res.tokens == ref.tokens


def test_chunk_sgd_param_filter():
    model = ToyLM()
    assert ttt.select_params(model, ("head",)) == [model.head.weight]
    with pytest.raises(GolfError, match="matches no parameter"):
        ttt.select_params(model, ("nope",))


def test_cosine_lr():
    assert ttt.cosine_lr(0.4, 0, 5) == pytest.approx(0.4)
    assert ttt.cosine_lr(0.4, 2, 5) == pytest.approx(0.2)
    assert ttt.cosine_lr(0.4, 4, 5) == pytest.approx(0.0, abs=1e-12)
    assert ttt.cosine_lr(0.4, 0, 1) == 0.4


# -- doc LoRA --------------------------------------------------------------------------------

def test_find_docs_tiles_every_target_once():
    rng = np.random.default_rng(0)
    for _ in range(200):
        n = int(rng.integers(2, 40))
        tok = rng.integers(0, 4, size=n)
        docs = lora_ttt.find_docs(tok, 0)
        cover = np.zeros(n, int)
        for s, e in docs:
            assert e > s and (tok[s] == 0 or s == 0)
            assert not (tok[s + 1: e] == 0).any()  # no BOS strictly inside a doc
            cover[s + 1: e + 1] += 1
        assert cover[0] == 0 and (cover[1:] == 1).all()


def test_phase_boundaries():
    assert lora_ttt.phase_boundaries(2500, 3, 10**6) == [833, 1666, 2500]
    assert lora_ttt.phase_boundaries(2000, 3, 10**6) == [666, 1333, 2000]
    assert lora_ttt.phase_boundaries(2500, 3, 2000) == [833, 1666]
    assert lora_ttt.phase_boundaries(0, 3, 100) == [] == lora_ttt.phase_boundaries(10, 0, 100)


def test_lora_with_zero_lr_is_the_doc_isolated_frozen_model():
    """B = 0 and no steps: each token is scored by the base model on its own doc's prefix (<= seq_len)."""
    model = ToyLM(seed=5)
    tok, vb = stream(seed=6)
    tot = Totals(vb, len(tok), keep_tokens=True)
    lora(model, tok, vb, bos_id=0, totals=tot, **{"lora_lr": 0.0})
    assert (tot.count[1:] == 1).all()
    docs = lora_ttt.find_docs(tok, 0)
    with torch.no_grad():
        for s, e in docs[[0, 3, -1]]:
            for t in range(s + 1, e + 1):
                ce = min(s + ((t - 1 - s) // 5 + 1) * 5, e)  # the window ends at the chunk end
                ws = max(s, ce - 24)
                x = torch.from_numpy(tok[ws:ce].astype(np.int64))[None]
                y = torch.from_numpy(tok[ws + 1:ce + 1].astype(np.int64))[None]
                assert model.nll(x, y)[0, t - 1 - ws].item() == pytest.approx(tot.token_nll[t], rel=1e-9)


def test_lora_ttt_adapts_phases_run_and_callers_model_is_untouched():
    model = ToyLM(seed=7)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    tok, vb = stream(n=200, seed=8)
    tot = Totals(vb, len(tok), keep_tokens=True)
    res, det = lora(model, tok, vb, bos_id=0, totals=tot,
                                 **{"phased_prefix_docs": 6, "phased_num_phases": 2})
    assert (tot.count[1:] == 1).all() and res.tokens == len(tok) - 1 and res.bytes == int(vb[1:].sum())
    assert det["lora_steps"] > 0 and det["global_steps"] > 0
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert all(p.requires_grad for p in model.parameters())


def test_lora_docs_in_a_batch_do_not_interact():
    """A doc's scores do not depend on which other docs share its batch (per-doc LoRA rows)."""
    model = ToyLM(seed=9)
    tok, vb = stream(n=120, seed=10)
    t1, t2 = Totals(vb, len(tok), keep_tokens=True), Totals(vb, len(tok), keep_tokens=True)
    lora(model, tok, vb, bos_id=0, totals=t1, **{"batch_docs": 1000})
    lora(model, tok, vb, bos_id=0, totals=t2, **{"batch_docs": 1000, "seed": 0})
    np.testing.assert_allclose(t1.token_nll[1:], t2.token_nll[1:], rtol=0, atol=1e-12)
    first = lora_ttt.find_docs(tok, 0)[0]
    t3 = Totals(vb, len(tok), keep_tokens=True)
    lora(model, tok[: first[1] + 1], vb[: first[1] + 1], bos_id=0, totals=t3, **{"batch_docs": 1000})
    np.testing.assert_allclose(t1.token_nll[1: first[1] + 1], t3.token_nll[1: first[1] + 1], rtol=0, atol=1e-9)


def test_lora_on_the_real_gpt(tiny_model_config):
    from golf.artifact.model.gpt import GPT

    torch.manual_seed(0)
    model = GPT(tiny_model_config)
    model.looping = True
    dims = lora_ttt.adapter_dims(model)
    assert "head" in dims and dims["head"] == (32, 96)
    assert any(s.endswith(".attn.c_k") for s in dims) and any(s.endswith(".mlp") for s in dims)
    assert sum(s.endswith(".attn.c_q") for s in dims) == model.num_virtual_layers
    rng = np.random.default_rng(0)
    tok = rng.integers(2, 96, size=90).astype(np.uint16)
    tok[[0, 30, 61]] = 1
    vb = np.where(tok == 1, 0, 2).astype(np.uint16)
    tot = Totals(vb, len(tok), keep_tokens=True)
    res, det = lora(model, tok, vb, bos_id=1, totals=tot, **{"phased_prefix_docs": 2,
                                                                             "phased_num_phases": 1})
    assert (tot.count[1:] == 1).all() and math.isfinite(res.bpb) and det["lora_steps"] > 0


# -- the stage -------------------------------------------------------------------------------

TEXTS = [f"Document number {i} says the quick brown fox {'jumps over' if i % 2 else 'naps by'} the lazy dog "
         f"{i * 7} times, and then it rests near river {i % 5}." for i in range(120)]
STAGE_PARAMS = """ttt_eval:
  seq_len: 32
  stride: 8
  batch_seqs: 4
  max_val_tokens: 0
  device: cpu
  position_buckets: 8
  sliding_enabled: true
  ttt_mode: {mode}
  chunk_tokens: 64
  lr: 0.01
  momentum: 0.9
  epochs: 1
  grad_clip: 1.0
  param_filter: []
  lora_rank: 2
  lora_alpha: 4.0
  lora_lr: 1.0e-3
  lora_sites: [attn.c_q, attn.c_k, attn.c_v, attn.proj, mlp, head]
  chunk_size: 16
  batch_docs: 4
  beta1: 0.0
  beta2: 0.99
  eps: 1.0e-10
  weight_decay: 0.5
  seed: 0
  phased_prefix_docs: 4
  phased_num_phases: 2
  global_lr: 0.001
  global_momentum: 0.9
  global_epochs: 1
  global_chunk_tokens: 64
"""


@pytest.fixture(scope="module")
def tokens_dir(tmp_path_factory):
    """data/tokens built in-process: a 320-piece BPE, val = 12 docs, sidecar by the LUT rule."""
    import hashlib

    from golf.artifact.bpb import build_luts, sidecar
    from golf.data.shards import write_shard
    from golf.data.tokenizer import BOS_ID, load_processor, normalized_bytes, train_tokenizer

    d = tmp_path_factory.mktemp("tokens")
    model = train_tokenizer(TEXTS[12:], 320, 1.0)
    sp = load_processor(model)
    (d / "tokenizer.model").write_bytes(model)
    val = TEXTS[:12]
    ids = sp.encode(val)
    stream = np.array([x for doc in ids for x in (BOS_ID, *doc)], np.uint16)
    write_shard(d / "val_000000.bin", stream)
    write_shard(d / "val_bytes_000000.bin", sidecar(stream, build_luts(sp, 320), BOS_ID))
    write_shard(d / "train_000000.bin", stream)
    raw = sum(len(t.encode("utf-8")) for t in val)
    assert raw == sum(normalized_bytes(sp, t) for t in val)  # plain ASCII, single spaces
    (d / "manifest.json").write_text(json.dumps({
        "format": "golf.tokens", "version": 1, "vocab_size": 320, "bos_id": BOS_ID,
        "tokenizer_sha256": hashlib.sha256(model).hexdigest(),
        "splits": {"val": {"docs": 12, "tokens": len(stream), "bytes": raw}}}))
    return d, raw, len(stream), hashlib.sha256(model).hexdigest()


def make_artifact(path, model_cfg, sha: str) -> None:
    from pathlib import Path

    from golf.artifact.model.gpt import GPT
    from golf.compress import container
    from golf.compress.config import CompressConfig
    from golf.params import load_section, section_dict

    torch.manual_seed(0)
    sd = GPT(model_cfg).state_dict()
    plan = {k: {"kind": "float", "shape": list(v.shape), "dtype": str(v.dtype).removeprefix("torch.")} for k, v in sd.items()}
    header = {"format": "golf.qmodel", "version": 1, "model": section_dict(model_cfg), "plan": plan,
              "data": {"tokenizer_sha256": sha}}
    ccfg = load_section(Path(__file__).resolve().parents[1] / "params.yaml", "compress", CompressConfig)
    ccfg = dataclasses.replace(ccfg, codec="zstd", zstd_level=1)
    path.write_bytes(container.encode(sd, header, ccfg))


def run_stage(tmp_path, tokens, artifact, mode="lora", extra=(), **edits):
    from typer.testing import CliRunner

    from stages.cli import app

    text = STAGE_PARAMS.format(mode=mode)
    for k, v in edits.items():
        text = "\n".join(f"  {k}: {v}" if line.startswith(f"  {k}:") else line for line in text.splitlines()) + "\n"
    params = tmp_path / "params.yaml"
    params.write_text(text)
    out = tmp_path / "out"
    r = CliRunner().invoke(app, ["ttt-eval", "--params", str(params), "--artifact", str(artifact), "--tokens", str(tokens),
                                 "--out", str(out / "art"), "--metrics", str(out / "m.json"),
                                 "--plots", str(out / "p.csv"), "--window-plots", str(out / "w.csv"),
                                 "--window-png", str(out / "w.png"), "--checkpoint", str(tmp_path / "no-checkpoint"),
                                 "--hessians", str(tmp_path / "no-hessians"), "--device", "cpu", *extra])
    return r, out


@pytest.mark.parametrize("mode", ["lora", "chunk_sgd"])
def test_stage_scores_the_artifact(tmp_path, tokens_dir, tiny_model_config, mode):
    tokens, raw, n, sha = tokens_dir
    cfg = dataclasses.replace(tiny_model_config, vocab_size=320)
    make_artifact(tmp_path / "model.golf", cfg, sha)
    r, out = run_stage(tmp_path, tokens, tmp_path / "model.golf", mode)
    assert r.exit_code == 0, r.output
    m = json.loads((out / "m.json").read_text())["ttt_eval"]
    assert m["tokens_scored"] == n - 1 and m["bytes_scored"] == raw  # the raw UTF-8 bytes of the val text
    assert m["val_bpb"] == m["val_bpb_ttt"] and m["headline_mode"] == "ttt"
    assert {"val_bpb_plain", "val_bpb_sliding"} <= m.keys()
    t = json.loads((out / "timings" / "m.json").read_text())["ttt_eval"]
    assert {"eval_s_plain", "eval_s_sliding", "eval_s_ttt", "wall_s"} <= t.keys()
    lines = (out / "p.csv").read_text().splitlines()
    assert lines[0] == "position,bpb" and 2 <= len(lines) <= 9
    for name in ("plain", "sliding", "ttt"):
        assert json.loads((out / "art" / f"{name}.json").read_text())["tokens"] == n - 1


def test_stage_errors(tmp_path, tokens_dir, tiny_model_config):
    tokens, raw, n, sha = tokens_dir
    cfg = dataclasses.replace(tiny_model_config, vocab_size=320)
    art = tmp_path / "model.golf"
    make_artifact(art, cfg, "0" * 64)
    r, _ = run_stage(tmp_path, tokens, art)
    assert r.exit_code == 1 and "tokenizer sha256" in r.output
    make_artifact(art, cfg, sha)
    r, _ = run_stage(tmp_path, tokens, art, mode="none", seq_len=100000, stride=8)
    assert r.exit_code == 1 and "shorter than one window" in r.output
    blob = bytearray(art.read_bytes())
    struct.pack_into("<H", blob, 4, 99)
    (tmp_path / "v99.golf").write_bytes(bytes(blob))
    r, _ = run_stage(tmp_path, tokens, tmp_path / "v99.golf")
    assert r.exit_code == 1 and "version 99" in r.output
    make_artifact(art, dataclasses.replace(tiny_model_config, vocab_size=96), "")
    r, _ = run_stage(tmp_path, tokens, art)
    assert r.exit_code == 1 and "vocabulary" in r.output


BLOCK_GOLF = """
import sys, importlib.abc
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name == "golf" or name.startswith("golf."):
            raise ImportError("golf is not installed here: " + name)
sys.meta_path.insert(0, Block())
sys.argv = [sys.argv[1]] + sys.argv[2:]
exec(compile(open(sys.argv[0]).read(), sys.argv[0], "exec"), {"__name__": "__main__"})
"""


def bundled_script_and_stage_bpb(tmp_path, tokens_dir, model_cfg) -> tuple[dict, float, int]:
    """An artifact of `model_cfg` scored by `golf ttt-eval` (no TTT) and by its bundled train_gpt.py
    alone (golf imports blocked): (the script's "key:value" output, the stage's sliding BPB, raw bytes)."""
    import subprocess
    import sys

    from golf.compress import bundle

    tokens, raw, _, sha = tokens_dir
    make_artifact(tmp_path / "model.golf", model_cfg, sha)
    r, out = run_stage(tmp_path, tokens, tmp_path / "model.golf", mode="none")
    assert r.exit_code == 0, r.output
    want = json.loads((out / "m.json").read_text())["ttt_eval"]["val_bpb_sliding"]
    script = tmp_path / "train_gpt.py"
    script.write_text(bundle.build_script())
    res = subprocess.run([sys.executable, "-c", BLOCK_GOLF, str(script), "--artifact", str(tmp_path / "model.golf"),
                          "--tokens", str(tokens), "--seq-len", "32", "--stride", "8", "--batch-seqs", "4",
                          "--device", "cpu"], capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert res.returncode == 0, res.stderr
    return dict(kv.split(":", 1) for kv in res.stdout.split()), want, raw


def test_bundled_script_reproduces_the_sliding_bpb(tmp_path, tokens_dir, tiny_model_config):
    """train_gpt.py, given only itself, the artifact and the val shards (golf imports blocked),
    scores the same sliding-window BPB as `golf ttt-eval`."""
    got, want, raw = bundled_script_and_stage_bpb(tmp_path, tokens_dir,
                                                  dataclasses.replace(tiny_model_config, vocab_size=320))
    assert abs(float(got["val_bpb"]) - want) < 1e-9 and int(got["bytes"]) == raw
