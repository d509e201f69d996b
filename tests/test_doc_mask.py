"""model.doc_masked_attention: no token attends across a BOS. CPU: the SDPA mask equals running each
document alone (values and gradients, float64), a token never sees the previous document, every
cross-position feature respects BOS, and the training path (varlen op, cu_seqlens from the host)
equals the eval path (SDPA mask); GPU: the same with FA4 and torch.compile."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import test_fa4  # tests/ is on sys.path under pytest
import torch
import torch.nn.functional as F

from golf.artifact.model import GPT, attention
from golf.errors import GolfError
from golf.kernels import fa4

BOS = 1
# three rows of 24 tokens: documents of several lengths, a row that starts mid-document (no BOS at 0),
# a one-token document and a row with no BOS at all
LAYOUT = [[0, 5, 6, 14], [3, 4, 10], []]
T = 24


def ids(seed: int = 0, layout=LAYOUT) -> torch.Tensor:
    x = torch.randint(2, 96, (len(layout), T), generator=torch.Generator().manual_seed(seed))
    for row, starts in enumerate(layout):
        x[row, starts] = BOS
    return x


def make(cfg, seed=0, dtype=torch.float64, **over) -> GPT:
    """A GPT with every zero-initialised part perturbed, so every path carries signal."""
    torch.manual_seed(seed)
    model = GPT(dataclasses.replace(cfg, **{"doc_masked_attention": True, **over})).to(dtype)
    gen = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.2 * torch.randn(p.shape, generator=gen, dtype=p.dtype))
    return model


def documents(row: torch.Tensor) -> list[tuple[int, int]]:
    """[start, end) of each document of a row: a BOS starts one, so does the row's first token."""
    starts = sorted({0, *torch.nonzero(row == BOS).flatten().tolist()})
    return list(zip(starts, starts[1:] + [len(row)]))


@pytest.fixture
def record_like(tiny_model_config):
    """The tiny all-on model with looping, lanes, XSA, gates, SmearGate and the hashed bigram."""
    return dataclasses.replace(tiny_model_config, bigram_vocab_size=40, ve_dim=6, ve_layers=(0, 3))


# ---- the layouts ------------------------------------------------------------------------------

def test_mask_and_cu_seqlens_describe_the_same_documents():
    x = ids()
    mask = attention.doc_mask(x, BOS)[:, 0]
    cu = attention.doc_cu_seqlens(x, BOS)
    assert cu.dtype == torch.int32 and cu[0] == 0 and cu[-1] == x.numel()
    flat = torch.arange(x.numel())
    seg = torch.searchsorted(cu.long(), flat, right=True).view(x.shape)
    want = (seg[:, :, None] == seg[:, None, :]) & torch.ones(T, T, dtype=torch.bool).tril()
    assert torch.equal(mask, want)
    assert len(cu) - 1 == sum(len(documents(r)) for r in x)  # every row start and every other BOS
    # a BOS starts a document (row 1: BOS at 3, 4, 10); a row without BOS is plain causal
    assert not mask[1, 3, 0] and not mask[1, 4, 3] and mask[1, 9, 4] and not mask[1, 10, 9]
    assert torch.equal(mask[2], torch.ones(T, T, dtype=torch.bool).tril())


# ---- the model: CPU, SDPA mask --------------------------------------------------------------------

@pytest.mark.parametrize("looping", [False, True])
def test_masked_model_equals_each_document_alone_values_and_gradients(record_like, looping):
    """Packed rows score every token exactly as the same document scored on its own (RoPE is relative,
    so only float64 rounding differs), and the parameter gradients of the summed NLL agree."""
    model = make(record_like)
    model.looping = looping
    x, y = ids(1), ids(2)
    packed = model.nll(x, y)
    g_packed = torch.autograd.grad(packed.sum(), list(model.parameters()), allow_unused=True)
    alone = torch.zeros_like(packed)
    total = 0.0
    for r in range(len(x)):
        for s, e in documents(x[r]):
            alone[r, s:e] = nll = model.nll(x[r:r + 1, s:e], y[r:r + 1, s:e])[0]
            total = total + nll.sum()
    torch.testing.assert_close(packed, alone, rtol=1e-9, atol=1e-9)
    g_alone = torch.autograd.grad(total, list(model.parameters()), allow_unused=True)
    for a, b in zip(g_packed, g_alone):
        assert (a is None) == (b is None)
        if a is not None:
            torch.testing.assert_close(a, b, rtol=1e-7, atol=1e-9)


