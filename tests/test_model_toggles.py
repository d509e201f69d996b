"""Issue 20's model toggles (CPU, tiny): the value residual (model.value_residual: every attention layer
after the first attends with lam*v + (1-lam)*v0, v0 the first layer's values) and the B-spline KAN MLP
(model.mlp_kind = kan). What each does, that off builds the plain model, and that both survive the
training step, Hessian sites, GPTQ + dequantize, the container, checkpoint headers, LoRA TTT and the
bundled train_gpt.py."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import test_ttt
import torch
from test_doc_mask import documents, ids
from test_doc_mask import make as make_masked
from test_model import B, T, make, regional_graphs, tokens  # the perturbed tiny GPT and token batches
from test_toggles_off import PARAMS, SHRINK_MODEL, SHRINK_TRAIN, stream
from test_ttt import bundled_script_and_stage_bpb, lora

from golf.artifact.model import GPT
from golf.artifact.model.layers import KANMLP, MLP, KANLinear, bspline_basis
from golf.artifact.model.load import model_from_header
from golf.errors import GolfError
from golf.params import section_dict

tokens_dir = test_ttt.tokens_dir  # the fixture: a 320-piece tokenizer and val shards (module scope)

VR = dict(value_residual=True)
KAN = dict(mlp_kind="kan")
# the value residual beside each structural option: the tiny config loops layers 1..2, runs two lanes from
# layer 3, XSA everywhere, GQA 4/2 and U-Net skips; the others put the first layer in a lane, loop the
# first layer itself, mask documents with a value embedding on layer 0, and use full multi-head attention
STRUCTURES = {
    "record_like": {},
    "first_layer_in_lanes": dict(unet_skips=False, skip_gates_enabled=False, num_loops=0, parallel_start_layer=0),
    "loop_from_layer_0": dict(parallel_start_layer=-1, loop_start=0, loop_end=1),
    "doc_masked_ve0": dict(doc_masked_attention=True, ve_dim=6, ve_layers=(0, 3)),
    "mha_no_xsa": dict(num_kv_heads=4, xsa_last_n=0),
}


def attention_calls(model: GPT, idx: torch.Tensor, adapter=None) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(output, values attended with) of every attention call of one forward, in virtual-layer order."""
    seen: list[tuple[torch.Tensor, torch.Tensor]] = []
    hooks = [b.attn.register_forward_hook(lambda m, a, out: seen.append(out)) for b in model.blocks]
    with torch.no_grad():
        model(idx, adapter)
    for h in hooks:
        h.remove()
    return seen


# ---- value residual -------------------------------------------------------------------------

def test_value_residual_off_adds_no_parameter_and_lam_one_is_the_plain_model(tiny_model_config):
    plain = make(tiny_model_config)
    on = make(tiny_model_config, **VR)
    assert set(on.state_dict()) - set(plain.state_dict()) == {"value_lambdas"}
    assert not hasattr(plain, "value_lambdas")
    assert torch.equal(GPT(dataclasses.replace(tiny_model_config, **VR)).value_lambdas, torch.full((5,), 0.5))
    on.load_state_dict({**plain.state_dict(), "value_lambdas": torch.ones(5)})
    for looping in (False, True):
        plain.looping = on.looping = looping
        with torch.no_grad():
            torch.testing.assert_close(on(tokens()), plain(tokens()), rtol=0, atol=0)


