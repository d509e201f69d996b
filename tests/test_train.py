"""The training loop on CPU: loss falls, data order, NaN handling, config checks, the `golf train` stage."""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch
from toy_model import ToyLM

from golf.artifact.runtime import Dist
from golf.artifact.typed import build_section
from golf.errors import GolfError
from golf.train.config import TrainConfig
from golf.train.data import WindowLoader
from golf.train.loop import train

TRAIN = dict(
    iterations=30, max_wallclock_s=0.0, gptq_reserve_s=0.0, warmdown_frac=0.5, min_lr=0.1, warmup_steps=2,
    train_batch_tokens=8 * 24, train_seq_len=24, grad_accum_steps=2, val_every=10, val_batch_seqs=4,
    val_max_tokens=0, matrix_lr=0.02, muon_momentum=0.95, muon_momentum_warmup_start=0.85,
    muon_momentum_warmup_steps=10, muon_momentum_cycle_steps=0, muon_momentum_cycle_min=0.85, muon_backend_steps=5,
    muon_coeffs="polar_express", muon_row_normalize=True,
    muon_wd=0.01, tied_embed_lr=0.02, embed_wd=0.0, scalar_lr=0.01, adam_wd=0.0, beta1=0.9, beta2=0.95,
    adam_eps=1.0e-8, grad_clip_norm=1.0, ema_decay=0.9, ema_warmup=True, swa_enabled=False, swa_every=5,
    swa_start_frac=0.5, swa_max_lr_mul=0.0, swa_mode="replace",
    enable_looping_at=0.5, seed=3, device="cpu", compile="off", compile_scope="model", compile_ahead=False,
    compile_ahead_kernels=False, compile_without_gc=True,
    attention_backend="auto", autocast_bf16=True, bf16_residual=False, fused_kernels="auto", fused_mlp="auto",
    fused_qk=True, fused_xsa_gate=True, fused_kv_repeat=True, cuda_graphs=False, combo_kernels=False, nproc_per_node=1, peak_flops=0.0, moe_aux_weight=0.0,
    mtp_weight=0.0, cat_every=0, cat_weight=100.0, cat_bits=6,
    cat_clip_sigmas=12.85, cat_form="squared", qat_start_frac=0.0, qat_bits=6, qat_clip_sigmas=12.85,
)


def tcfg(**over) -> TrainConfig:
    return build_section(TRAIN, "train", TrainConfig, over)


class TinyLM(ToyLM):
    """ToyLM in fp32 plus the training contract of golf.artifact.model.GPT (param_groups, looping)."""

    def __init__(self, vocab=29, seed=0):
        super().__init__(vocab=vocab, dim=16, kv_dim=12, hidden=20, layers=2, max_len=32, seed=seed,
                         dtype=torch.float32)
        with torch.no_grad():
            for p in self.parameters():
                p.mul_(0.3)
        self.looping = False

    def param_groups(self):
        named = dict(self.named_parameters())
        matrix = [p for n, p in named.items() if p.ndim == 2 and n.startswith("blocks.")]
        embed = [named["tok.weight"], named["head.weight"], named["pos.weight"]]
        scalar = [p for p in self.parameters() if all(p is not q for q in matrix + embed)]
        return {"matrix": matrix, "embed": embed, "scalar": scalar}


def corpus(n=6000, vocab=29, seed=0) -> tuple[np.ndarray, np.ndarray]:
    """A learnable stream: a repeating pattern with noise (tokens) and 1..3 bytes per token."""
    pattern = np.random.default_rng(99).integers(1, vocab, size=11)  # the same pattern in train and val
    rng = np.random.default_rng(seed)
    toks = np.resize(pattern, n)
    noise = rng.random(n) < 0.1
    toks[noise] = rng.integers(1, vocab, size=noise.sum())
    toks[::200] = 0  # BOS
    by = (toks % 3 + 1).astype(np.int64)
    by[toks == 0] = 0
    return toks.astype(np.uint16), by


SOLO = Dist(0, 0, 1)


def test_loss_falls_and_rows():
    tr, _ = corpus(seed=1)
    va, vb = corpus(1500, seed=2)
    torch.manual_seed(0)
    model = TinyLM()
    res = train(model, tcfg(), tr, va, vb, torch.device("cpu"), SOLO, progress=False)
    assert res.steps == 30 and res.train_tokens == 30 * 8 * 24
    first = np.mean([r["train_loss"] for r in res.rows[:3]])
    last = np.mean([r["train_loss"] for r in res.rows[-3:]])
    assert last < first - 0.5, (first, last)
    assert res.val_bpb < res.rows[9]["val_bpb"] < res.val_bpb_raw + 2.0
    assert res.val_bpb < 1.5
    assert [r["val_bpb"] != "" for r in res.rows].count(True) == 3  # steps 10, 20 and the end
    assert res.rows[0]["lr_mul"] == 1.0 and res.rows[-1]["lr_mul"] == pytest.approx(max(1 / 30 / 0.5, 0.1))
    assert set(res.rows[0]) == {"step", "train_loss", "val_bpb", "lr_mul", "tokens_per_s", "elapsed_s"}
    assert res.mfu is None and not res.compiled


def test_warmup_steps_are_thrown_away():
    """With and without compile warm-up steps, the same seed gives the same weights."""
    tr, _ = corpus(seed=1)
    va, vb = corpus(600, seed=2)
    outs = []
    for w in (0, 3):
        torch.manual_seed(0)
        m = TinyLM()
        train(m, tcfg(iterations=5, warmup_steps=w, val_every=0), tr, va, vb, torch.device("cpu"), SOLO,
              progress=False)
        outs.append(m.state_dict())
    for k in outs[0]:
        assert torch.allclose(outs[0][k], outs[1][k], atol=1e-6), k


