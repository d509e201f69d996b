"""golf.artifact.model: config checks, every option's forward/backward, graph structure, causality,
the adapter protocol, Hessian sites, optimizer groups and the checkpoint round trip (CPU, tiny)."""

from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.nn.functional as F

from golf.artifact.model import GPT, ModelConfig
from golf.artifact.model import gpt as gpt_module
from golf.artifact.model.attention import select_backend
from golf.artifact.model.layers import SmearGate
from golf.errors import GolfError
from golf.io.checkpoint import load_model, save_model
from golf.io.tensors import save_tensors
from golf.params import field_docs

B, T = 3, 16

# every optional part, alone or against the all-on tiny config of conftest.py
OPTIONS = {
    "record_like": {},
    "bare": dict(activation="relu2", rope_dims=8, ln_scale=False, xsa_last_n=0, unet_skips=False,
                 skip_gates_enabled=False, num_loops=0, parallel_start_layer=-1, smear_gate_enabled=False,
                 sparse_attn_gate_enabled=False, tie_embeddings=False),
    "unet_plain_skips": dict(skip_gates_enabled=False, parallel_start_layer=-1, num_loops=0),
    "nope": dict(rope_dims=0),
    "bigram": dict(bigram_vocab_size=40),
    "value_embed": dict(ve_dim=10, ve_layers=(2, 4)),
    "dense_gate": dict(sparse_attn_gate_enabled=False, gated_attn_enabled=True),
    "untied": dict(tie_embeddings=False),
    "lanes_no_unet": dict(unet_skips=False, skip_gates_enabled=False, num_loops=0, parallel_start_layer=1),
    "loop_no_lanes": dict(parallel_start_layer=-1, num_loops=2, loop_start=0, loop_end=1),
}
CASES = [(name, looping) for name in OPTIONS for looping in (False, True)]


def make(cfg: ModelConfig, seed: int = 0, randomize: bool = True, **overrides) -> GPT:
    """A GPT whose zero-initialised parts are perturbed, so every path carries signal."""
    torch.manual_seed(seed)
    model = GPT(dataclasses.replace(cfg, **overrides))
    if randomize:
        gen = torch.Generator().manual_seed(seed + 1)
        with torch.no_grad():
            for p in model.parameters():
                p.add_(0.2 * torch.randn(p.shape, generator=gen))
    return model


def tokens(seed: int = 0, vocab: int = 96) -> torch.Tensor:
    return torch.randint(2, vocab, (B, T), generator=torch.Generator().manual_seed(seed))


# ---- config -------------------------------------------------------------------------------

def test_every_field_documented(tiny_model_config):
    names = [f.name for f in dataclasses.fields(ModelConfig)]
    assert sorted(field_docs(ModelConfig)) == sorted(names)
    assert all(f.default is dataclasses.MISSING for f in dataclasses.fields(ModelConfig))


@pytest.mark.parametrize("key, value", [
    ("num_kv_heads", 3), ("model_dim", 30), ("rope_dims", 10), ("rope_dims", 3), ("loop_end", 5),
    ("loop_start", 3), ("parallel_start_layer", 1), ("parallel_start_layer", 2), ("bos_id", 96),
    ("xsa_last_n", 6), ("gated_attn_enabled", True), ("ve_layers", (7,)), ("bigram_vocab_size", 1),
    ("gate_window", 0), ("logit_softcap", 0.0), ("mlp_mult", 0.0), ("num_loops", 17),
])
def test_config_rejects_impossible(tiny_model_config, key, value):
    with pytest.raises(ValueError, match=r"^model\.\w+ = "):
        dataclasses.replace(tiny_model_config, **{key: value})


@pytest.mark.parametrize("name", [*OPTIONS, "moe", "factorized"])
def test_weights_floor_bounds_the_real_count(tiny_model_config, name):
    """The loader refuses a header by this floor before building, so it must never exceed the real
    count (a false refusal), and stays close to it (a crafted header gains little room)."""
    over = {"moe": dict(moe_num_experts=3, moe_top_k=2), "factorized": dict(embed_dim=16)}.get(name, OPTIONS.get(name))
    cfg = dataclasses.replace(tiny_model_config, **over)
    real = sum(t.numel() for t in GPT(cfg).state_dict().values())
    assert cfg.weights_floor() <= real <= 1.1 * cfg.weights_floor()