@pytest.mark.parametrize("name", list(STRUCTURES))
def test_value_residual_mixes_the_first_layers_values_into_every_later_layer(tiny_model_config, name):
    """The first attention call is the plain model's; every later one attends with lam*v + (1-lam)*v0,
    so moving lam moves every later layer's values (and output) and never the first's."""
    plain = make(tiny_model_config, **STRUCTURES[name])
    on = make(tiny_model_config, **STRUCTURES[name], **VR)
    on.load_state_dict({**plain.state_dict(), "value_lambdas": on.value_lambdas.detach()}, strict=True)
    plain.looping = on.looping = True
    idx = tokens()
    base = attention_calls(plain, idx)
    calls = {}
    for lam in (0.2, 0.7):
        with torch.no_grad():
            on.value_lambdas.fill_(lam)
        calls[lam] = attention_calls(on, idx)
        assert len(calls[lam]) == on.num_virtual_layers == len(base)
        torch.testing.assert_close(calls[lam][0], base[0], rtol=0, atol=0)
    v0 = calls[0.2][0][1]
    for (y_a, v_a), (y_b, v_b) in zip(calls[0.2][1:], calls[0.7][1:]):
        assert (v_a - v_b).abs().max() > 1e-3 and (y_a - y_b).abs().max() > 1e-4
        assert v_a.shape == v0.shape == (B, T, on.cfg.num_kv_heads, on.cfg.head_dim)  # per KV head
    # at the second call both models saw the same input, so the mix is exactly lerp(v0, v_plain, lam)
    for lam in (0.2, 0.7):
        torch.testing.assert_close(calls[lam][1][1], torch.lerp(v0, base[1][1], lam), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", list(STRUCTURES))
def test_value_residual_gradient_reaches_lam_and_stays_causal(tiny_model_config, name):
    model = make(tiny_model_config, **STRUCTURES[name], **VR)
    model.looping = True
    seq = model.cfg.layer_sequence(True)
    model.nll(tokens(), tokens(1)).mean().backward()
    g = model.value_lambdas.grad
    assert all(bool(g[layer] != 0) == (layer in seq[1:]) for layer in range(model.cfg.num_layers)), g
    idx, other = tokens(2), tokens(2)
    other[:, 7:] = tokens(3)[:, 7:]
    with torch.no_grad():
        a, b = model(idx), model(other)
    torch.testing.assert_close(a[:, :7], b[:, :7], rtol=0, atol=1e-5)
    assert (a[:, 7:] - b[:, 7:]).abs().max() > 1e-4


def test_value_residual_adapter_on_v_reaches_every_later_layer(tiny_model_config):
    """A LoRA-style delta on the first slot's c_v is part of v0, so it moves the values every later
    layer attends with by (1 - lam) * delta on top of whatever its own input changed."""
    model = make(tiny_model_config, **VR)
    model.looping = True
    idx = tokens()
    bump = lambda site, x: torch.ones(*x.shape[:-1], 16) if site == "0.attn.c_v" else None  # noqa: E731
    plain, bumped = attention_calls(model, idx), attention_calls(model, idx, bump)
    assert torch.allclose(bumped[0][1] - plain[0][1], torch.ones(()))
    assert all((b[1] - p[1]).abs().max() > 1e-3 for p, b in zip(plain[1:], bumped[1:]))


# ---- KAN MLP --------------------------------------------------------------------------------

@pytest.mark.parametrize("grid, order", [(5, 3), (1, 0), (1, 1), (3, 2), (7, 4), (16, 3)])
def test_bspline_basis_is_a_nonnegative_partition_of_unity_with_local_support(grid, order):
    x = torch.rand(4000, generator=torch.Generator().manual_seed(grid * 10 + order), dtype=torch.float64) * 4 - 2
    x = torch.cat((x, torch.linspace(-2, 2, grid + 1, dtype=torch.float64)[:-1]))  # the knots themselves
    b = bspline_basis(x, grid, order)
    assert b.shape == (len(x), grid + order)
    assert (b >= 0).all()
    torch.testing.assert_close(b.sum(-1), torch.ones(len(x), dtype=torch.float64), rtol=0, atol=1e-12)
    live = b > 1e-12  # (a knot's value may round to a few ulps instead of 0)
    assert (live.sum(-1) <= order + 1).all()  # a point sees order + 1 bases at most
    # each basis is nonzero on at most order + 1 grid intervals
    cell = ((x + 2) / (4 / grid)).floor().long()
    for j in range(grid + order):
        hit = cell[live[:, j]]
        assert hit.numel() == 0 or hit.max() - hit.min() <= order


def test_kan_off_is_the_dense_mlp_and_on_is_sized_near_it(tiny_model_config):
    plain = GPT(tiny_model_config)
    assert all(type(b.mlp) is MLP for b in plain.blocks)
    assert not any(isinstance(m, KANLinear) for m in plain.modules())
    cfg = dataclasses.replace(tiny_model_config, **KAN)
    kan = GPT(cfg)
    assert all(type(b.mlp) is KANMLP for b in kan.blocks)
    assert {k for k in kan.state_dict() if ".mlp." not in k} == {k for k in plain.state_dict() if ".mlp." not in k}
    g = cfg.kan_grid + cfg.kan_order
    d, h = cfg.model_dim, cfg.kan_hidden
    mlp = kan.blocks[0].mlp
    assert [tuple(lin.weight.shape) for lin in (mlp.fc.base, mlp.fc.spline, mlp.proj.base, mlp.proj.spline)] == [
        (h, d), (h, d * g), (d, h), (d, h * g)]
    n = sum(p.numel() for p in mlp.parameters())
    dense = sum(p.numel() for p in plain.blocks[0].mlp.parameters())
    assert n == cfg.mlp_weights() and dense - 2 * d * (1 + g) < n <= dense  # within one hidden unit of dense
    assert all(lin.weight.abs().sum() == 0 for lin in (mlp.proj.base, mlp.proj.spline))  # output starts at 0


@pytest.mark.parametrize("over", [KAN, dict(**KAN, kan_grid=12, kan_order=1), dict(**KAN, mlp_mult=0.5), VR])
def test_weights_floor_bounds_the_toggled_count(tiny_model_config, over):
    """The loader's pre-build floor (config.weights_floor) counts the KAN MLP as built: never above the
    real count, within 10% of it; a header asking for a bigger spline than the file holds fails first."""
    cfg = dataclasses.replace(tiny_model_config, **over)
    real = sum(t.numel() for t in GPT(cfg).state_dict().values())
    assert cfg.weights_floor() <= real <= 1.1 * cfg.weights_floor()
    if cfg.mlp_kind == "kan":
        header = {"model": {**section_dict(cfg), "mlp_mult": 1e6, "kan_grid": 60}}
        with pytest.raises(GolfError, match="needs at least .* weights, the file holds"):
            model_from_header(header, GPT(cfg).state_dict(), source="m.golf")


@pytest.mark.parametrize("over, key", [(dict(kan_grid=0), "kan_grid"), (dict(kan_order=-1), "kan_order"),
                                       (dict(kan_grid=40, kan_order=30), "kan_order"),
                                       (dict(moe_num_experts=2), "mlp_kind")])
def test_kan_config_rejects(tiny_model_config, over, key):
    with pytest.raises(ValueError, match=rf"^model\.{key} = "):
        dataclasses.replace(tiny_model_config, **KAN, **over)
    dataclasses.replace(tiny_model_config, **{k: v for k, v in over.items() if k != "moe_num_experts"})  # dense: unused


def test_kan_sites_feed_gptq_the_linears_real_inputs(tiny_model_config):
    """Every KAN Linear is a Hessian site whose hook sees that Linear's own input: silu(x) for base,
    the B-spline features (in * (grid + order) columns) for spline; Muon gets both weights."""
    from golf.quant.hessian import collect_hessians

    model = make(tiny_model_config, **KAN, **VR)
    model.looping = True
    sites, params = model.hessian_sites(), dict(model.named_parameters())
    matrices = {n for n, p in params.items() if p.ndim == 2 and n.endswith(".weight")}
    assert set(sites) == matrices - {"smear.smear_gate.weight"}
    groups = model.param_groups()
    names = {id(p): n for n, p in model.named_parameters()}
    assert {names[id(p)] for p in groups["matrix"]} == set(sites) - {"tok_emb.weight"}
    assert "value_lambdas" in {names[id(p)] for p in groups["scalar"]}
    H, _ = collect_hessians(model, [tokens(5), tokens(6)])
    for n, h in H.items():
        assert h.shape == (params[n].shape[1],) * 2, n
    fc = model.blocks[0].mlp.fc
    x = torch.randn(5, 32)
    seen = {}
    for part in ("base", "spline"):
        getattr(fc, part).register_forward_hook(lambda m, a, o, part=part: seen.__setitem__(part, a[0]))
    fc(x)
    torch.testing.assert_close(seen["base"], torch.nn.functional.silu(x))
    torch.testing.assert_close(seen["spline"], bspline_basis(2 * torch.tanh(x / 2), 5, 3).flatten(-2))


@pytest.mark.parametrize("over", [VR, KAN], ids=["value_residual", "kan"])
def test_a_tiny_model_with_the_toggle_trains_and_its_loss_falls(over):
    """The real train loop (Muon on the matrices, AdamW on the rest) at the toggles-off test's shapes."""
    from golf.artifact.model.config import ModelConfig
    from golf.artifact.runtime import Dist
    from golf.params import load_section
    from golf.train.config import TrainConfig
    from golf.train.loop import seed_everything, train

    mcfg = load_section(PARAMS, "model", ModelConfig, {**SHRINK_MODEL, **over})
    tcfg = load_section(PARAMS, "train", TrainConfig, {**SHRINK_TRAIN, "iterations": 12})
    tr, _ = stream(4000, 1)
    va, vb = stream(400, 2)
    seed_everything(0)
    model = GPT(mcfg)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    res = train(model, tcfg, tr, va, vb, torch.device("cpu"), Dist(0, 0, 1), progress=False)
    losses = [r["train_loss"] for r in res.rows]
    assert all(map(math.isfinite, losses)) and np.mean(losses[-3:]) < losses[0] - 0.3, losses
    moved = {k for k, v in model.state_dict().items() if not torch.equal(v, before[k])}
    want = {"value_lambdas"} if over is VR else {k for k in before if ".mlp.fc.spline" in k or ".mlp.proj.base" in k}
    assert want and want <= moved


def test_regional_compile_of_the_toggled_model_matches_eager_and_never_recompiles(tiny_model_config):
    """compile_blocks: the first slot (returns v0) and the later ones (mix it in) are a few graphs, the
    same NLL as eager, and switching looping on compiles nothing new (lam is a tensor, not a constant)."""
    model = make(tiny_model_config, **KAN, **VR)
    eager = make(tiny_model_config, **KAN, **VR)
    assert regional_graphs(model, eager) <= 5 < len(model.blocks) + 1


# ---- the files every later stage reads -------------------------------------------------------

def quantized(model: GPT):
    """(qmodel tensors, qmodel header) of `model` by real GPTQ at params.yaml's quantize settings."""
    from golf.params import load_section
    from golf.quant import qmodel
    from golf.quant.config import QuantizeConfig
    from golf.quant.hessian import collect_hessians

    qcfg = load_section(PARAMS, "quantize", QuantizeConfig, {"device": "cpu", "passthrough_numel": 256})
    H, _ = collect_hessians(model, [tokens(s) for s in range(6)])
    state = {k: v.detach() for k, v in model.state_dict().items()}
    return qmodel.quantize_state_dict(state, H, qcfg, {"model": section_dict(model.cfg)},
                                      names=model.hessian_sites())[:2]


def test_gptq_dequantize_and_container_round_trip_the_toggled_model(tiny_model_config):
    from golf.artifact.container import decode
    from golf.artifact.dequant import dequantize
    from golf.compress import container
    from golf.compress.config import CompressConfig
    from golf.params import load_section

    model = make(tiny_model_config, **KAN, **VR)
    model.looping = True
    tensors, header = quantized(model)
    kan = [n for n in model.hessian_sites() if ".mlp." in n]
    assert len(kan) == 4 * 5 and all(header["plan"][n]["kind"] == "gptq" and header["plan"][n]["group"] == "mlp"
                                      and f"{n}.q" in tensors for n in kan)
    blob = container.encode(tensors, header, load_section(PARAMS, "compress", CompressConfig))
    back, back_header = decode(blob, workers=1)
    deq, direct = dequantize(back, back_header), dequantize(tensors, header)
    state = model.state_dict()
    assert set(deq) == set(state) and all(torch.equal(deq[n], direct[n]) for n in deq)
    torch.testing.assert_close(deq["value_lambdas"], state["value_lambdas"], rtol=1e-3, atol=0)  # fp16 passthrough
    loaded = model_from_header(back_header, deq)
    assert loaded.cfg == model.cfg and loaded.looping
    x, y = tokens(7), tokens(8)
    with torch.no_grad():
        a, b = loaded.nll(x, y).mean(), model.nll(x, y).mean()
    assert abs(a - b) < 0.05 * b


@pytest.mark.parametrize("state_from, header_from", [(VR, {}), ({}, VR), (KAN, {}), ({}, KAN)])
def test_toggle_tensors_load_only_when_the_header_says_the_toggle_is_on(tiny_model_config, state_from, header_from):
    state = GPT(dataclasses.replace(tiny_model_config, **state_from)).state_dict()
    header = {"model": section_dict(dataclasses.replace(tiny_model_config, **header_from))}
    with pytest.raises(GolfError, match="do not match the header's model config|needs at least"):
        model_from_header(header, state, source="model.golf")


def test_checkpoint_header_rebuilds_the_toggled_model(tiny_model_config, tmp_path):
    from golf.io.checkpoint import load_model, save_model

    model = make(tiny_model_config, **KAN, **VR)
    save_model(tmp_path / "m.safetensors", model, {})
    loaded, header = load_model(tmp_path / "m.safetensors")
    m = header["model"]
    assert (m["value_residual"], m["mlp_kind"], m["kan_grid"], m["kan_order"]) == (True, "kan", 5, 3)
    model.looping = True
    with torch.no_grad():
        torch.testing.assert_close(loaded(tokens()), model(tokens()), rtol=0, atol=0)


def test_toggled_model_under_document_masking_scores_each_document_as_if_alone(tiny_model_config):
    """v0 is per token and the KAN MLP per position, so neither leaks across a BOS (float64)."""
    model = make_masked(tiny_model_config, **KAN, **VR, ve_dim=6, ve_layers=(0, 3))
    model.looping = True
    x, y = ids(1), ids(2)
    packed = model.nll(x, y)
    for r in range(len(x)):
        for s, e in documents(x[r]):
            torch.testing.assert_close(packed[r, s:e], model.nll(x[r:r + 1, s:e], y[r:r + 1, s:e])[0],
                                       rtol=1e-9, atol=1e-9)


def test_lora_ttt_runs_on_the_toggled_model(tiny_model_config):
    """LoRA TTT's sites on the toggled GPT: c_v of every slot (feeding v0 at slot 0) and the KAN MLP's
    output ("<slot>.mlp", d -> d) adapt, every token is scored once."""
    from golf.artifact.scoring import Totals
    from golf.eval import lora_ttt

    torch.manual_seed(0)
    model = GPT(dataclasses.replace(tiny_model_config, **KAN, **VR))
    model.looping = True
    dims = lora_ttt.adapter_dims(model)
    for slot in range(model.num_virtual_layers):
        assert dims[f"{slot}.mlp"] == (32, 32) and dims[f"{slot}.attn.c_v"] == (32, 16)
    bump = lambda site, x: torch.ones(*x.shape[:-1], 32) if site == "2.mlp" else None  # noqa: E731
    with torch.no_grad():
        assert (model(tokens(), bump) - model(tokens())).abs().max() > 1e-4
    rng = np.random.default_rng(0)
    tok = rng.integers(2, 96, size=90).astype(np.uint16)
    tok[[0, 30, 61]] = 1
    vb = np.where(tok == 1, 0, 2).astype(np.uint16)
    tot = Totals(vb, len(tok), keep_tokens=True)
    res, det = lora(model, tok, vb, bos_id=1, totals=tot)
    assert (tot.count[1:] == 1).all() and math.isfinite(res.bpb) and det["lora_steps"] > 0


def test_bundled_script_scores_the_toggled_model(tmp_path, tokens_dir, tiny_model_config):
    """train_gpt.py alone (golf imports blocked) rebuilds the value-residual KAN model from the artifact's
    header and scores the same sliding-window BPB as `golf ttt-eval`."""
    got, want, raw = bundled_script_and_stage_bpb(
        tmp_path, tokens_dir, dataclasses.replace(tiny_model_config, vocab_size=320, **KAN, **VR))
    assert abs(float(got["val_bpb"]) - want) < 1e-9 and int(got["bytes"]) == raw