def test_wallclock_mode_stops_on_time():
    tr, _ = corpus(seed=1)
    va, vb = corpus(600, seed=2)
    res = train(TinyLM(), tcfg(iterations=100000, max_wallclock_s=1.0, val_every=0), tr, va, vb,
                torch.device("cpu"), SOLO, progress=False)
    # it stopped on the clock, not the step count (the schedule's shape is test_schedule's job;
    # no upper bound on time here: tests never assert speed)
    assert 0 < res.steps < 100000 and res.train_s >= 1.0


def test_nan_loss_is_a_clear_error():
    tr, _ = corpus(seed=1)
    va, vb = corpus(600, seed=2)
    m = TinyLM()
    with torch.no_grad():
        m.head.weight.fill_(float("nan"))
    with pytest.raises(GolfError, match="loss is nan at step 1"):
        train(m, tcfg(warmup_steps=0), tr, va, vb, torch.device("cpu"), SOLO, progress=False)


def test_loader_is_deterministic_and_sharded_by_rank():
    toks = np.arange(5000, dtype=np.uint16)
    one = WindowLoader(toks, 16, 8, 2, 0, 1, seed=5, device=torch.device("cpu"))
    r0 = WindowLoader(toks, 16, 8, 2, 0, 2, seed=5, device=torch.device("cpu"))
    r1 = WindowLoader(toks, 16, 8, 2, 1, 2, seed=5, device=torch.device("cpu"))
    b = one.batch(3)
    assert len(b) == 2 and b[0][0].shape == (4, 16)
    assert torch.equal(b[0][1][:, :-1], b[0][0][:, 1:])  # targets are inputs shifted by one
    whole = torch.cat([x for x, *_ in b])
    split = torch.cat([x for x, *_ in r0.batch(3)] + [x for x, *_ in r1.batch(3)])
    assert torch.equal(whole, split)  # the global batch does not depend on the world size
    assert torch.equal(whole, torch.cat([x for x, *_ in one.batch(3)]))
    assert not torch.equal(whole, torch.cat([x for x, *_ in one.batch(4)]))
    other_seed = WindowLoader(toks, 16, 8, 2, 0, 1, seed=6, device=torch.device("cpu"))
    assert not torch.equal(whole, torch.cat([x for x, *_ in other_seed.batch(3)]))


@pytest.mark.parametrize("over,msg", [
    (dict(train_batch_tokens=100), "divisible"),
    (dict(warmdown_frac=1.5), "warmdown_frac"),
    (dict(ema_decay=1.0), "ema_decay"),
    (dict(max_wallclock_s=10.0, gptq_reserve_s=10.0), "gptq_reserve_s"),
    (dict(muon_coeffs="cubic"), "muon_coeffs"),
    (dict(moe_aux_weight=-0.1), "moe_aux_weight"),
    (dict(mtp_weight=-1.0), "mtp_weight"),
    (dict(cat_every=-1), "cat_every"),
    (dict(cat_bits=9), "cat_bits"),
    (dict(cat_clip_sigmas=0.0), "cat_clip_sigmas"),
    (dict(cat_every=5, cat_weight=0.0), "cat_weight"),
])
def test_config_rejects(over, msg):
    with pytest.raises(GolfError, match=msg):
        tcfg(**over)


def test_config_fields_have_docs():
    from golf.params import field_docs

    docs = field_docs(TrainConfig)
    assert set(docs) == {f.name for f in dataclasses.fields(TrainConfig)}
    assert set(TRAIN) == set(docs)


# ---- small-batch training: the schedule is by step fraction ------------------------------------

def test_schedule_does_not_depend_on_batch_tokens_or_accumulation():
    """Halving train_batch_tokens (or splitting the batch into micro-batches) with the same iterations
    leaves the step count and the per-step schedule (lr multiplier) unchanged; only tokens scale."""
    tr, _ = corpus(seed=1)
    va, vb = corpus(600, seed=2)
    runs = {}
    for bt, acc in ((8 * 24, 2), (4 * 24, 1), (4 * 24, 2), (2 * 24, 1)):
        res = train(TinyLM(), tcfg(iterations=10, train_batch_tokens=bt, grad_accum_steps=acc, val_every=0,
                                   warmup_steps=0), tr, va, vb, torch.device("cpu"), SOLO, progress=False)
        assert res.steps == 10 and res.train_tokens == 10 * bt
        runs[bt, acc] = [r["lr_mul"] for r in res.rows]
    ref = runs[8 * 24, 2]
    assert ref[0] == 1.0 and ref[-1] == pytest.approx(max(1 / 10 / 0.5, 0.1)) and len(set(ref)) > 2
    assert all(v == ref for v in runs.values())


def test_grad_accumulation_is_the_same_global_batch():
    """The loader draws each step's global batch by (seed, step); accumulating over 1, 2 or 4
    micro-batches computes the same mean gradient, so training ends at the same weights."""
    tr, _ = corpus(seed=1)
    va, vb = corpus(600, seed=2)
    outs = []
    for acc in (1, 2, 4):
        torch.manual_seed(0)
        m = TinyLM()
        train(m, tcfg(iterations=4, grad_accum_steps=acc, val_every=0, warmup_steps=0, ema_decay=0.0), tr, va, vb,
              torch.device("cpu"), SOLO, progress=False)
        outs.append(m.state_dict())
    for other in outs[1:]:
        for k in outs[0]:
            torch.testing.assert_close(other[k], outs[0][k], rtol=1e-4, atol=1e-5, msg=k)


