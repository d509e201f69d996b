"""Issue 9's study toggles outside train/eval: MoE MLP, multi-token prediction, factorized embedding
(golf.artifact.model); k-means codebook and Hadamard rotation (golf.quant) (CPU, tiny; `golf report`: test_report.py)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from test_model import B, T, make, tokens  # the same perturbed tiny GPT and token batches

from golf.artifact.dequant import dequantize, unrotate
from golf.artifact.model import GPT
from golf.artifact.model.moe import MoEMLP
from golf.io.checkpoint import load_model, save_model

ROOT = Path(__file__).resolve().parent.parent

STUDIES = {
    "moe": dict(moe_num_experts=3, moe_top_k=2),
    "moe_top1_serial": dict(moe_num_experts=4, moe_top_k=1, parallel_start_layer=-1, num_loops=0),
    "mtp": dict(mtp_heads=1),
    "embed_factor": dict(embed_dim=12),
    "embed_factor_untied": dict(embed_dim=12, tie_embeddings=False),
    "all_three": dict(moe_num_experts=3, moe_top_k=2, mtp_heads=1, embed_dim=12),
}
# looping only matters where the config loops (the tiny config does; moe_top1_serial does not)
CASES = [(name, looping) for name in STUDIES for looping in (False, True)
         if not (looping and STUDIES[name].get("num_loops") == 0)]




# ---- model: config, forward/backward, causality ------------------------------------------

@pytest.mark.parametrize("over", [dict(moe_num_experts=1), dict(moe_num_experts=-1),
                                  dict(moe_num_experts=3, moe_top_k=4), dict(moe_num_experts=3, moe_top_k=0),
                                  dict(mtp_heads=2), dict(embed_dim=32), dict(embed_dim=-1)])
def test_model_config_rejects(tiny_model_config, over):
    with pytest.raises(ValueError, match=rf"^model\.{next(reversed(over))} = "):
        dataclasses.replace(tiny_model_config, **over)


@pytest.mark.parametrize("name, looping", CASES)
def test_forward_backward(tiny_model_config, name, looping):
    model = make(tiny_model_config, **STUDIES[name])
    model.looping = looping
    idx, tgt = tokens(), tokens(1)
    logits = model(idx)
    assert logits.shape == (B, T, 96) and logits.abs().max() <= 30.0
    nll, mtp = model.nll_and_mtp(idx, tgt)
    torch.testing.assert_close(nll, model.nll(idx, tgt))
    loss = nll.mean() + 0.3 * model.aux_loss() + (0.5 * mtp.mean() if mtp is not None else 0.0)
    loss.backward()
    assert torch.isfinite(loss)
    for n, p in model.named_parameters():
        assert p.grad is None or torch.isfinite(p.grad).all(), n
        if n.startswith(("blocks.", "embed_proj", "head_proj", "mtp.")) and n.endswith(".weight"):
            assert p.grad is not None and p.grad.abs().sum() > 0, n  # every expert got tokens here


@pytest.mark.parametrize("name, looping", CASES)
def test_causal(tiny_model_config, name, looping):
    model = make(tiny_model_config, **STUDIES[name])
    model.looping = looping
    idx = tokens(2)
    t0 = 6
    other = idx.clone()
    other[:, t0 + 1:] = tokens(3)[:, t0 + 1:]
    tgt = tokens(4)
    with torch.no_grad():
        a, b = model(idx), model(other)
        _, ma = model.nll_and_mtp(idx, tgt)
        _, mb = model.nll_and_mtp(other, tgt)
    torch.testing.assert_close(a[:, : t0 + 1], b[:, : t0 + 1], rtol=0, atol=1e-5)
    assert (a[:, t0 + 1:] - b[:, t0 + 1:]).abs().max() > 1e-4
    if ma is not None:  # the t+2 head reads only positions <= t too
        torch.testing.assert_close(ma[:, : t0 + 1], mb[:, : t0 + 1], rtol=0, atol=1e-5)


# ---- model: sites, groups, checkpoint -----------------------------------------------------

@pytest.mark.parametrize("name", list(STUDIES))
def test_hessian_sites_and_collection(tiny_model_config, name):
    from golf.quant.hessian import collect_hessians

    model = make(tiny_model_config, **STUDIES[name])
    model.looping = True
    sites = model.hessian_sites()
    params = dict(model.named_parameters())
    matrices = {n for n, p in params.items() if p.ndim == 2 and n.endswith(".weight")}
    excluded = {"smear.smear_gate.weight"} | {n for n in matrices if n.startswith("mtp.")}
    if not model.cfg.tie_embeddings:
        excluded.add("tok_emb.weight")
    assert set(sites) == matrices - excluded
    H, n_tok = collect_hessians(model, [tokens(5), tokens(6)])  # every site runs (experts included)
    assert n_tok == 2 * B * T
    for n, h in H.items():
        cols = params[n].shape[1]
        assert h.shape == (cols, cols), n
    if model.cfg.embed_dim:
        assert sites["embed_proj.weight"][0] is model.embed_proj
        if model.cfg.tie_embeddings:
            assert sites["tok_emb.weight"] == (model.head_proj, "output") and H["tok_emb.weight"].shape == (12, 12)


@pytest.mark.parametrize("name", list(STUDIES))
def test_param_groups_partition(tiny_model_config, name):
    model = make(tiny_model_config, **STUDIES[name])
    groups = model.param_groups()
    ids = [id(p) for g in groups.values() for p in g]
    assert len(ids) == len(set(ids)) == len(list(model.parameters()))
    names = {id(p): n for n, p in model.named_parameters()}
    matrix = {names[id(p)] for p in groups["matrix"]}
    assert all(p.ndim == 2 for p in groups["matrix"])
    mtp = {n for n in matrix if n.startswith("mtp.")}
    assert len(mtp) == model.cfg.mtp_heads
    assert set(model.hessian_sites()) - {"tok_emb.weight", "lm_head.weight"} == matrix - mtp
    assert "tok_emb.weight" in {names[id(p)] for p in groups["embed"]}


@pytest.mark.parametrize("name", list(STUDIES))
def test_checkpoint_round_trip(tiny_model_config, tmp_path, name):
    model = make(tiny_model_config, **STUDIES[name])
    path = tmp_path / "model.safetensors"
    save_model(path, model, {"val_bpb": 1.5})
    loaded, header = load_model(path)
    # the MTP head is train-only: dropped from the file and the header's config
    assert loaded.cfg == dataclasses.replace(model.cfg, mtp_heads=0)
    assert header["model"]["mtp_heads"] == 0 and not any(k.startswith("mtp.") for k in loaded.state_dict())
    model.looping = True
    idx = tokens()
    with torch.no_grad():
        torch.testing.assert_close(loaded(idx), model(idx), rtol=0, atol=0)
    if model.cfg.mtp_heads:
        save_model(path, model, {}, keep_train_only=True)
        again, _ = load_model(path)
        assert again.cfg == model.cfg and len(again.mtp) == 1


# ---- model: what each toggle does ---------------------------------------------------------

def test_moe_routes_each_token_to_exactly_k_experts(tiny_model_config):
    cfg = dataclasses.replace(tiny_model_config, moe_num_experts=4, moe_top_k=2)
    moe = MoEMLP(cfg)
    gen = torch.Generator().manual_seed(7)
    with torch.no_grad():
        for p in moe.parameters():
            p.copy_(0.3 * torch.randn(p.shape, generator=gen))
    x = torch.randn(2, 9, 32, generator=gen)
    seen: dict[int, torch.Tensor] = {}
    for e, expert in enumerate(moe.experts):
        expert.fc.register_forward_hook(lambda m, a, o, e=e: seen.__setitem__(e, a[0].detach().clone()))
    y = moe(x)
    h = x.reshape(-1, 32)
    probs, ids, weights = moe.route(h)
    assert ids.shape == (18, 2) and (ids[:, 0] != ids[:, 1]).all()  # k distinct experts per token
    torch.testing.assert_close(weights.sum(-1), torch.ones(18))
    # each expert saw exactly the rows routed to it, so every token ran through exactly k experts
    hits = torch.zeros(18, dtype=torch.long)
    for e in range(4):
        rows = (ids == e).any(-1).nonzero().squeeze(-1)
        torch.testing.assert_close(seen[e], h[rows], rtol=0, atol=0)
        hits[rows] += 1
    assert (hits == 2).all()
    # the output is the routing-weighted sum of the chosen experts
    ref = torch.stack([sum(weights[i, j] * moe.experts[int(ids[i, j])](h[i:i + 1])[0] for j in range(2))
                       for i in range(18)])
    torch.testing.assert_close(y.reshape(-1, 32), ref, rtol=1e-4, atol=1e-5)
    # load-balancing loss: E * sum f_e P_e; uniform router probabilities give exactly 1
    f = torch.bincount(ids.reshape(-1), minlength=4).float() / ids.numel()
    torch.testing.assert_close(moe.aux_losses[-1], 4 * (f * probs.mean(0)).sum())
    with torch.no_grad():
        moe.router.weight.zero_()
    moe.aux_losses.clear()
    moe(x)
    torch.testing.assert_close(moe.aux_losses[-1], torch.tensor(1.0))


def test_moe_aux_loss_per_forward(tiny_model_config):
    model = make(tiny_model_config, moe_num_experts=3, moe_top_k=1)
    model.looping = True
    model(tokens())
    n_calls = sum(len(b.mlp.aux_losses) for b in model.blocks)
    assert n_calls == model.num_virtual_layers  # looped layers count once per pass
    first = model.aux_loss()
    model(tokens(1))  # a new forward replaces, never accumulates
    assert sum(len(b.mlp.aux_losses) for b in model.blocks) == n_calls
    assert first.item() >= 1.0 - 1e-6 and model.aux_loss().requires_grad
    first.backward()
    assert model.blocks[0].mlp.router.weight.grad.abs().sum() > 0
    assert make(tiny_model_config).aux_loss().item() == 0.0  # no MoE: a zero the loop may always add


def test_mtp_loss_is_the_documented_t_plus_2_nll(tiny_model_config):
    model = make(tiny_model_config, mtp_heads=1)
    idx, tgt = tokens(), tokens(1)
    nll, mtp = model.nll_and_mtp(idx, tgt)
    assert mtp.shape == (B, T - 1)
    h = model.hidden(idx)
    g = h[:, :-1]
    g = F.rms_norm(g + g @ model.mtp[0].weight.T, (32,))
    z = 30.0 * torch.tanh(F.linear(g, model.tok_emb.weight) / 30.0)
    ref = F.cross_entropy(z.flatten(0, 1), tgt[:, 1:].flatten(), reduction="none").view(B, T - 1)
    torch.testing.assert_close(mtp, ref)
    torch.testing.assert_close(model.mtp_loss(idx, tgt), ref.mean())
    # the loop's loss nll.mean() + w * mtp.mean(): the head's gradient scales with w
    grads = []
    for w in (0.25, 0.5):
        model.zero_grad()
        n2, m2 = model.nll_and_mtp(idx, tgt)
        (n2.mean() + w * m2.mean()).backward()
        grads.append(model.mtp[0].weight.grad.clone())
    torch.testing.assert_close(grads[1], 2 * grads[0])
    # zero-initialised W: at init the t+2 head is the t+1 head read one position earlier
    fresh = GPT(dataclasses.replace(tiny_model_config, mtp_heads=1))
    with torch.no_grad():
        logits = fresh(idx)
        _, m0 = fresh.nll_and_mtp(idx, tgt)
    ref0 = F.cross_entropy(logits[:, :-1].flatten(0, 1), tgt[:, 1:].flatten(), reduction="none").view(B, T - 1)
    torch.testing.assert_close(m0, ref0)
    assert model.nll_and_mtp(idx, tgt)[1] is not None and make(tiny_model_config).nll_and_mtp(idx, tgt)[1] is None


@pytest.mark.parametrize("tied", [True, False])
def test_factorized_embedding_shapes_and_tying(tiny_model_config, tied):
    model = make(tiny_model_config, embed_dim=12, tie_embeddings=tied, smear_gate_enabled=False)
    assert model.tok_emb.weight.shape == (96, 12)
    assert model.embed_proj.weight.shape == (32, 12)  # up: e -> d
    if tied:
        assert model.head_proj.weight.shape == (12, 32) and model.lm_head is None  # down: d -> e
        assert not any(k.startswith("lm_head") for k in model.state_dict())
    else:
        assert model.head_proj is None and model.lm_head.weight.shape == (96, 32)
    idx = tokens()
    with torch.no_grad():
        x = model.embed_proj(model.tok_emb(idx))
        torch.testing.assert_close(model._embed(idx), F.rms_norm(x, (32,)))
        h = model.hidden(idx)
        z = F.linear(model.head_proj(h), model.tok_emb.weight) if tied else model.lm_head(h)
        torch.testing.assert_close(model(idx), 30.0 * torch.tanh(z / 30.0))
    model.nll(idx, tokens(1)).mean().backward()
    assert model.tok_emb.weight.grad.abs().sum() > 0
    if tied:  # the head's gradient reaches every vocabulary row, not only the looked-up ones
        unused = torch.ones(96, dtype=torch.bool)
        unused[idx.flatten()] = False
        assert model.tok_emb.weight.grad[unused].abs().sum() > 0
    plain = sum(p.numel() for p in GPT(dataclasses.replace(model.cfg, embed_dim=0)).parameters())
    assert sum(p.numel() for p in model.parameters()) - plain == 96 * 12 - 96 * 32 + 32 * 12 * (2 if tied else 1)


# ---- train: the toggles in the loop (golf/train/loop.py, golf/train/cat.py) -------------------

def test_micro_objective_adds_the_moe_aux_loss_with_its_weight(tiny_model_config):
    from golf.train.loop import micro_objective

    model = make(tiny_model_config, moe_num_experts=3, moe_top_k=2)
    idx, tgt = tokens(), tokens(1)
    nll0, aux0 = micro_objective(model, model.nll, idx, tgt, 0.0, 0.0)
    assert aux0.item() == 0.0
    nll, aux = micro_objective(model, model.nll, idx, tgt, 0.37, 0.0)
    torch.testing.assert_close(nll, nll0)
    torch.testing.assert_close(nll, model.nll(idx, tgt).mean())
    balance = model.aux_loss()  # the forward just run
    assert balance.item() > 1.0
    torch.testing.assert_close((nll + aux) - (nll0 + aux0), 0.37 * balance)
    (nll + aux).backward()  # the router learns from both terms
    assert model.blocks[0].mlp.router.weight.grad.abs().sum() > 0


def test_micro_objective_adds_the_mtp_loss_with_its_weight(tiny_model_config):
    from golf.train.loop import micro_objective

    model = make(tiny_model_config, mtp_heads=1)
    idx, tgt = tokens(), tokens(1)
    nll, aux = micro_objective(model, model.nll_and_mtp, idx, tgt, 0.0, 0.6)
    torch.testing.assert_close(nll, model.nll(idx, tgt).mean())
    torch.testing.assert_close(aux, 0.6 * model.mtp_loss(idx, tgt))
    both, extra = micro_objective(model, model.nll_and_mtp, idx, tgt, 0.2, 0.6)  # no MoE: aux_loss() is 0
    torch.testing.assert_close(both + extra, nll + aux)


def test_cat_matrices_are_the_quantized_block_matrices(tiny_model_config):
    from golf.train.cat import cat_matrices

    model = make(tiny_model_config, mtp_heads=1, moe_num_experts=3, moe_top_k=2)
    names = {n for n, p in model.named_parameters() if any(p is q for q in cat_matrices(model))}
    assert "blocks.0.attn.c_q.weight" in names and "blocks.1.mlp.experts.2.fc.weight" in names
    assert "blocks.1.mlp.router.weight" in names
    assert not any(n.startswith(("mtp.", "tok_emb")) for n in names)
    assert names <= set(model.hessian_sites())  # every CAT matrix is one quantize sees


TOGGLES = {
    "moe_aux": (dict(moe_num_experts=3, moe_top_k=2), dict(moe_aux_weight=0.05)),
    "mtp": (dict(mtp_heads=1), dict(mtp_weight=0.3)),
    "cat": ({}, dict(cat_every=2, cat_weight=1000.0)),
    "all": (dict(moe_num_experts=3, moe_top_k=1, mtp_heads=1),
            dict(moe_aux_weight=0.05, mtp_weight=0.3, cat_every=3, cat_weight=1000.0)),
}


def _tiny_train(model, **over):
    from test_train import SOLO, corpus, tcfg

    from golf.train.loop import train

    tr, _ = corpus(seed=1)
    va, vb = corpus(600, seed=2)
    cfg = tcfg(**{"iterations": 6, "val_every": 3, "warmup_steps": 1, **over})
    return train(model, cfg, tr, va, vb, torch.device("cpu"), SOLO, progress=False)


@pytest.mark.parametrize("name", TOGGLES)
def test_tiny_train_with_each_toggle(tiny_model_config, name):
    model_over, train_over = TOGGLES[name]
    model = make(tiny_model_config, randomize=False, **model_over)
    res = _tiny_train(model, **train_over)
    assert res.steps == 6 and all(torch.isfinite(torch.tensor(r["train_loss"])) for r in res.rows)
    assert 0 < res.val_bpb < 20
    if model.cfg.mtp_heads:  # the zero-initialised t+2 head learned: its loss reached it
        assert model.mtp[0].weight.abs().sum() > 0


def test_mtp_head_untouched_without_its_weight(tiny_model_config):
    model = make(tiny_model_config, randomize=False, mtp_heads=1)
    _tiny_train(model, mtp_weight=0.0)
    assert model.mtp[0].weight.abs().sum() == 0


@pytest.mark.parametrize("weight", [0.0, 0.1])
def test_moe_aux_loss_reaches_the_loop_only_with_a_weight(tiny_model_config, weight):
    """A non-finite balance loss stops training when its weight is on, and is never read when off."""
    from golf.errors import GolfError

    model = make(tiny_model_config, randomize=False, moe_num_experts=3, moe_top_k=2)
    model.aux_loss = lambda: torch.tensor(float("nan"))
    if weight:
        with pytest.raises(GolfError, match="loss is nan at step 1"):
            _tiny_train(model, moe_aux_weight=weight, warmup_steps=0)
    else:
        assert _tiny_train(model, moe_aux_weight=weight).steps == 6


# ---- quantize: codebook and Hadamard ------------------------------------------------------

def toy_state(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    shapes = {"tok_emb.weight": (40, 24), "blocks.0.attn.c_q.weight": (24, 24),
              "blocks.0.mlp.fc.weight": (48, 24), "blocks.0.mlp.proj.weight": (24, 80)}
    sd = {n: torch.randn(s, generator=g) * 0.1 for n, s in shapes.items()}
    sd["blocks.0.mlp.proj.weight"][:, 3] *= 20  # an outlier input column
    sd["blocks.0.attn_scale"] = torch.rand(24, generator=g)
    H = {}
    for n, s in shapes.items():
        X = torch.randn(300, 3, generator=g) @ torch.randn(3, s[1], generator=g) + 0.3 * torch.randn(300, s[1], generator=g)
        H[n] = X.T @ X
    return sd, H, list(shapes)


def qcfg(**over):
    from golf.params import load_section
    from golf.quant.config import QuantizeConfig

    base = dict(device="cpu", lqer_enabled=False, block_size=8)
    return load_section(ROOT / "params.yaml", "quantize", QuantizeConfig, {**base, **over})


@pytest.mark.parametrize("over", [dict(codebook_k=1), dict(codebook_k=257), dict(codebook_k=8, codebook_iters=0)])
def test_quantize_config_rejects(over):
    from golf.errors import GolfError

    with pytest.raises(GolfError, match=rf"quantize\.{next(reversed(over))} = "):
        qcfg(**over)


def test_quant_keys_off_by_default():
    import yaml

    from golf.presets import apply_overlay, read_overlay

    base = (ROOT / "params.yaml").read_text()
    for f in ["cpu-small", "h100", "record"]:
        p = yaml.safe_load(apply_overlay(base, read_overlay(ROOT / "presets" / f"{f}.yaml")))
        assert p["quantize"]["codebook_k"] == 0 and p["quantize"]["hadamard"] is False, f
        m = p["model"]
        assert (m["moe_num_experts"], m["mtp_heads"], m["embed_dim"]) == (0, 0, 0), f
        t = p["train"]
        assert (t["moe_aux_weight"], t["mtp_weight"], t["cat_every"]) == (0.0, 0.0, 0), f


@pytest.mark.parametrize("method", ["gptq", "rtn"])
def test_codebook_round_trip_is_its_centroids(method):
    from golf.quant import qmodel

    sd, H, names = toy_state()
    K = 12
    cfg = qcfg(codebook_k=K, codebook_iters=15, method=method)
    tensors, header, rep = qmodel.quantize_state_dict(sd, H, cfg, {}, names=names)
    again, _, _ = qmodel.quantize_state_dict(sd, H, cfg, {}, names=names)
    deq = dequantize(tensors, header)
    for n in names:
        p = header["plan"][n]
        assert p["kind"] == "codebook" and p["k"] == K and p["bits"] == 4
        cq, cb = tensors[f"{n}.cq"], tensors[f"{n}.cb"]
        assert f"{n}.q" not in tensors and cq.dtype == torch.uint8 and cq.shape == sd[n].shape
        assert cb.dtype == torch.float16 and cb.shape == (K,) and (cb[1:] >= cb[:-1]).all()
        assert int(cq.max()) < K
        assert torch.equal(deq[n], cb.float()[cq.long()])  # exactly the stored centroids
        assert torch.equal(again[f"{n}.cq"], cq) and torch.equal(again[f"{n}.cb"], cb)  # deterministic
        rel = ((deq[n] - sd[n]).norm() / sd[n].norm()).item()
        assert abs(rel - rep["tensors"][n]["rel_err"]) < 1e-4 and rel < 0.35
        assert rep["tensors"][n]["code_entropy_bytes"] <= rep["tensors"][n]["code_bytes"]
    s = rep["summary"]
    assert s["codebook_tensors"] == s["quantized_tensors"] == len(names)
    # more centroids, smaller error (RTN: nearest centroid, no error feedback)
    fine = qmodel.quantize_state_dict(sd, H, qcfg(codebook_k=64, method="rtn"), {}, names=names)[2]
    coarse = qmodel.quantize_state_dict(sd, H, qcfg(codebook_k=4, method="rtn"), {}, names=names)[2]
    for n in names:
        assert fine["tensors"][n]["rel_err"] < coarse["tensors"][n]["rel_err"]


def test_codebook_gptq_beats_nearest_on_the_hessian_error():
    from golf.quant import qmodel

    sd, H, names = toy_state(1)
    g = qmodel.quantize_state_dict(sd, H, qcfg(codebook_k=8, method="gptq"), {}, names=names)[2]["tensors"]
    r = qmodel.quantize_state_dict(sd, H, qcfg(codebook_k=8, method="rtn"), {}, names=names)[2]["tensors"]
    assert sum(g[n]["h_rel_err"] for n in names) < sum(r[n]["h_rel_err"] for n in names)


def test_codebook_tensors_pass_the_container_and_are_not_pruned():
    from golf.artifact.container import decode
    from golf.artifact.layout import join
    from golf.compress import container, layout
    from golf.compress.config import CompressConfig
    from golf.params import load_section
    from golf.prune.rules import prunable
    from golf.quant import qmodel

    sd, H, names = toy_state()
    tensors, header, _ = qmodel.quantize_state_dict(sd, H, qcfg(codebook_k=16, hadamard=True), {}, names=names)
    assert prunable(tensors, prune_embedding=True) == []  # indices are not ±1 codes
    sections, manifest = layout.split(tensors, per_group=True, transpose=True)
    back = join(sections, manifest)
    cfg = load_section(ROOT / "params.yaml", "compress", CompressConfig)
    t2, h2 = decode(container.encode(tensors, header, cfg))
    for n, t in tensors.items():
        assert torch.equal(back[n], t) and torch.equal(t2[n], t) and t2[n].dtype == t.dtype, n
    a, b = dequantize(tensors, header), dequantize(t2, h2)
    assert all(torch.equal(a[n], b[n]) for n in a)


def test_hadamard_rotation_is_orthogonal_and_undone():
    from golf.quant import hadamard

    assert [hadamard.block_size(n) for n in (24, 32, 80, 384, 7)] == [8, 32, 16, 128, 1]
    for n in (24, 80):
        b = hadamard.block_size(n)
        R = hadamard.rotate(torch.eye(n), b)  # I R = R
        torch.testing.assert_close(R @ R.T, torch.eye(n), rtol=0, atol=1e-6)
        assert (R.abs() > 0).sum() == n * b  # block-diagonal, dense blocks
        W = torch.randn(5, n, generator=torch.Generator().manual_seed(n))
        torch.testing.assert_close(hadamard.rotate(W, b), W @ R)
        torch.testing.assert_close(unrotate(hadamard.rotate(W, b), b), W, rtol=0, atol=1e-6)
        X = torch.randn(40, n, generator=torch.Generator().manual_seed(1))
        H = X.T @ X
        # the rotated weights see rotated inputs: W x = (W R)(Rᵀ x), H' = Rᵀ H R
        torch.testing.assert_close(hadamard.rotate_hessian(H, b), R.T @ H @ R, rtol=1e-5, atol=1e-4)
        torch.testing.assert_close(W @ X.T, hadamard.rotate(W, b) @ (X @ R).T, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("over", [dict(), dict(lqer_enabled=True, lqer_top_k=2), dict(codebook_k=32)])
def test_hadamard_quantize_round_trip(over):
    from golf.quant import qmodel

    sd, H, names = toy_state(2)
    off = qmodel.quantize_state_dict(sd, H, qcfg(matrix_bits=8, embed_bits=8, **over), {}, names=names)
    tensors, header, rep = qmodel.quantize_state_dict(sd, H, qcfg(matrix_bits=8, embed_bits=8, hadamard=True, **over),
                                                      {}, names=names)
    deq = dequantize(tensors, header)
    for n in names:
        assert header["plan"][n]["hadamard"] == hadamard_block(sd[n].shape[1])
        rel = ((deq[n] - sd[n]).norm() / sd[n].norm()).item()
        assert rel < (0.15 if "codebook_k" in over else 0.05), n  # dequantize(quantize(W)) ≈ W: rotation undone
        assert abs(rel - rep["tensors"][n]["rel_err"]) < 1e-4
    s = rep["summary"]
    assert s["hadamard_tensors"] == len(names) and s["code_bytes"] == off[2]["summary"]["code_bytes"]
    assert off[2]["summary"]["hadamard_tensors"] == 0
    # the size effect is reported per tensor and in total (entropy of the codes moves, bit width does not)
    assert s["code_entropy_bytes"] == round(sum(rep["tensors"][n]["code_entropy_bytes"] for n in names))
    assert s["code_entropy_bytes"] != off[2]["summary"]["code_entropy_bytes"]


def hadamard_block(n: int) -> int:
    from golf.quant import hadamard

    return hadamard.block_size(n)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_codebook_on_cuda_equals_cpu():
    """The seeded ablation's codebook64 row failed on the H200: fit() built its quantile points and
    cluster sums on the CPU while the weights were on the GPU. The same fit on both devices."""
    from golf.quant import codebook

    g = torch.Generator().manual_seed(0)
    W, H = torch.randn(48, 64, generator=g), torch.rand(64, generator=g) + 0.1
    cpu = codebook.fit(W, H.expand_as(W), 16, 10)
    gpu = codebook.fit(W.cuda(), H.cuda().expand_as(W), 16, 10)
    assert gpu.device.type == "cuda"
    torch.testing.assert_close(gpu.cpu(), cpu, rtol=0, atol=1e-3)
