"""golf.kernels.fa4: FlashAttention 4 as custom ops. CPU: the ops' float32 reference, their
registration (fakes, autograd) and torch.compile with a changing number of documents; GPU: FA4
itself against SDPA."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch._dynamo.testing import CompileCounterWithBackend

from golf.kernels import fa4


def sdpa_causal(q, k, v):
    """torch's causal GQA attention in (B, T, H, D) layout, float32."""
    y = F.scaled_dot_product_attention(*(t.float().transpose(1, 2) for t in (q, k, v)), is_causal=True,
                                       enable_gqa=q.size(2) != k.size(2))
    return y.transpose(1, 2)


def qkv(shape_q, shape_kv, device="cpu", dtype=torch.float32, seed=0):
    g = torch.Generator(device=device).manual_seed(seed)
    return [torch.randn(s, generator=g, device=device, dtype=dtype).requires_grad_()
            for s in (shape_q, shape_kv, shape_kv)]


def grads(y, inputs, seed=1):
    go = torch.randn(y.shape, generator=torch.Generator(device=y.device).manual_seed(seed), device=y.device)
    return torch.autograd.grad(y.float(), inputs, go)


def per_sequence(q, k, v, cu):
    """Varlen attention the slow way: each packed sequence on its own through SDPA."""
    cuts = cu.tolist()
    parts = [sdpa_causal(q[None, a:b], k[None, a:b], v[None, a:b])[0] for a, b in zip(cuts[:-1], cuts[1:]) if b > a]
    return torch.cat(parts)


def test_dense_reference_equals_sdpa_values_and_grads():
    q, k, v = qkv((2, 12, 4, 8), (2, 12, 2, 8))
    y, ref = fa4.attention(q, k, v), sdpa_causal(q, k, v)
    torch.testing.assert_close(y, ref, rtol=1e-5, atol=1e-5)
    for a, b in zip(grads(y, (q, k, v)), grads(ref, (q, k, v))):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def test_varlen_reference_equals_each_sequence_alone():
    """Packed sequences never see each other; empty ones (equal neighbours, the padding) are harmless."""
    q, k, v = qkv((24, 4, 8), (24, 2, 8))
    cu = torch.tensor([0, 5, 5, 13, 24, 24], dtype=torch.int32)
    y, ref = fa4.varlen_attention(q, k, v, cu, 24), per_sequence(q, k, v, cu)
    torch.testing.assert_close(y, ref, rtol=1e-5, atol=1e-5)
    for a, b in zip(grads(y, (q, k, v)), grads(ref, (q, k, v))):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    # and it is not plain causal attention over the whole pack
    assert not torch.allclose(y, sdpa_causal(q[None], k[None], v[None])[0], atol=1e-3)


@pytest.mark.parametrize("varlen", [False, True])
def test_ops_registration_passes_opcheck(varlen):
    """Schema, fake (shapes and strides) against the real kernel, autograd registration, AOT dispatch."""
    if varlen:
        q, k, v = (t.detach() for t in qkv((16, 4, 8), (16, 2, 8)))
        cu, ms = torch.tensor([0, 7, 16], dtype=torch.int32), 16
    else:
        q, k, v = (t.detach() for t in qkv((2, 8, 4, 8), (2, 8, 2, 8)))
        cu, ms = None, 0
    torch.library.opcheck(fa4.fa4_fwd, (q, k, v, cu, ms))
    out, lse = fa4.fa4_fwd(q, k, v, cu, ms)
    assert lse.dtype == torch.float32 and lse.shape == ((4, 16) if varlen else (2, 4, 8))
    torch.library.opcheck(fa4.fa4_bwd, (q, k, v, out, torch.randn_like(out), lse, cu, ms))


def compiled_frames(mark_dynamic: bool) -> int:
    """Frames torch.compile(fullgraph=True) compiles for varlen attention over 4 document layouts."""
    counter = CompileCounterWithBackend("aot_eager")

    def loss(q, k, v, cu):
        return fa4.varlen_attention(q * 2, k, v, cu, 24).square().sum()

    step = torch.compile(loss, backend=counter, fullgraph=True, dynamic=False)
    for cuts in ([0, 24], [0, 5, 24], [0, 3, 9, 12, 20, 24], [0, 12, 24]):
        cu = torch.tensor(cuts, dtype=torch.int32)
        if mark_dynamic:
            torch._dynamo.mark_dynamic(cu, 0)
        q, k, v = qkv((24, 4, 8), (24, 2, 8), seed=len(cuts))
        step(q, k, v, cu).backward()
    return counter.frame_count


def test_compiled_varlen_does_not_recompile_when_the_number_of_documents_changes():
    """cu_seqlens' length marked dynamic: one graph for every document count, no graph break (fullgraph);
    without the mark the same loop recompiles, so the count can tell."""
    torch._dynamo.reset()
    assert compiled_frames(mark_dynamic=True) == 1
    torch._dynamo.reset()
    assert compiled_frames(mark_dynamic=False) > 1


@pytest.mark.skipif(fa4.available(), reason="FA4 is installed here")
def test_cuda_kernel_without_fa4_says_how_to_install():
    with pytest.raises(RuntimeError, match=r"flash_attn\.cute.*gpu"):
        fa4._kernels()