def test_foreach_accumulation_gives_autograds_bits(monkeypatch):
    """golf.train.loop.backward_into_grads against plain backward() accumulation: a parameter with a
    gradient from both micro-batches, from the first only, from the second only; then whole training."""
    from golf.train import loop

    def grads_after(backward):
        torch.manual_seed(0)
        ps = [torch.randn(3, requires_grad=True) for _ in range(3)]
        w = torch.randn(3)
        backward(((ps[0] + ps[1]) * w).square().sum(), ps, True)
        backward(((ps[0] - ps[2]) * w).exp().sum(), ps, False)
        return [p.grad for p in ps]

    ours = grads_after(loop.backward_into_grads)
    plain = grads_after(lambda loss, params, first: loss.backward())
    assert all(torch.equal(a, b) for a, b in zip(ours, plain))
    owned = grads_after(functools.partial(loop.backward_into_grads, owned=True))  # train.cuda_graphs
    assert all(torch.equal(a, b) for a, b in zip(owned, plain))

    # owned: the first micro-batch's gradients are copies, not the backward's own outputs (a CUDA graph's)
    p = torch.randn(3, requires_grad=True)
    produced = []
    p.register_post_accumulate_grad_hook(lambda q: produced.append(q.grad))
    loop.backward_into_grads(p.square().sum(), [p], first=True, owned=True)
    assert p.grad is not produced[0] and torch.equal(p.grad, produced[0])

    tr, _ = corpus(seed=1)
    va, vb = corpus(600, seed=2)
    outs = []
    for backward in (loop.backward_into_grads, lambda loss, params, first, owned: loss.backward()):
        monkeypatch.setattr(loop, "backward_into_grads", backward)
        torch.manual_seed(0)
        m = TinyLM()
        train(m, tcfg(iterations=3, grad_accum_steps=4, val_every=0, warmup_steps=0), tr, va, vb,
              torch.device("cpu"), SOLO, progress=False)
        outs.append(m.state_dict())
    assert all(torch.equal(outs[0][k], outs[1][k]) for k in outs[0])


def test_micro_batch_hint_only_where_twice_the_peak_fits():
    """The H200's figures (BENCHMARKS.md, sixth session): 8 micro-batches peaked at 38.4 GiB, 4 at 76.1 GiB,
    2 ran out of memory on 139.8 GiB; the hint suggests 4 after 8 and nothing after 4."""
    from golf.train.run import micro_batch_hint

    gib, h200 = 2**30, int(139.8 * 2**30)
    hint = micro_batch_hint(int(38.4 * gib), h200, 8)
    assert hint is not None and "train.grad_accum_steps = 4" in hint and "38.4 GiB" in hint
    assert micro_batch_hint(int(76.1 * gib), h200, 4) is None
    assert micro_batch_hint(int(1 * gib), h200, 1) is None and micro_batch_hint(int(1 * gib), h200, 3) is None


# ---- compressor-aware training (golf/train/cat.py) ----------------------------------------------

def _on_grid(rows: int, cols: int, bits: int, gen: torch.Generator) -> tuple[torch.Tensor, float]:
    """(w, k): rows that are permutations of one integer code vector q times a per-row step c_i, and the
    clip k = R / std(q), so the CAT step k * std(w_i) / R is exactly c_i and w / s = q: on the grid."""
    from golf.train.cat import clip_range

    R = clip_range(bits)
    q = torch.randint(-R, R + 1, (cols,), generator=gen).double()
    q[0], q[1] = R, -R
    perm = torch.stack([q[torch.randperm(cols, generator=gen)] for _ in range(rows)])
    c = 2.0 ** torch.randint(-8, -3, (rows, 1), generator=gen).double()  # powers of two: w / c is exact
    return perm * c, R / q.std().item()


def test_cat_penalty_is_zero_on_grid_points_and_positive_off_them():
    from golf.train.cat import cat_penalty, grid_residual, grid_step

    gen = torch.Generator().manual_seed(11)
    w, k = _on_grid(5, 37, 6, gen)
    s = grid_step(w, 6, k)
    torch.testing.assert_close(s.double(), w.abs().amax(1, keepdim=True) / 31, rtol=1e-6, atol=0)
    assert cat_penalty([w.float()], 6, k).item() < 1e-12 * s.square().mean().item()
    # with an explicit step, grid points give exactly zero
    assert grid_residual(torch.tensor([[-3.0, 0.0, 5.0, 31.0]]) * 0.25, torch.tensor([[0.25]]), 6).abs().max() == 0
    # off the grid: positive, and at most (s/2)^2 per element inside the clip range
    off = w.float() + 0.3 * s * torch.rand(w.shape, generator=gen)
    pen = cat_penalty([off], 6, k).item()
    s_off = grid_step(off, 6, k)
    assert 0 < pen <= (s_off.square() / 4).max().item()
    # the grid is quantize's: same codes as golf.quant.gptq's RTN (which keeps an fp16 step)
    from golf.quant.gptq import round_codes, row_scales

    g = torch.randn(6, 40, generator=gen)
    torch.testing.assert_close(grid_step(g, 5, 9.0).squeeze(1), row_scales(g, 9.0, 5).float(), rtol=1e-3, atol=0)
    r = torch.clamp(torch.round(g / grid_step(g, 5, 9.0)), -15, 15)
    assert (r == round_codes(g, row_scales(g, 9.0, 5), 15)).float().mean() > 0.95


def test_cat_penalty_gradient_is_the_residual_and_skips_the_step():
    """d pen / d w = 2 (w - r s) / N over all penalised elements: no term through s (a detached step)."""
    from golf.train.cat import cat_penalty, grid_step

    gen = torch.Generator().manual_seed(12)
    ws = [torch.randn(4, 9, generator=gen).mul_(0.1).requires_grad_(),
          torch.randn(7, 30, generator=gen).mul_(2.0).requires_grad_()]
    ws[1].data[2, 1] = 50.0  # beyond the clip range: pulled toward the outermost code R * s
    pen = cat_penalty(ws, 4, 2.5)
    pen.backward()
    n = sum(w.numel() for w in ws)
    manual = 0.0
    for w in ws:
        s = grid_step(w, 4, 2.5)
        r = torch.clamp(torch.round(w.detach() / s), -7, 7)
        ref = (w.detach() / s - r).square() * s.square()
        manual += ref.sum().item()
        torch.testing.assert_close(w.grad, 2 * (w.detach() - r * s) / n)
    assert pen.item() == pytest.approx(manual / n, rel=1e-5)
    s1 = grid_step(ws[1], 4, 2.5)[2].item()
    assert 50.0 > 7 * s1 and ws[1].grad[2, 1].item() == pytest.approx(2 * (50.0 - 7 * s1) / n, rel=1e-5)