def test_a_token_never_sees_the_previous_document(record_like):
    """Replace a row's first document by other tokens of the same length: the logits of every later
    document stay bit for bit, those of the replaced one change; without masking they all would."""
    x = ids(3)
    other = x.clone()
    other[0, 1:5] = (x[0, 1:5] + 7) % 90 + 2  # tokens 1..4 of row 0: inside its first document
    model = make(record_like)
    model.looping = True
    with torch.no_grad():
        a, b = model(x), model(other)
        assert torch.equal(a[0, 5:], b[0, 5:]) and torch.equal(a[1:], b[1:])
        assert not torch.allclose(a[0, 1:5], b[0, 1:5])
        plain = make(record_like, doc_masked_attention=False)
        assert not torch.allclose(plain(x)[0, 5:], plain(other)[0, 5:])


@pytest.mark.parametrize("part", ["smear_gate", "bigram", "value_embed", "attn_gate", "lanes_loops"])
def test_each_cross_position_feature_respects_bos_under_masking(tiny_model_config, part):
    """Each feature on its own: the BOS of a document and everything after it never depend on the
    token just before that BOS (the last of the previous document)."""
    base = dict(smear_gate_enabled=False, bigram_vocab_size=0, ve_dim=0, ve_layers=(),
                sparse_attn_gate_enabled=False, num_loops=0, parallel_start_layer=-1)
    on = {"smear_gate": dict(smear_gate_enabled=True), "bigram": dict(bigram_vocab_size=40),
          "value_embed": dict(ve_dim=6, ve_layers=(1,)), "attn_gate": dict(sparse_attn_gate_enabled=True),
          "lanes_loops": dict(num_loops=1, parallel_start_layer=3)}[part]
    model = make(tiny_model_config, **{**base, **on})
    model.looping = True
    x = ids(4)
    other = x.clone()
    other[0, 4] = (x[0, 4] + 11) % 90 + 2  # the token right before row 0's BOS at 5
    with torch.no_grad():
        assert torch.equal(model(x)[0, 5:], model(other)[0, 5:])


def test_bigram_hash_at_bos_is_the_row_start_bucket_only_under_masking(tiny_model_config):
    cfg = dataclasses.replace(tiny_model_config, bigram_vocab_size=40)
    x = ids(5)
    masked = GPT(dataclasses.replace(cfg, doc_masked_attention=True)).bigram.hash(x)
    plain = GPT(cfg).bigram.hash(x)
    bos = x == BOS
    assert (masked[bos] == 39).all() and torch.equal(masked[~bos], plain[~bos])
    assert not (plain[:, 1:][bos[:, 1:]] == 39).all()  # the old hash read the previous document


def test_every_later_stage_rebuilds_the_masked_model(record_like, tmp_path):
    """The header carries the key: the model the later stages rebuild (checkpoint, qmodel, artifact and
    the bundled runner alike: load.model_from_header) masks documents, on SDPA, exactly as trained."""
    from golf.io.checkpoint import load_model, save_model

    model = make(record_like, dtype=torch.float32)
    model.looping = True
    save_model(tmp_path / "m.safetensors", model, {})
    loaded, header = load_model(tmp_path / "m.safetensors")
    assert header["model"]["doc_masked_attention"] is True and loaded.attention_backend == "sdpa"
    x, y = ids(6), ids(7)
    with torch.no_grad():
        torch.testing.assert_close(loaded.nll(x, y), model.nll(x, y), rtol=0, atol=0)


# ---- train path (varlen op, cu_seqlens from the host) = eval path (SDPA mask) ---------------------

def test_train_path_equals_eval_path(record_like, fa4_on_cpu):
    """What the train loop runs (the varlen op with the loader's cu_seqlens) and what every eval runs
    (SDPA with the block-diagonal mask, cu_seqlens not given) agree, values and gradients."""
    from golf.train.data import WindowLoader

    stream = np.concatenate([[BOS, *np.random.default_rng(0).integers(2, 96, n)] for n in (9, 3, 30, 1, 17, 40)])
    loader = WindowLoader(stream.astype(np.uint16), T, 4, 1, 0, 1, seed=3, device=torch.device("cpu"), bos_id=BOS)
    (x, y, cu), = loader.batch(0)
    assert torch.equal(cu, attention.doc_cu_seqlens(x, BOS))
    train_model = make(record_like, dtype=torch.float32)
    eval_model = make(record_like, dtype=torch.float32)
    train_model.set_attention_backend("fa4")
    assert train_model.doc_varlen and not eval_model.doc_varlen
    a, b = train_model.nll(x, y, cu_seqlens=cu), eval_model.nll(x, y)
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    ga = torch.autograd.grad(a.mean(), list(train_model.parameters()), allow_unused=True)
    gb = torch.autograd.grad(b.mean(), list(eval_model.parameters()), allow_unused=True)
    for p, q in zip(ga, gb):
        if p is not None:
            torch.testing.assert_close(p, q, rtol=1e-4, atol=1e-6)