def test_auto_without_fa4_on_hopper_says_so_once_on_stderr(tiny_model_config, monkeypatch, capsys):
    """The fallback is recorded and announced: a run on SDPA where FA4 was expected is much slower."""
    import golf.train.backend as backend
    from golf.artifact.model import GPT

    monkeypatch.setattr(backend, "backend_order", lambda device, doc_masked: ["fa4", "sdpa"])
    monkeypatch.setattr(backend, "select_backend", lambda device, doc_masked: "sdpa")
    monkeypatch.setattr(fa4, "_import_error", lambda: "ModuleNotFoundError: No module named 'cutlass'")
    got = backend.set_backend(GPT(tiny_model_config), "auto", torch.device("cpu"))
    assert got == {"attention_backend": "sdpa", "attention_order": "fa4 > sdpa"}
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "took sdpa, not fa4" in err[0] and "No module named 'cutlass'" in err[0]
    assert "[gpu]" in err[0]

    monkeypatch.setattr(backend, "backend_order", lambda device, doc_masked: ["sdpa"])  # the CPU: nothing to say
    backend.set_backend(GPT(tiny_model_config), "auto", torch.device("cpu"))
    assert capsys.readouterr().err == ""


# ---- GPU: FA4 itself -------------------------------------------------------------------------

def needs_fa4(test):
    for mark in (pytest.mark.gpu,
                 pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
                 pytest.mark.skipif(not fa4.available(), reason="needs flash-attn-4 (pip install -e '.[gpu]')")):
        test = mark(test)
    return test


def rel(a, b):
    return float((a.float() - b.float()).norm() / b.float().norm())


@needs_fa4
@pytest.mark.parametrize("varlen", [False, True])
def test_fa4_matches_sdpa_on_gpu(varlen):
    """Values and gradients at the bf16 level (FA4 measured 2e-3 on the H200, BENCHMARKS.md), GQA 8 / 4 heads, head dim 64."""
    if varlen:
        q, k, v = qkv((1024, 8, 64), (1024, 4, 64), "cuda", torch.bfloat16)
        cu = torch.tensor([0, 300, 800, 800, 1024], dtype=torch.int32, device="cuda")
        y, ref = fa4.varlen_attention(q, k, v, cu, 1024), per_sequence(q, k, v, cu)
    else:
        q, k, v = qkv((2, 1024, 8, 64), (2, 1024, 4, 64), "cuda", torch.bfloat16)
        y, ref = fa4.attention(q, k, v), sdpa_causal(q, k, v)
    assert y.dtype == torch.bfloat16 and y.is_contiguous()
    assert rel(y, ref) < 1e-2
    for a, b in zip(grads(y, (q, k, v)), grads(ref, (q, k, v))):
        assert rel(a, b) < 1e-2


@needs_fa4
def test_fa4_kv_repeat_is_gqa_on_gpu():
    """kv_repeat: k and v repeated to the query heads give GQA's output (the forward runs GQA on strided views
    of them, so bit for bit) and, summed over each head's copies, GQA's dk / dv within bf16 rounding (the
    backward runs as MHA: per-head bf16 gradients, against GQA's fp32 accumulators)."""
    q, k, v = qkv((1024, 8, 64), (1024, 4, 64), "cuda", torch.bfloat16)
    cu = torch.tensor([0, 300, 800, 800, 1024], dtype=torch.int32, device="cuda")
    gqa = fa4.varlen_attention(q, k, v, cu, 1024)
    repeated = fa4.varlen_attention(q, k.repeat_interleave(2, 1), v.repeat_interleave(2, 1), cu, 1024, kv_repeat=2)
    assert torch.equal(repeated, gqa)
    for a, b in zip(grads(repeated, (q, k, v)), grads(gqa, (q, k, v))):
        assert rel(a, b) < 4e-3


@needs_fa4
def test_fa4_compiled_with_inductor_one_graph_for_every_document_count():
    """torch.compile(fullgraph=True) with inductor: FA4 varlen forward and backward in one graph that
    serves 1 to 40 documents per batch without recompiling."""
    torch._dynamo.reset()
    counter = CompileCounterWithBackend("inductor")

    def loss(q, k, v, cu):
        return fa4.varlen_attention(q * 2, k, v, cu, 2048).float().square().mean()

    step = torch.compile(loss, backend=counter, fullgraph=True, dynamic=False)
    n = 4 * 2048
    for n_docs in (1, 4, 17, 40):
        cuts = torch.linspace(0, n, n_docs + 1).round().int().tolist()
        cu = torch.tensor(cuts, dtype=torch.int32, device="cuda")
        torch._dynamo.mark_dynamic(cu, 0)
        q, k, v = qkv((n, 8, 64), (n, 4, 64), "cuda", torch.bfloat16, seed=n_docs)
        step(q, k, v, cu).backward()
        ref = per_sequence(q, k, v, cu)
        assert rel(fa4.varlen_attention(q, k, v, cu, 2048), ref) < 1e-2
        assert all(t.grad is not None and torch.isfinite(t.grad).all() for t in (q, k, v))
    assert counter.frame_count == 1