def test_cat_in_the_loop_pulls_weights_to_the_grid():
    """A tiny run with CAT on every step ends closer to the 4-bit grid than the same run without it."""
    from golf.train.cat import cat_matrices, cat_penalty

    tr, _ = corpus(seed=1)
    va, vb = corpus(600, seed=2)
    pens = {}
    for every in (0, 1):
        torch.manual_seed(0)
        m = TinyLM()
        res = train(m, tcfg(iterations=12, val_every=0, warmup_steps=0, ema_decay=0.0, cat_every=every,
                            cat_weight=3000.0, cat_bits=4, cat_clip_sigmas=3.0),
                    tr, va, vb, torch.device("cpu"), SOLO, progress=False)
        assert math.isfinite(res.val_bpb)
        with torch.no_grad():
            pens[every] = cat_penalty(cat_matrices(m), 4, 3.0).item()
    assert pens[1] < 0.8 * pens[0], pens


# ---- the stage -------------------------------------------------------------------------------

MODEL = dict(
    vocab_size=32, bos_id=0, num_layers=3, model_dim=32, num_heads=4, num_kv_heads=2, mlp_mult=2.0,
    activation="leaky_relu2", leaky_slope=0.5, tie_embeddings=True, tied_embed_init_std=0.005, logit_softcap=30.0,
    rope_base=10000.0, rope_dims=4, ln_scale=True, qk_gain_init=5.0, xsa_last_n=3, unet_skips=True,
    skip_gates_enabled=True, num_loops=1, loop_start=1, loop_end=1, parallel_start_layer=2,
    smear_gate_enabled=True, gate_window=8, bigram_vocab_size=0, bigram_dim=0, ve_dim=0, ve_layers=[],
    sparse_attn_gate_enabled=True, sparse_attn_gate_scale=0.5, gated_attn_enabled=False,
    moe_num_experts=0, moe_top_k=1, mtp_heads=0, embed_dim=0, doc_masked_attention=False,
    value_residual=False, mlp_kind="dense", kan_grid=5, kan_order=3,
)


def write_tokens(d: Path, vocab: int = 29) -> None:
    from golf.data.shards import shard_name, write_shard

    d.mkdir(parents=True)
    tr, _ = corpus(8000, vocab, seed=1)
    va, vb = corpus(1200, vocab, seed=2)
    write_shard(d / shard_name("train", 0), tr[:5000])
    write_shard(d / shard_name("train", 1), tr[5000:])
    write_shard(d / shard_name("val", 0), va)
    write_shard(d / shard_name("val_bytes", 0), vb.astype(np.uint16))
    manifest = {"format": "golf.tokens", "version": 1, "vocab_size": vocab, "bos_id": 0, "tokenizer_sha256": "ab" * 32,
                "splits": {"train": {"docs": 40, "tokens": 8000, "bytes": 16000, "shards": 2},
                           "val": {"docs": 6, "tokens": 1200, "bytes": int(vb.sum()), "shards": 1}}}
    (d / "manifest.json").write_text(json.dumps(manifest))


def write_params(path: Path, model_over: dict | None = None, **train_over) -> None:
    import yaml

    train = {**TRAIN, "iterations": 12, "val_every": 6, **train_over}
    path.write_text(yaml.safe_dump({"model": {**MODEL, **(model_over or {})}, "train": train}))


def invoke(tmp_path: Path, *extra: str):
    from typer.testing import CliRunner

    from stages.cli import app

    args = ["train", "--params", str(tmp_path / "params.yaml"), "--tokens", str(tmp_path / "tokens"),
            "--out", str(tmp_path / "artifacts/train/model.safetensors"),
            "--metrics", str(tmp_path / "metrics/train.json"), "--plots", str(tmp_path / "plots/train.csv"), *extra]
    return CliRunner().invoke(app, args)


def test_golf_train_stage(tmp_path):
    from golf.io.checkpoint import load_model

    write_tokens(tmp_path / "tokens")
    write_params(tmp_path / "params.yaml")
    r = invoke(tmp_path, "--muon-coeffs", "quintic")
    assert r.exit_code == 0, r.output
    m = json.loads((tmp_path / "metrics/train.json").read_text())["train"]
    t = json.loads((tmp_path / "metrics/timings/train.json").read_text())["train"]
    assert m["steps"] == 12 and m["train_tokens"] == 12 * 8 * 24
    assert m["val_bpb"] > 0 and m["params"] > 0 and t["peak_mem_bytes"] > 0 and m["compile"] is False
    assert m["cuda_graphs"] is False  # what bench_record's golf row reports
    assert m["attention_backend"] == "sdpa" and "mfu" not in m | t and t["wall_s"] >= t["train_s"]
    # the cold start, split: setup, then each warm-up graph (looping switches on mid-run: two)
    parts = [t["start_s_setup"], t["start_s_plain"], t["start_s_looped"]]
    assert all(p > 0 for p in parts) and sum(parts) <= t["first_step_s"] and not any("start_s" in k for k in m)
    model, header = load_model(tmp_path / "artifacts/train/model.safetensors")
    assert header["train"]["muon_coeffs"] == "quintic" and header["train"]["iterations"] == 12
    assert header["looping"] is True  # switched on at half of training
    assert header["data"] == {"tokenizer_sha256": "ab" * 32, "train_tokens": 8000, "val_tokens": 1200}
    assert header["eval"] == {"seq_len": 24, "batch_seqs": 4, "max_tokens": 0}
    assert header["val_bpb"] == m["val_bpb"]
    lines = (tmp_path / "plots/train.csv").read_text().splitlines()
    assert lines[0] == "step,train_loss,val_bpb,lr_mul,tokens_per_s,elapsed_s" and len(lines) == 13