def test_a_header_asking_for_more_weights_than_the_file_holds_fails_before_building(tiny_model_config, tmp_path):
    from golf.artifact.model.load import model_from_header
    from golf.params import section_dict

    state = GPT(tiny_model_config).state_dict()
    for key, value in (("model_dim", 2**20), ("vocab_size", 2**40), ("mlp_mult", 1e9)):
        header = {"model": {**section_dict(tiny_model_config), key: value}}
        with pytest.raises(GolfError, match="needs at least .* weights, the file holds 45,"):
            model_from_header(header, state, source="m.golf")


@pytest.mark.parametrize("text, why", [("{not json", "not JSON"), ("[1, 2]", "JSON list, not an object"),
                                       ('"golf"', "JSON str, not an object")])
def test_a_checkpoint_header_that_is_not_a_json_object_is_one_golf_error(tmp_path, text, why):
    from safetensors.torch import save_file

    path = tmp_path / "m.safetensors"
    save_file({"w": torch.zeros(2)}, str(path), metadata={"golf": text})
    with pytest.raises(GolfError, match=f"m.safetensors: the golf header is (a )?{why}"):
        load_model(path)


def test_skip_gates_need_unet(tiny_model_config):
    with pytest.raises(ValueError, match="model.skip_gates_enabled"):
        dataclasses.replace(tiny_model_config, unet_skips=False, parallel_start_layer=-1)


# ---- every option runs, forward and backward ------------------------------------------------

@pytest.mark.parametrize("name, looping", CASES)
def test_forward_backward(tiny_model_config, name, looping):
    model = make(tiny_model_config, **OPTIONS[name])
    model.looping = looping
    idx = tokens()
    logits = model(idx)
    assert logits.shape == (B, T, 96) and logits.dtype == torch.float32
    assert logits.abs().max() <= 30.0
    loss = model.nll(idx, tokens(1)).mean()
    loss.backward()
    assert torch.isfinite(loss)
    grads = {n: p.grad for n, p in model.named_parameters()}
    assert all(g is None or torch.isfinite(g).all() for g in grads.values())
    # every block weight takes part (looped layers are shared, not copied)
    for n, g in grads.items():
        if n.startswith("blocks.") and n.endswith(".weight"):
            assert g is not None and g.abs().sum() > 0, n


@pytest.mark.parametrize("name, looping", CASES)
def test_causal(tiny_model_config, name, looping):
    """Changing tokens after t never changes logits at positions <= t."""
    model = make(tiny_model_config, **OPTIONS[name])
    model.looping = looping
    idx = tokens(2)
    t0 = 6
    other = idx.clone()
    other[:, t0 + 1:] = tokens(3)[:, t0 + 1:]
    with torch.no_grad():
        a, b = model(idx), model(other)
    torch.testing.assert_close(a[:, : t0 + 1], b[:, : t0 + 1], rtol=0, atol=1e-5)
    assert (a[:, t0 + 1:] - b[:, t0 + 1:]).abs().max() > 1e-4  # the change did reach later positions


def test_smear_gate_bos_mask(tiny_model_config):
    smear = SmearGate(tiny_model_config)
    with torch.no_grad():
        smear.smear_gate.weight.normal_()
        smear.smear_lambda.fill_(0.7)
    idx = tokens(4)
    idx[:, 5] = tiny_model_config.bos_id
    x = torch.randn(B, T, 32, generator=torch.Generator().manual_seed(5))
    y = smear(x, idx)
    torch.testing.assert_close(y[:, 5], x[:, 5], rtol=0, atol=0)  # BOS row untouched
    torch.testing.assert_close(y[:, 0], x[:, 0], rtol=0, atol=0)  # nothing before position 0
    assert (y[:, 6] - x[:, 6]).abs().max() > 1e-3  # other rows do smear
    # at model level: the previous document's last token cannot reach the BOS embedding
    model = make(tiny_model_config)
    other = idx.clone()
    other[:, 4] = (idx[:, 4] + 7) % 96
    with torch.no_grad():
        e1, e2 = model._embed(idx), model._embed(other)
    torch.testing.assert_close(e1[:, 5], e2[:, 5], rtol=0, atol=0)
    assert (e1[:, 4] - e2[:, 4]).abs().max() > 0


# ---- graph structure ----------------------------------------------------------------------