def test_cu_seqlens_padded_for_cuda_graphs_train_the_same(record_like, fa4_on_cpu):
    """train.cuda_graphs pads each micro-batch's cu_seqlens with empty documents to a multiple of entries:
    the documents before the padding are the loader's, and the varlen path's loss and gradients are the
    unpadded ones'."""
    from golf.train.data import WindowLoader

    stream = np.concatenate([[BOS, *np.random.default_rng(2).integers(2, 96, n)] for n in (9, 3, 30, 1, 17, 40)])
    make_loader = lambda multiple: WindowLoader(stream.astype(np.uint16), T, 4, 1, 0, 1, seed=3,  # noqa: E731
                                                device=torch.device("cpu"), bos_id=BOS, cu_multiple=multiple)
    (x, y, cu), = make_loader(1).batch(0)
    (_, _, padded), = make_loader(8).batch(0)
    assert len(padded) % 8 == 0 and len(padded) > len(cu)
    assert torch.equal(padded[:len(cu)], cu) and (padded[len(cu):] == x.numel()).all()
    model = make(record_like, dtype=torch.float32)
    model.set_attention_backend("fa4")
    losses = [model.nll(x, y, cu_seqlens=c).mean() for c in (cu, padded)]
    torch.testing.assert_close(losses[0], losses[1], rtol=0, atol=0)
    for a, b in zip(*(torch.autograd.grad(loss, list(model.parameters()), allow_unused=True) for loss in losses)):
        if a is not None:
            torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_kv_repeated_to_the_query_heads_trains_the_same(record_like, fa4_on_cpu):
    """train.fused_kv_repeat: k (through the qk hook's repeat) and v go to the fa4 op with each KV head repeated
    to the query heads; loss and gradients are the GQA path's (the hook here is the model's eager q / k
    preparation, as golf/kernels/qk_rope.py's reference, which needs Triton to import)."""
    from golf.train.data import WindowLoader

    def qk_rope_reference(x, rope, gain, rope_dims, repeat=1):
        y = attention.apply_rotary(F.rms_norm(x, (x.size(-1),)), *rope, rope_dims)
        y = y if gain is None else y * gain.to(y.dtype)[:, None]
        return y.repeat_interleave(repeat, 2)

    stream = np.concatenate([[BOS, *np.random.default_rng(4).integers(2, 96, n)] for n in (9, 3, 30, 1, 17, 40)])
    loader = WindowLoader(stream.astype(np.uint16), T, 4, 1, 0, 1, seed=3, device=torch.device("cpu"), bos_id=BOS)
    (x, y, cu), = loader.batch(0)
    model = make(record_like, dtype=torch.float32)
    model.set_attention_backend("fa4")
    assert model.cfg.num_heads > model.cfg.num_kv_heads
    runs = []
    for repeat in (False, True):
        model.use_fused_kernels(None, None, qk=qk_rope_reference, kv_repeat=repeat)
        loss = model.nll(x, y, cu_seqlens=cu).mean()
        runs.append((loss, torch.autograd.grad(loss, list(model.parameters()), allow_unused=True)))
    model.use_fused_kernels(None, None)
    torch.testing.assert_close(runs[1][0], runs[0][0], rtol=1e-6, atol=1e-6)
    for a, b in zip(runs[1][1], runs[0][1]):
        if b is not None:
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_prepared_batches_are_the_batches():
    """The train loop prepares step s + 1's host work during step s (WindowLoader.prepare): the batch is
    the one `batch` makes unprepared, and a prepared step that is not the one asked for is not used."""
    from golf.train.data import WindowLoader

    stream = np.concatenate([[BOS, *np.random.default_rng(1).integers(2, 96, n)] for n in (9, 3, 30, 1, 17, 40)])
    make_loader = lambda: WindowLoader(stream.astype(np.uint16), T, 4, 2, 0, 1, seed=3,  # noqa: E731
                                       device=torch.device("cpu"), bos_id=BOS)
    plain, prepared = make_loader(), make_loader()
    for step in (0, 1, 5):
        prepared.prepare(step)
        for a, b in zip(plain.batch(step), prepared.batch(step), strict=True):
            assert all(torch.equal(u, v) for u, v in zip(a, b, strict=True))
    prepared.prepare(7)
    for a, b in zip(plain.batch(2), prepared.batch(2), strict=True):
        assert all(torch.equal(u, v) for u, v in zip(a, b, strict=True))
    calls = []
    host = prepared._host_batch
    prepared._host_batch = lambda step: calls.append(step) or host(step)
    prepared.prepare(4)
    prepared.batch(4)
    assert calls == [4]  # batch(4) took the prepared work, it did not redo it