def test_golf_train_writes_the_same_bytes_twice_and_its_clock_beside_them(tmp_path):
    """The measured train time goes to model.clock.json (ttt_eval's compliance verdict), not into the
    checkpoint, so the same params and tokens write the same checkpoint bytes (CPU training is
    deterministic): its sha256, which the artifact carries, and the artifact's size do not move."""
    write_tokens(tmp_path / "tokens")
    write_params(tmp_path / "params.yaml", iterations=3, val_every=0)
    ckpt = tmp_path / "artifacts/train/model.safetensors"
    runs = []
    for _ in range(2):
        r = invoke(tmp_path)
        assert r.exit_code == 0, r.output
        clock = json.loads((ckpt.parent / "model.clock.json").read_text())
        assert clock["train_s"] > 0 and clock["world_size"] == 1
        runs.append(ckpt.read_bytes())
    assert runs[0] == runs[1]
    assert b'"clock"' not in runs[0][:8 + int.from_bytes(runs[0][:8], "little")]  # not in the header


def test_golf_train_nan_keeps_no_checkpoint(tmp_path):
    write_tokens(tmp_path / "tokens")
    write_params(tmp_path / "params.yaml")
    r = invoke(tmp_path, "--tied-embed-lr", "1e30", "--scalar-lr", "1e30", "--matrix-lr", "1e30", "--grad-clip-norm", "0")
    assert r.exit_code == 1 and "loss is nan" in r.output, r.output
    assert not (tmp_path / "artifacts/train/model.safetensors").exists()
    assert not (tmp_path / "metrics/train.json").exists()


def test_golf_train_rejects_a_bigger_vocab(tmp_path):
    write_tokens(tmp_path / "tokens", vocab=40)
    write_params(tmp_path / "params.yaml")
    r = invoke(tmp_path)
    assert r.exit_code == 1 and "model.vocab_size = 32" in r.output


def test_fused_mlp_auto_takes_quack_only_on_hopper_where_it_imports(monkeypatch, capsys):
    """train.fused_mlp = auto: quack on compute capability 9 when quack.gemm_interface imports; pair on
    the CPU, on other GPUs, and on a Hopper where quack fails to import, which one stderr line says
    (with the error and the install); an explicit setting is kept as it is."""
    from golf.train import fused

    cuda = torch.device("cuda", 0)
    monkeypatch.setitem(sys.modules, "quack", types.ModuleType("quack"))  # a stand-in that imports
    monkeypatch.setitem(sys.modules, "quack.gemm_interface", types.ModuleType("quack.gemm_interface"))
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (9, 0))
    assert fused.resolve_mlp("auto", cuda) == "quack"
    assert fused.resolve_mlp("auto", torch.device("cpu")) == "pair"
    assert [fused.resolve_mlp(s, cuda) for s in ("pair", "gemm", "quack")] == ["pair", "gemm", "quack"]
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (8, 0))
    assert fused.resolve_mlp("auto", cuda) == "pair"
    assert capsys.readouterr().err == ""
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (9, 0))
    monkeypatch.setitem(sys.modules, "quack.gemm_interface", None)  # its import fails
    assert fused.resolve_mlp("auto", cuda) == "pair"
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "fused_mlp auto took pair, not quack" in err[0] and "import of quack.gemm_interface halted" in err[0]
    assert "[gpu]" in err[0]
    assert fused.resolve_mlp("auto", cuda, announce=False) == "pair" and capsys.readouterr().err == ""


def test_fused_kernels_auto_on_cpu_trains_eager_and_says_so_once(monkeypatch, capsys):
    """train.fused_kernels = auto without CUDA: the eager path (res.fused_kernels False), said once
    on stderr over two runs in one process; 'on' stops before any step, naming the key."""
    from golf.train import fused

    monkeypatch.setattr(fused, "_said_eager", False)
    tr, _ = corpus(seed=1)
    va, vb = corpus(600, seed=2)
    for _ in range(2):
        res = train(TinyLM(), tcfg(iterations=2, val_every=0), tr, va, vb, torch.device("cpu"), SOLO, progress=False)
        assert res.fused_kernels is False and res.fused_mlp == ""
    err = capsys.readouterr().err
    assert err.count("train.fused_kernels = auto: the device is cpu, not CUDA; training uses the eager PyTorch path") == 1
    with pytest.raises(GolfError, match=r"^train\.fused_kernels = 'on' but the device is cpu"):
        train(TinyLM(), tcfg(fused_kernels="on"), tr, va, vb, torch.device("cpu"), SOLO, progress=False)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("attention", ["sdpa", "fa4"])