def test_record_layer_sequence(tiny_model_config):
    cfg = dataclasses.replace(tiny_model_config, num_layers=11, num_loops=2, loop_start=3, loop_end=5,
                              parallel_start_layer=8, xsa_last_n=11)
    model = GPT(cfg)
    seq, n_enc, n_skips = model._split(True)
    assert seq == [0, 1, 2] + [3, 4, 5] * 3 + [6, 7, 8, 9, 10]
    assert seq[:n_enc] == [0, 1, 2, 3, 4, 5, 3, 4] and n_skips == 8
    assert model._split(False) == (list(range(11)), 5, 5)
    assert model.skip_weights.shape == (8, 32)
    assert model.num_virtual_layers == 11
    model.looping = True
    assert model.num_virtual_layers == 17


def test_recurrence_shares_weights_and_changes_output(tiny_model_config):
    model = make(tiny_model_config)
    n_params = sum(p.numel() for p in model.parameters())
    calls: list[int] = []
    for i, blk in enumerate(model.blocks):
        blk.attn.register_forward_hook(lambda m, a, o, i=i: calls.append(i))
    idx = tokens()
    with torch.no_grad():
        plain = model(idx)
        assert calls == [0, 1, 2, 3, 4]
        calls.clear()
        model.looping = True
        looped = model(idx)
    assert calls == [0, 1, 2, 1, 2, 3, 4]  # layers 1..2 run twice, with the same modules
    assert sum(p.numel() for p in model.parameters()) == n_params
    assert (plain - looped).abs().max() > 1e-3


def test_parallel_lanes(tiny_model_config):
    """From layer 3 on the MLP reads lane 1 (= the stream before the layer), not x + attn."""
    model = make(tiny_model_config, num_loops=0)
    seen = {}
    model.blocks[2].register_forward_hook(lambda m, a, o: seen.__setitem__("x", o))
    model.blocks[3].mlp.fc.register_forward_hook(lambda m, a, o: seen.__setitem__("mlp_in", a[0]))
    idx = tokens()
    with torch.no_grad():
        model(idx)
    blk = model.blocks[3]
    expect = blk.mlp_norm(seen["x"]) * blk.ln_scale_factor
    torch.testing.assert_close(seen["mlp_in"], expect)
    # lane lambdas only get gradient from the parallel layers (3, 4)
    model.nll(idx, tokens(1)).mean().backward()
    g = model.parallel_post_lambdas.grad.abs().sum(dim=(1, 2))
    assert (g[:3] == 0).all() and (g[3:] > 0).all()
    assert (model.parallel_resid_lambdas.grad[3:].abs() > 0).all()
    # serial model: the MLP sees the stream after attention instead
    serial = make(tiny_model_config, num_loops=0, parallel_start_layer=-1)
    seen.clear()
    serial.blocks[2].register_forward_hook(lambda m, a, o: seen.__setitem__("x", o))
    serial.blocks[3].mlp.fc.register_forward_hook(lambda m, a, o: seen.__setitem__("mlp_in", a[0]))
    with torch.no_grad():
        serial(idx)
    assert (seen["mlp_in"] - serial.blocks[3].mlp_norm(seen["x"]) * blk.ln_scale_factor).abs().max() > 1e-3


def test_tied_head_has_no_duplicate(tiny_model_config):
    model = make(tiny_model_config)
    assert model.lm_head is None
    assert not any("lm_head" in k for k in model.state_dict())
    model.nll(tokens(), tokens(1)).mean().backward()
    assert model.tok_emb.weight.grad is not None


# ---- NLL, adapters, sites, groups ---------------------------------------------------------

@pytest.mark.parametrize("chunk", [1 << 26, 96 * 5])
def test_nll_matches_cross_entropy(tiny_model_config, monkeypatch, chunk):
    monkeypatch.setattr(gpt_module, "NLL_CHUNK_ELEMENTS", chunk)  # 5 rows: many chunks
    model = make(tiny_model_config)
    model.looping = True
    idx, tgt = tokens(), tokens(1)
    with torch.no_grad():
        nll = model.nll(idx, tgt)
        ref = F.cross_entropy(model(idx).flatten(0, 1), tgt.flatten(), reduction="none").view(B, T)
    assert nll.shape == (B, T) and nll.dtype == torch.float32
    torch.testing.assert_close(nll, ref)


