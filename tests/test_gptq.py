"""GPTQ and round-to-nearest: exactness, bounds, error ordering, damping of a bad H."""

import pytest
import torch

from golf.artifact.dequant import dequantize_rows
from golf.quant import gptq


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def correlated_h(n_in: int, n_samples: int, seed: int) -> torch.Tensor:
    g = gen(seed)
    mix = torch.randn(n_in, n_in, generator=g) / n_in ** 0.5 + torch.eye(n_in)
    X = torch.randn(n_samples, 5, generator=g) @ torch.randn(5, n_in, generator=g) \
        + 0.3 * torch.randn(n_samples, n_in, generator=g) @ mix
    return X.T @ X


@pytest.mark.parametrize("bits", [2, 4, 6, 8])
def test_identity_hessian_equals_rtn_exactly(bits):
    w = torch.randn(7, 13, generator=gen(bits))
    s = gptq.row_scales(w, 3.0, bits)
    g = gptq.gptq_quantize(w, torch.eye(13), s, bits, block_size=5, damp=0.01)
    r = gptq.rtn_quantize(w, s, bits)
    assert torch.equal(g.q, r.q)
    assert g.q.dtype == torch.int8 and g.scale.dtype == torch.float16


@pytest.mark.parametrize("bits", [4, 5, 6, 7, 8])
def test_gptq_beats_rtn_on_h_weighted_error(bits):
    H = correlated_h(24, 300, seed=bits)
    w = torch.randn(11, 24, generator=gen(100 + bits))
    s = gptq.row_scales(w, 4.0, bits)
    g = gptq.gptq_quantize(w, H, s, bits, block_size=8, damp=0.01)
    r = gptq.rtn_quantize(w, s, bits)
    err_g = gptq.h_weighted_error(w - dequantize_rows(g.q, s), H)
    err_r = gptq.h_weighted_error(w - dequantize_rows(r.q, s), H)
    assert err_g < err_r


@pytest.mark.parametrize("bits", [2, 3, 6])
def test_codes_stay_in_range(bits):
    w = torch.randn(9, 17, generator=gen(7)) * torch.linspace(0.1, 5.0, 17)  # heavy columns
    w[0, 3] = 40.0  # outlier
    R = gptq.clip_range(bits)
    s = gptq.row_scales(w, 1.0, bits)  # tight clip: many values land on the clamp
    for q in (gptq.gptq_quantize(w, correlated_h(17, 60, 3), s, bits, 4, 0.01).q, gptq.rtn_quantize(w, s, bits).q):
        assert int(q.abs().max()) <= R
        assert int(q.abs().max()) == R


def test_rtn_error_bounded_by_half_scale():
    w = torch.randn(6, 19, generator=gen(3))
    bits = 5
    s = gptq.row_scales(w, 2.0, bits)
    R = gptq.clip_range(bits)
    r = gptq.rtn_quantize(w, s, bits)
    deq = dequantize_rows(r.q, s)
    lim = (R * s.float())[:, None]
    clipped = torch.maximum(torch.minimum(w, lim), -lim)
    half = (s.float() / 2)[:, None] * (1 + 1e-6)
    assert ((deq - clipped).abs() <= half).all()
    inside = w.abs() <= lim
    assert ((deq - w).abs()[inside] <= half.expand_as(w)[inside]).all()
    assert (clipped != w).any() and inside.any()  # both cases exercised


def test_scale_is_fp16_and_matches_formula():
    w = torch.randn(4, 33, generator=gen(5))
    w[2] = 0.0  # a dead row: the scale must not round to 0
    s = gptq.row_scales(w, 12.85, 6)
    assert s.dtype == torch.float16 and (s > 0).all()
    want = (12.85 * w.std(dim=1) / 31).half()
    assert torch.equal(s[[0, 1, 3]], want[[0, 1, 3]])
    assert (gptq.rtn_quantize(w, s, 6).q[2] == 0).all()


@pytest.mark.parametrize("factor", [2.0 ** 10, 2.0 ** -6])
def test_independent_of_hessian_scale(factor):
    H = correlated_h(16, 80, seed=11)
    w = torch.randn(5, 16, generator=gen(12))
    s = gptq.row_scales(w, 3.0, 4)
    a = gptq.gptq_quantize(w, H, s, 4, 6, 0.01)
    b = gptq.gptq_quantize(w, H * factor, s, 4, 6, 0.01)
    assert torch.equal(a.q, b.q)


def test_block_size_does_not_change_codes_much():
    """Lazy block updates are an exact reordering of the same arithmetic (up to fp rounding)."""
    H = correlated_h(20, 90, seed=21)
    w = torch.randn(8, 20, generator=gen(22))
    s = gptq.row_scales(w, 3.0, 6)
    a = gptq.gptq_quantize(w, H, s, 6, 1, 0.01).q
    b = gptq.gptq_quantize(w, H, s, 6, 128, 0.01).q
    assert (a != b).float().mean() < 0.02


def test_dead_columns_get_zero_codes():
    H = correlated_h(10, 50, seed=31)
    H[4, :] = 0.0
    H[:, 4] = 0.0
    w = torch.randn(6, 10, generator=gen(32))
    res = gptq.gptq_quantize(w, H, gptq.row_scales(w, 3.0, 6), 6, 4, 0.01)
    assert (res.q[:, 4] == 0).all()


def test_non_positive_definite_hessian_raises_damping_and_reports_it():
    H = torch.diag(torch.tensor([1.0, -1.0, 2.0, 0.5, -3.0, 1.0, 1.0]))
    w = torch.randn(3, 7, generator=gen(41))
    res = gptq.gptq_quantize(w, H, gptq.row_scales(w, 3.0, 6), 6, 4, 0.01)
    assert res.damp_tries > 1 and res.damp_frac > 0.01 and res.fallback == ""
    assert int(res.q.abs().max()) <= 31
    ok = gptq.gptq_quantize(w, torch.eye(7), gptq.row_scales(w, 3.0, 6), 6, 4, 0.01)
    assert ok.damp_tries == 1 and ok.damp_frac == 0.01


def test_batched_gptq_equals_one_at_a_time():
    """Same-shape matrices quantized together give each matrix's own result: codes, damping and
    the RTN fallback of a matrix whose H no damping can fix stay per matrix."""
    ws = torch.randn(4, 9, 16, generator=gen(11))
    Hs = torch.stack([correlated_h(16, 80, seed) for seed in range(4)])
    Hs[1, 5, :] = Hs[1, :, 5] = 0.0  # a dead input
    Hs[2, 3, 3] = float("nan")  # no damping makes this factorizable -> RTN for this matrix only
    Hs[3] = torch.diag(torch.linspace(-1.0, 2.0, 16))  # indefinite: more damping, for this one only
    scales = torch.stack([gptq.row_scales(w, 3.0, 5) for w in ws])
    many = gptq.gptq_quantize_many(ws, Hs, scales, 5, block_size=6, damp=0.01)
    for b in range(4):
        one = gptq.gptq_quantize(ws[b], Hs[b], scales[b], 5, block_size=6, damp=0.01)
        assert torch.equal(many[b].q, one.q), b
        assert (many[b].damp_frac, many[b].damp_tries, many[b].fallback) == (one.damp_frac, one.damp_tries, one.fallback)
    assert many[2].fallback == "rtn" and not many[0].fallback
    assert many[3].damp_tries > 1 and many[0].damp_tries == 1
    assert torch.equal(many[2].q, gptq.rtn_quantize(ws[2], scales[2], 5).q)