def test_cuda_graphs_train_the_same_weights_on_gpu(tiny_model_config, attention):
    """train.cuda_graphs: inductor keeps its CUDA graphs (it skips none); the first step's loss, before any
    update, is the one it is without them (the same kernels, replayed), and the weights after four steps
    (looping switching on midway) are, as a whole (the L2 distance over every weight), within 4x the distance
    between two runs without graphs, or 1% of what the four steps moved them. Each compile can pick other
    kernels, FA4's backward adds with atomics in any order, and four steps of this tiny model carry a last-bit
    difference far: in inductor's deterministic mode, as here, the two runs without graphs were up to 2.0e-3
    (sdpa) and 7.3e-3 (fa4) apart in a weight, the graphs' run 0.9e-3 and 4.8e-3 (H200, BENCHMARKS.md,
    seventeenth session). Weight by weight the bound failed in two later sessions on small vectors (skip_gates;
    resid_mix and attn_scale at 5x the spread, fa4) while the matrices sat at the spread: one spread sample
    per weight is too few for 70 weights. A lost micro-batch gradient or a stale buffer moves every weight by
    a good part of a step, far beyond that; or it changes the first loss. Every weight's distances are printed
    (pytest -rP shows them).
    fa4: 64-dim heads and document masking, so FA4's varlen ops (and quack's MLP GEMMs where they import) run
    captured, on padded cu_seqlens."""
    from torch._dynamo.utils import counters

    from golf.artifact.model import GPT
    from golf.kernels import fa4

    if attention == "fa4" and not fa4.available():
        pytest.skip("needs flash-attn-4 (pip install -e '.[gpu]')")
    model_cfg = tiny_model_config if attention == "sdpa" else dataclasses.replace(
        tiny_model_config, model_dim=128, num_heads=2, num_kv_heads=1, bos_id=0, doc_masked_attention=True)
    tr, _ = corpus(seed=1, vocab=96)
    va, vb = corpus(600, seed=2, vocab=96)
    runs = {}
    for name, graphs in (("off", False), ("off again", False), ("on", True)):
        torch._dynamo.reset()
        counters.clear()
        torch.manual_seed(0)
        m = GPT(model_cfg)
        init = {k: v.detach().clone() for k, v in m.state_dict().items()}  # the same in every run (seed 0)
        cfg = tcfg(iterations=4, warmup_steps=2, val_every=0, ema_decay=0.0, enable_looping_at=0.5, device="cuda",
                   compile="on", cuda_graphs=graphs, attention_backend=attention)
        with torch._inductor.config.patch(deterministic=True):
            res = train(m, cfg, tr, va, vb, torch.device("cuda"), SOLO, progress=False)
        runs[name] = m.state_dict(), [r["train_loss"] for r in res.rows]
        assert counters["inductor"]["cudagraph_skips"] == 0, name
    (off, losses), (again, _), (on, losses_on) = runs["off"], runs["off again"], runs["on"]
    assert abs(losses_on[0] - losses[0]) <= 2e-6, (losses_on, losses)
    init = {k: v.to(off[k].device) for k, v in init.items()}
    for k in off:
        print(f"{k}: moved {(on[k].float() - off[k].float()).abs().max().item():.3g}, "
              f"spread {(again[k].float() - off[k].float()).abs().max().item():.3g}")

    def distance(a, b):
        return sum(float((a[k].float() - b[k].float()).square().sum()) for k in off) ** 0.5

    moved, spread, trained = distance(on, off), distance(again, off), distance(off, init)
    print(f"all weights (L2): moved {moved:.4g}, spread {spread:.4g}, trained {trained:.4g}")
    assert moved <= max(4 * spread, 0.01 * trained), (moved, spread, trained)


def test_cuda_graphs_without_cuda_is_a_clear_error():
    tr, _ = corpus(seed=1)
    va, vb = corpus(600, seed=2)
    with pytest.raises(GolfError, match=r"^train\.cuda_graphs = true needs CUDA and compile, but the device is cpu"):
        train(TinyLM(), tcfg(cuda_graphs=True), tr, va, vb, torch.device("cpu"), SOLO, progress=False)


def test_cuda_graphs_at_blocks_scope_is_refused_where_the_value_came_from(tmp_path):
    """blocks scope has no whole-model graph to replay: refused when the params are read, naming the key and
    blaming the file, or the command line when a flag made the difference."""
    with pytest.raises(GolfError, match=r"train\.cuda_graphs = True: needs train\.compile_scope model or hybrid, "
                       r"but it is 'blocks'$"):
        tcfg(cuda_graphs=True, compile_scope="blocks")
    write_tokens(tmp_path / "tokens")
    write_params(tmp_path / "params.yaml", {}, iterations=2, val_every=0)
    r = invoke(tmp_path, "--cuda-graphs", "--compile-scope", "blocks")
    assert r.exit_code != 0 and "command line: train.cuda_graphs = True: needs train.compile_scope" in r.output
    assert not (tmp_path / "metrics/train.json").exists()


def test_golf_train_with_document_masking(tmp_path):
    """CPU: SDPA with the document mask (FA4 is GPU-only); the metrics say what was tried and picked."""
    from golf.io.checkpoint import load_model

    write_tokens(tmp_path / "tokens")
    write_params(tmp_path / "params.yaml", {"doc_masked_attention": True}, iterations=4, val_every=0)
    r = invoke(tmp_path)
    assert r.exit_code == 0, r.output
    m = json.loads((tmp_path / "metrics/train.json").read_text())["train"]
    assert m["attention_backend"] == "sdpa" and m["attention_order"] == "sdpa" and m["val_bpb"] > 0
    model, header = load_model(tmp_path / "artifacts/train/model.safetensors")
    assert header["model"]["doc_masked_attention"] is True and model.attention_backend == "sdpa"


def test_golf_train_document_masking_refuses_a_backend_that_cannot(tmp_path):
    write_tokens(tmp_path / "tokens")
    write_params(tmp_path / "params.yaml", {"doc_masked_attention": True})
    r = invoke(tmp_path, "--attention-backend", "cudnn")
    assert r.exit_code == 1 and "train.attention_backend = 'cudnn'" in r.output
    assert "model.doc_masked_attention = true" in r.output and "fa4, sdpa" in r.output


def test_golf_train_document_masking_needs_bos_in_every_shard(tmp_path):
    from golf.data.shards import shard_name, write_shard

    write_tokens(tmp_path / "tokens")
    write_shard(tmp_path / "tokens" / shard_name("train", 1), np.arange(1, 3001) % 28 + 1)  # ids 1..28: no BOS 0
    write_params(tmp_path / "params.yaml", {"doc_masked_attention": True})
    r = invoke(tmp_path)
    assert r.exit_code == 1 and "train_000001.bin: no BOS (token id 0)" in r.output, r.output
    write_params(tmp_path / "params.yaml")  # without masking the same shards train
    assert invoke(tmp_path, "--iterations", "2", "--val-every", "0").exit_code == 0