@pytest.mark.parametrize("looping", [False, True])
def test_adapter_protocol(tiny_model_config, looping):
    model = make(tiny_model_config, ve_dim=10, ve_layers=(4,))
    model.looping = looping
    calls: dict[str, tuple] = {}

    def zero(site, x):
        out = {"c_q": 32, "c_k": 16, "c_v": 16, "proj": 32, "mlp": 32, "head": 96}[site.rsplit(".", 1)[-1]]
        calls[site] = tuple(x.shape)
        return torch.zeros(*x.shape[:-1], out)

    idx, tgt = tokens(), tokens(1)
    with torch.no_grad():
        base, base_nll = model(idx), model.nll(idx, tgt)
        torch.testing.assert_close(model(idx, adapter=zero), base, rtol=0, atol=0)
        torch.testing.assert_close(model.nll(idx, tgt, adapter=zero), base_nll, rtol=0, atol=0)
        torch.testing.assert_close(model(idx, adapter=lambda s, x: None), base, rtol=0, atol=0)
    n = model.num_virtual_layers
    expected = {f"{s}.attn.{p}" for s in range(n) for p in ("c_q", "c_k", "c_v", "proj")}
    expected |= {f"{s}.mlp" for s in range(n)} | {"head"}
    assert set(calls) == expected
    assert calls["0.attn.c_q"] == (B, T, 32) and calls[f"{n - 1}.attn.proj"] == (B, T, 32)
    assert calls["head"] == (B, T, 32) and calls["1.mlp"] == (B, T, 32)

    def bump(site, x):  # a nonzero delta at one looped slot changes the output
        return torch.ones(*x.shape[:-1], 32) if site == "2.mlp" else None
    with torch.no_grad():
        assert (model(idx, adapter=bump) - base).abs().max() > 1e-4


@pytest.mark.parametrize("tied", [True, False])
def test_hessian_sites(tiny_model_config, tied):
    model = make(tiny_model_config, bigram_vocab_size=40, ve_dim=10, ve_layers=(2,), tie_embeddings=tied)
    model.looping = True
    sites = model.hessian_sites()
    params = dict(model.named_parameters())
    matrices = {n for n, p in params.items() if p.ndim == 2 and n.endswith(".weight")}
    excluded = {"bigram.embed.weight", "ve.embed.weight", "smear.smear_gate.weight"}
    excluded |= set() if tied else {"tok_emb.weight"}
    assert set(sites) == matrices - excluded
    assert len([n for n in sites if n.startswith("blocks.")]) == 6 * 5
    seen: dict[str, list[int]] = {}
    for name, (module, where) in sites.items():
        def hook(m, args, out, name=name, where=where):
            x = args[0] if where == "input" else out
            seen.setdefault(name, []).append(x.shape[-1])
        module.register_forward_hook(hook)
    with torch.no_grad():
        model(tokens())
    for name in sites:
        assert set(seen[name]) == {params[name].shape[1]}, name
    assert len(seen["blocks.1.attn.c_q.weight"]) == 2  # looped layer: both passes


def test_param_groups_partition(tiny_model_config):
    model = make(tiny_model_config, bigram_vocab_size=40, ve_dim=10, ve_layers=(2,))
    groups = model.param_groups()
    ids = [id(p) for g in groups.values() for p in g]
    assert len(ids) == len(set(ids)) == len(list(model.parameters()))
    names = {id(p): n for n, p in model.named_parameters()}
    assert {names[id(p)] for p in groups["embed"]} == {"tok_emb.weight", "bigram.embed.weight", "ve.embed.weight"}
    assert all(p.ndim == 2 for p in groups["matrix"])
    assert set(model.hessian_sites()) - {"tok_emb.weight"} == {names[id(p)] for p in groups["matrix"]}


def test_compile_fullgraph(tiny_model_config):
    model = make(tiny_model_config, bigram_vocab_size=40, ve_dim=10, ve_layers=(2,))
    model.looping = True
    compiled = torch.compile(model, fullgraph=True, backend="eager")
    idx = tokens()
    with torch.no_grad():
        torch.testing.assert_close(compiled(idx), model(idx))


def test_backend_selection(tiny_model_config):
    assert select_backend("cpu") == "sdpa"
    model = GPT(tiny_model_config)
    assert model.attention_backend == "sdpa"
    with pytest.raises(ValueError):
        model.set_attention_backend("fa9")


# ---- checkpoint ---------------------------------------------------------------------------

def test_checkpoint_round_trip(tiny_model_config, tmp_path):
    model = make(tiny_model_config, bigram_vocab_size=40)
    path = tmp_path / "model.safetensors"
    save_model(path, model, {"train": {"seed": 3}, "val_bpb": 1.5})
    loaded, header = load_model(path)
    assert header["format"] == "golf.model" and header["version"] == 1
    assert header["train"] == {"seed": 3} and header["val_bpb"] == 1.5
    assert header["model"]["bigram_vocab_size"] == 40 and header["model"]["ve_layers"] == []
    assert loaded.cfg == model.cfg and loaded.looping  # num_loops > 0: later stages loop
    model.looping = True
    idx = tokens()
    with torch.no_grad():
        torch.testing.assert_close(loaded(idx), model(idx), rtol=0, atol=0)