def test_loader_without_bos_id_gives_no_cu_seqlens():
    from golf.train.data import WindowLoader

    loader = WindowLoader(np.arange(200, dtype=np.uint16) % 50, 16, 4, 2, 0, 1, seed=0, device=torch.device("cpu"))
    assert all(cu is None for _, _, cu in loader.batch(0))


# ---- bad input --------------------------------------------------------------------------------

@pytest.mark.parametrize("backend", ["cudnn", "fa3", "fa2"])
def test_backend_that_cannot_mask_documents_names_the_key_and_the_ones_that_can(tiny_model_config, backend):
    model = GPT(dataclasses.replace(tiny_model_config, doc_masked_attention=True))
    with pytest.raises(ValueError, match=r"model\.doc_masked_attention.*fa4, sdpa"):
        model.set_attention_backend(backend)


def test_auto_selection_under_masking_keeps_to_backends_that_can(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda *_: (9, 0))
    assert attention.backend_order("cuda") == ["fa4", "fa3", "fa2", "sdpa"]
    assert attention.backend_order("cuda", doc_masked=True) == ["fa4", "sdpa"]
    assert attention.backend_order("cpu", doc_masked=True) == ["sdpa"]


def test_shard_without_bos_is_a_clear_error(tmp_path):
    from golf.data.shards import shard_name, write_shard
    from golf.train.data import check_bos

    write_shard(tmp_path / shard_name("train", 0), np.array([BOS, 5, 6, BOS, 7], dtype=np.uint16))
    write_shard(tmp_path / shard_name("train", 1), np.array([5, 6, 7, 8], dtype=np.uint16))
    write_shard(tmp_path / shard_name("val", 0), np.array([BOS, 9], dtype=np.uint16))
    with pytest.raises(GolfError, match=r"train_000001\.bin: no BOS .*id 1.*model\.doc_masked_attention"):
        check_bos(tmp_path, BOS)
    (tmp_path / shard_name("train", 1)).unlink()
    check_bos(tmp_path, BOS, BOS)
    with pytest.raises(GolfError, match=r"tokenizer's BOS is id 2, but model\.bos_id = 1"):
        check_bos(tmp_path, BOS, 2)


# ---- GPU: FA4 in the model, compiled -------------------------------------------------------------

needs_fa4 = test_fa4.needs_fa4  # GPU + flash-attn-4, else skipped


@needs_fa4
def test_fa4_model_compiled_matches_sdpa_mask_and_never_recompiles(record_like):
    """The record-like model on the GPU under bf16 autocast: FA4 varlen compiled with fullgraph equals
    the SDPA-mask eager path, and batches with 1 to 40 documents per row share one graph."""
    from torch._dynamo.testing import CompileCounterWithBackend

    assert fa4.register()
    try:
        masked_model_on_gpu(record_like, CompileCounterWithBackend("inductor"))
    finally:
        attention.unregister_backend("fa4")


def masked_model_on_gpu(record_like, counter) -> None:
    torch._dynamo.reset()
    cfg = dataclasses.replace(record_like, model_dim=128, num_heads=2, num_kv_heads=1)  # head_dim 64
    train_model = make(cfg, dtype=torch.float32).cuda()
    eval_model = make(cfg, dtype=torch.float32).cuda()
    train_model.set_attention_backend("fa4")
    step = torch.compile(train_model.nll, backend=counter, fullgraph=True, dynamic=False)
    for seed, docs_per_row in enumerate((1, 3, 17, 40)):
        x = torch.randint(2, 96, (4, 256), generator=torch.Generator().manual_seed(seed))
        x[:, torch.linspace(0, 255, docs_per_row).long()] = BOS
        y = torch.roll(x, -1, 1)
        x, y = x.cuda(), y.cuda()
        cu = attention.doc_cu_seqlens(x, BOS)
        torch._dynamo.mark_dynamic(cu, 0)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            a = step(x, y, cu_seqlens=cu)
            b = eval_model.nll(x, y)
        assert float((a - b).abs().mean()) < 2e-2 * float(b.abs().mean())
        a.mean().backward()
    assert counter.frame_count == 1
