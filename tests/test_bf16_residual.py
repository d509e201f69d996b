"""train.bf16_residual (issue 17): under bf16 autocast the residual stream stays in bf16, as the record
script keeps it (golf/artifact/model/gpt.py `autocast_residual`); without autocast (every eval, CPU
training) the switch changes nothing. CPU autocast stands in for CUDA's: the casts are the same."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from test_model import make, tokens
from test_train import SOLO, corpus, tcfg

from golf.artifact.model import GPT
from golf.train.loop import train

# the tiny record-like model (loops, two lanes, gated skips, SmearGate, XSA, sparse gates), and one with
# every other part that meets the residual stream: bigram, value embeddings, value residual, no lanes
VARIANTS = {
    "record_like": {},
    "bigram_ve_vres": dict(bigram_vocab_size=40, ve_dim=6, ve_layers=(0, 3), value_residual=True,
                           parallel_start_layer=-1),
}


def model(cfg, variant: str, on: bool) -> GPT:
    m = make(cfg, **VARIANTS[variant])
    m.looping = True
    m.autocast_residual = on
    return m


def loss_and_grads(m: GPT, idx: torch.Tensor, autocast: bool) -> tuple[torch.Tensor, list[torch.Tensor]]:
    m.zero_grad(set_to_none=True)
    with torch.autocast(idx.device.type, dtype=torch.bfloat16, enabled=autocast):
        loss = m.nll(idx[:, :-1], idx[:, 1:]).mean()
    loss.backward()
    return loss.detach(), [p.grad.clone() for p in m.parameters() if p.grad is not None]


def residual_dtypes(m: GPT, idx: torch.Tensor) -> set[torch.dtype]:
    """The dtypes of every block's outputs (the stream, or both lanes) in one autocast forward."""
    seen: set[torch.dtype] = set()

    def recording(fn):
        def run(*args, **kwargs):
            out = fn(*args, **kwargs)
            seen.update(t.dtype for t in (out if isinstance(out, tuple) else (out,)) if t.dim() == 3)  # not v
            return out
        return run

    for b in m.blocks:
        b.forward, b.forward_parallel = recording(b.forward), recording(b.forward_parallel)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        m.nll(idx[:, :-1], idx[:, 1:])
    return seen


@pytest.mark.parametrize("variant", VARIANTS)
def test_without_autocast_it_changes_nothing(tiny_model_config, variant):
    idx = tokens(1)
    off, g_off = loss_and_grads(model(tiny_model_config, variant, False), idx, autocast=False)
    on, g_on = loss_and_grads(model(tiny_model_config, variant, True), idx, autocast=False)
    assert torch.equal(off, on)
    assert all(torch.equal(a, b) for a, b in zip(g_off, g_on, strict=True))


@pytest.mark.parametrize("variant", VARIANTS)
def test_under_autocast_the_stream_is_bf16_only_when_on(tiny_model_config, variant):
    idx = tokens(2)
    assert residual_dtypes(model(tiny_model_config, variant, False), idx) == {torch.float32}
    assert residual_dtypes(model(tiny_model_config, variant, True), idx) == {torch.bfloat16}


@pytest.mark.parametrize("variant", VARIANTS)
def test_under_autocast_loss_and_gradients_stay_close(tiny_model_config, variant):
    """bf16 rounding of the stream, nothing else: the loss within bf16 precision of the fp32 stream's,
    every gradient finite and pointing the same way."""
    idx = tokens(3)
    off, g_off = loss_and_grads(model(tiny_model_config, variant, False), idx, autocast=True)
    on, g_on = loss_and_grads(model(tiny_model_config, variant, True), idx, autocast=True)
    assert abs(on.item() - off.item()) <= 2e-2 * off.item()
    a, b = torch.cat([g.flatten() for g in g_on]), torch.cat([g.flatten() for g in g_off])
    assert torch.isfinite(a).all()
    assert torch.nn.functional.cosine_similarity(a, b, dim=0) > 0.99


def test_the_train_loop_leaves_the_model_fp32(tiny_model_config):
    """CPU training has no autocast, so bf16_residual changes no weight; the model leaves training with
    the switch off (evals and the artifact run the fp32 stream)."""
    tr, _ = corpus(seed=1)
    va, vb = corpus(1500, seed=2)
    cfg = dataclasses.replace(tiny_model_config, vocab_size=29, bos_id=0)
    states = []
    for flag in (False, True):
        m = make(cfg, seed=4)
        train(m, tcfg(iterations=3, warmup_steps=0, val_every=0, bf16_residual=flag), tr, va, vb,
              torch.device("cpu"), SOLO, progress=False)
        assert m.autocast_residual is False
        states.append(m.state_dict())
    assert all(torch.equal(states[0][k], states[1][k]) for k in states[0])


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_compiled_fullgraph_on_cuda(tiny_model_config):
    """As the train loop's `model` scope compiles it: one graph (fullgraph=True) under CUDA autocast,
    the stream bf16, and the loss of the eager bf16-stream model."""
    m = model(tiny_model_config, "record_like", True).cuda()
    idx = tokens(5).cuda()
    eager, _ = loss_and_grads(m, idx, autocast=True)
    torch._dynamo.reset()
    m.nll = torch.compile(m.nll, fullgraph=True, dynamic=False)
    compiled, grads = loss_and_grads(m, idx, autocast=True)
    torch.testing.assert_close(compiled, eager, rtol=1e-2, atol=1e-2)
    assert all(torch.isfinite(g).all() for g in grads)


def test_under_autocast_the_embedding_rows_are_rounded_before_smear_and_norm(tiny_model_config):
    """As the record's bf16 table gives them: the tensors the backward keeps for x0 are then bf16, not the
    fp32 pre-norm embedding that inductor had recomputed x0 from at every layer (twice the bytes)."""
    m = model(tiny_model_config, "record_like", True)
    assert m.bigram is None and m.embed_proj is None and m.smear is not None  # what `want` below spells out
    idx = tokens(4)[:, :-1]
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        x0 = m._embed(idx)
        rows = m.tok_emb(idx).to(torch.bfloat16)
        want = torch.nn.functional.rms_norm(m.smear(rows, idx), (rows.size(-1),))
    assert x0.dtype == torch.bfloat16 and torch.equal(x0, want)