def test_checkpoint_refuses_unknown(tiny_model_config, tmp_path):
    model = GPT(tiny_model_config)
    path = tmp_path / "m.safetensors"
    save_tensors(path, model.state_dict(), {"format": "golf.model", "version": 2, "model": {}})
    with pytest.raises(GolfError, match="v2"):
        load_model(path)
    save_tensors(path, model.state_dict(), {"format": "golf.qmodel", "version": 1, "model": {}})
    with pytest.raises(GolfError, match="golf.qmodel"):
        load_model(path)
    bad = tmp_path / "bad.safetensors"
    save_model(bad, model, {})
    from golf.io.tensors import load_tensors
    tensors, header = load_tensors(bad, "golf.model", 1)
    header["model"]["mlp_mult"] = 2.0  # valid config, but no longer the weights' shapes
    save_tensors(bad, tensors, header)
    with pytest.raises(GolfError, match="do not match"):
        load_model(bad)


def test_compile_blocks_shares_graphs(tiny_model_config):
    """Regional compile: one graph per distinct block form, none more when looping switches on,
    and the same NLL as the eager model."""
    model = make(tiny_model_config)
    eager = make(tiny_model_config)
    eager.load_state_dict(model.state_dict())
    # serial blocks, two-lane blocks and the head: a few graphs, not one per layer
    assert regional_graphs(model, eager) <= 4 < len(model.blocks) + 1


def regional_graphs(model: GPT, eager: GPT) -> int:
    """The graphs `model.compile_blocks` makes: its NLL equals `eager`'s with looping off, then on, and
    switching looping on compiles nothing new."""
    import torch._dynamo as dynamo
    from torch._dynamo.testing import CompileCounter

    counter = CompileCounter()
    dynamo.reset()
    model.compile_blocks(backend=counter, dynamic=False)
    idx = tokens()
    y = torch.roll(idx, -1, dims=1)
    model.looping = eager.looping = False
    torch.testing.assert_close(model.nll(idx, y), eager.nll(idx, y))
    before = counter.frame_count
    model.looping = eager.looping = True
    torch.testing.assert_close(model.nll(idx, y), eager.nll(idx, y))
    assert counter.frame_count == before
    dynamo.reset()
    return before


def rope_at_call(rotary, seq_len: int, device="cpu"):
    """The tables as Rotary computed them at every call before it kept them."""
    freqs = torch.outer(torch.arange(seq_len, device=device, dtype=torch.float32), rotary.inv_freq.to(device))
    return freqs.cos()[None, :, None, :], freqs.sin()[None, :, None, :]


def test_rope_tables_are_kept_bit_for_bit_as_computed_at_the_call_and_never_stored():
    from golf.artifact.model.attention import Rotary

    rotary = Rotary(16, 10000.0)
    for seq_len in (1, 37, 2048, Rotary.TABLE_LEN, Rotary.TABLE_LEN + 5):  # the last: past the tables
        for got, want in zip(rotary(seq_len, torch.device("cpu")), rope_at_call(rotary, seq_len)):
            assert got.shape == want.shape and torch.equal(got, want)
    assert rotary.state_dict() == {}
    rotary.double()  # a cast rebuilds them in the new precision: fp64 tables, not fp32 ones cast up
    cos, _ = rotary(300, torch.device("cpu"))
    assert cos.dtype == torch.float64 and torch.equal(cos, rope_at_call(rotary, 300)[0])
    assert not torch.equal(cos, rope_at_call(Rotary(16, 10000.0), 300)[0].double())


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_gpu_rope_tables_move_with_the_model_and_are_rebuilt_there():
    from golf.artifact.model.attention import Rotary

    rotary = Rotary(16, 10000.0).to("cuda")
    cos, sin = rotary(2048, torch.device("cuda", 0))
    assert cos.device.type == "cuda" and cos.data_ptr() == rotary.cos_table.data_ptr()  # a view, no compute
    want_cos, want_sin = rope_at_call(rotary, 2048, "cuda")
    assert torch.equal(cos, want_cos) and torch.equal(sin, want_sin)