@pytest.mark.parametrize("scope", ["model", "hybrid"])
def test_hybrid_scope_compiles_one_whole_model_graph_and_trains_the_same_weights(scope, monkeypatch,
                                                                                 tiny_model_config):
    """compile_scope hybrid: the whole model compiles one graph, for the plain phase (inlining the
    compiled blocks), and the looped phase runs the blocks' own graphs; `model` scope compiles a second
    whole-model graph when looping switches on. Both train the weights of the uncompiled model (an
    eager backend: the same ATen ops)."""
    import torch._dynamo as dynamo

    from golf.artifact.model import GPT

    graphs = []

    def eager(gm, example_inputs):  # what dynamo traced: the whole model (it embeds the tokens) or a part
        graphs.append("whole" if any("embedding" in str(n.target) for n in gm.graph.nodes) else "part")
        return gm.forward

    tr, _ = corpus(seed=1, vocab=96)
    va, vb = corpus(600, seed=2, vocab=96)
    states = {}
    for mode in ("off", scope):
        dynamo.reset()
        monkeypatch.setattr(torch, "compile", functools.partial(torch.compile, backend=eager))
        torch.manual_seed(0)
        m = GPT(tiny_model_config)
        cfg = tcfg(iterations=4, warmup_steps=1, val_every=0, ema_decay=0.0, enable_looping_at=0.5,
                   compile="off" if mode == "off" else "on", compile_scope="model" if mode == "off" else mode)
        res = train(m, cfg, tr, va, vb, torch.device("cpu"), SOLO, progress=False)
        assert res.compiled == (mode != "off") and m.looping
        states[mode] = m.state_dict()
        monkeypatch.undo()
    dynamo.reset()
    assert graphs.count("whole") == (1 if scope == "hybrid" else 2)
    assert ("part" in graphs) == (scope == "hybrid")
    for k in states["off"]:
        torch.testing.assert_close(states[scope][k], states["off"][k], rtol=0, atol=0, msg=k)


@pytest.mark.slow  # two real inductor compiles on the CPU, side by side: about 40 s on 2 cores
def test_compile_ahead_hands_training_the_looped_graph(tmp_path, monkeypatch, tiny_model_config):
    """train.compile_ahead (golf/train/ahead.py): a helper process compiles the looped graph with inductor
    while training compiles the plain one and trains, and stops before running it; when looping switches on,
    training finds both compiled halves of the looped graph in inductor's on-disk caches (an AOTAutograd hit,
    FX graph hits) instead of compiling them. A key that differed between the two processes (sys.modules order:
    ahead.same_cache_keys; training's backend under compile_ahead_kernels, ahead.InductorThenKernels) would
    show here as misses."""
    import torch._dynamo as dynamo
    from torch._dynamo.utils import counters

    from golf.artifact.model import GPT
    from golf.train import ahead

    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "inductor"))  # cold, and the helper's too
    monkeypatch.delenv("FLASH_ATTENTION_CUTE_DSL_CACHE_ENABLED", raising=False)  # ahead.start sets it; restored
    dynamo.reset()
    counters.clear()
    mcfg = dataclasses.replace(tiny_model_config, num_layers=2, loop_start=1, loop_end=1, parallel_start_layer=-1,
                               xsa_last_n=0, unet_skips=False, skip_gates_enabled=False, smear_gate_enabled=False,
                               sparse_attn_gate_enabled=False)
    tr, _ = corpus(seed=1, vocab=96)
    va, vb = corpus(600, seed=2, vocab=96)
    cfg = tcfg(iterations=2, warmup_steps=1, val_every=0, ema_decay=0.0, enable_looping_at=0.5, compile="on",
               compile_ahead=True, compile_ahead_kernels=True, train_batch_tokens=2 * 24, grad_accum_steps=1)
    assert ahead.wanted(cfg, mcfg, torch.device("cpu"))
    model = GPT(mcfg)
    helper = ahead.start(mcfg, cfg, tr, torch.device("cpu"), 1)  # as golf/train/run.py does
    try:
        res = train(model, cfg, tr, va, vb, torch.device("cpu"), SOLO, progress=False, helper=helper)
    finally:
        ahead.stop(helper)
    dynamo.reset()
    assert res.compile_ahead and res.looping and math.isfinite(res.val_bpb)
    assert set(res.start_s) == {"setup", "plain", "ahead_wait", "ahead_slack", "looped", "ahead_kernels_wait"}
    assert counters["aot_autograd"]["autograd_cache_hit"] == 1  # the looped graph
    assert counters["inductor"]["fxgraph_cache_hit"] == 2  # its forward and its backward


def test_with_compile_ahead_the_looped_warm_up_comes_at_the_switch_and_trains_nothing(monkeypatch, capsys,
                                                                                    tiny_model_config):
    """With a compile_ahead helper, the warm-up before the first step runs the plain graph alone; at the switch,
    training waits for the helper (ahead.finish) and warms the looped graph up there, off the train clock. Its
    steps are thrown away: the weights are those of a run that warmed both graphs up at the start (an eager
    backend: the same ATen ops in both)."""
    import torch._dynamo as dynamo

    from golf.artifact.model import GPT
    from golf.train import ahead

    events = []

    def eager(gm, example_inputs):
        events.append("compile")
        return gm.forward

    def finish(proc):
        events.append(("finish", proc))
        return True, 0.25, 2.0

    monkeypatch.setattr(ahead, "finish", finish)
    tr, _ = corpus(seed=1, vocab=96)
    va, vb = corpus(600, seed=2, vocab=96)
    states, order = {}, {}
    for helper in (None, "helper"):
        dynamo.reset()
        events.clear()
        monkeypatch.setattr(torch, "compile", functools.partial(torch.compile, backend=eager))
        torch.manual_seed(0)
        m = GPT(tiny_model_config)
        cfg = tcfg(iterations=4, warmup_steps=2, val_every=0, ema_decay=0.0, enable_looping_at=0.5, compile="on",
                   compile_ahead=True)
        res = train(m, cfg, tr, va, vb, torch.device("cpu"), SOLO, progress=False, helper=helper,
                    on_step=lambda step: events.append(step))
        states[helper], order[helper] = m.state_dict(), list(events)
        monkeypatch.undo()
        monkeypatch.setattr(ahead, "finish", finish)
    dynamo.reset()
    assert order[None] == ["compile", "compile", 1, 2, 3, 4]  # without a helper: both graphs before the first step
    # with one, the looped graph compiles at the switch, after the helper is waited for, with no step between
    assert order["helper"] == ["compile", 1, 2, ("finish", "helper"), "compile", 3, 4]
    assert res.compile_ahead and res.looping
    assert res.start_s["ahead_wait"] == 0.25 and res.start_s["ahead_slack"] == 2.0
    assert {"setup", "plain", "looped"} <= set(res.start_s)
    assert "train: looping on from step 3; its graph's warm-up took " in capsys.readouterr().err
    for k in states[None]:
        torch.testing.assert_close(states["helper"][k], states[None][k], rtol=0, atol=0, msg=k)


@pytest.mark.parametrize("over", [{}, {"compile_ahead": False}, {"compile": "off"}, {"enable_looping_at": 0.0},
                                  {"warmup_steps": 0}, {"compile_scope": "hybrid"}, {"num_loops": 0}])
def test_compile_ahead_wanted_only_where_training_compiles_two_whole_model_graphs(over, tiny_model_config):
    """ahead.wanted decides from the sections and the device alone (golf/train/run.py asks before the backend and
    the Stepper exist): at `model` scope, compiled, warm-up steps, looping switching on later in a model that
    loops."""
    from golf.train import ahead

    train_over = {k: v for k, v in over.items() if k != "num_loops"}
    mcfg = dataclasses.replace(tiny_model_config, num_loops=over.get("num_loops", 1))
    cfg = tcfg(**{"compile": "auto", "compile_ahead": True, **train_over})
    expected = not over
    assert ahead.wanted(cfg, mcfg, torch.device("cuda")) == expected
    assert not ahead.wanted(cfg, mcfg, torch.device("cpu"))  # compile auto: off on the CPU


def test_golf_train_starts_the_helper_after_the_init_and_stops_it_on_an_error(tmp_path, monkeypatch):
    """golf/train/run.py starts the compile_ahead helper once the model is initialised (the init's CPU threads
    slow down beside a starting helper), before the attention backend and the rest of the setup, which the
    helper's slack gains, and stops it whatever happens after: here the attention backend is refused."""
    import golf.artifact.model as model_module
    from golf.train import ahead, backend

    events = []
    monkeypatch.setattr(ahead, "wanted", lambda cfg, model_cfg, device: True)
    monkeypatch.setattr(ahead, "start", lambda *a: events.append("start") or "helper")
    monkeypatch.setattr(ahead, "stop", lambda proc: events.append(f"stop {proc}"))
    gpt, set_backend = model_module.GPT, backend.set_backend
    monkeypatch.setattr(model_module, "GPT", lambda cfg: events.append("init") or gpt(cfg))
    monkeypatch.setattr(backend, "set_backend", lambda *a: events.append("backend") or set_backend(*a))
    write_tokens(tmp_path / "tokens")
    write_params(tmp_path / "params.yaml", {"doc_masked_attention": True})
    r = invoke(tmp_path, "--attention-backend", "cudnn")
    assert r.exit_code == 1 and "train.attention_backend = 'cudnn'" in r.output
    assert events == ["init", "start", "backend", "stop helper"]


@pytest.mark.parametrize("exitcode, slack", [(0, 5.0), (1, 0.0)])
def test_compile_ahead_finish_says_how_long_the_helpers_graph_was_ready(tmp_path, exitcode, slack):
    """ahead.finish: a helper that put its graph in the caches 5 s before training needed it had 5 s of slack
    (what compiling anything more there would use up first) and kept training waiting for no longer than its
    exit; a failed helper has none."""
    import time
    from types import SimpleNamespace

    from golf.train import ahead

    tokens = tmp_path / "golf-ahead-x.npy"
    tokens.write_bytes(b"")
    proc = SimpleNamespace(join=lambda: None, exitcode=exitcode, tokens_file=str(tokens),
                           done_at=SimpleNamespace(value=time.time() - 5.0 if exitcode == 0 else 0.0))
    ok, waited, ready_for = ahead.finish(proc)
    assert ok == (exitcode == 0) and waited < 1.0 and not tokens.exists()
    assert ready_for == pytest.approx(slack, abs=1.0)


@pytest.mark.parametrize("fixed", [False, True])
def test_same_cache_keys_pickles_a_memory_format_whatever_the_import_order(fixed):
    """Inductor's cache keys pickle torch.contiguous_format (in the graph's tensor metadata). Plain pickle names
    it after the first module in sys.modules with a `torch` attribute, so two processes that import in another
    order compute other keys: compile_ahead's helper missed that way on the CPU. After ahead.same_cache_keys
    the bytes do not depend on the order."""
    import subprocess

    def pickled(module_first: bool) -> str:
        code = ["import pickle, sys, types"]
        if module_first:  # a module registered before torch, which then holds torch
            code.append("first = sys.modules.setdefault('golf_first', types.ModuleType('golf_first'))")
        code.append("import torch")
        if module_first:
            code.append("first.torch = torch")
        if fixed:
            code.append("from golf.train import ahead; ahead.same_cache_keys()")
        code.append("sys.stdout.write(pickle.dumps(torch.contiguous_format).hex())")
        return subprocess.run([sys.executable, "-c", "; ".join(code)], capture_output=True, text=True,
                              check=True).stdout

    assert (pickled(True) == pickled(False)) == fixed


@pytest.mark.parametrize("graphs, combo", [(False, False), (True, False), (False, True), (True, True)])
def test_inductor_options_are_inductor_config_keys(graphs, combo):
    """train.cuda_graphs and train.combo_kernels reach torch.compile as inductor config patches: each key one
    that this torch's inductor config has (a misspelt key would only fail at compile time, on the GPU)."""
    import torch._inductor.config as inductor_config

    from golf.train.loop import inductor_options

    options = inductor_options(tcfg(cuda_graphs=graphs, combo_kernels=combo))
    assert options == {k: True for k, on in (("triton.cudagraphs", graphs), ("combo_kernels", combo)) if on}
    for key in options:
        node = inductor_config
        for part in key.split("."):
            node = getattr(node, part)  # AttributeError: not a config key
        assert node is False  # off unless golf turns it on
