"""quantize.mlp_sparsity_24: a 2:4 mask on MLP matrices, chosen before GPTQ and held through it."""

import dataclasses

import pytest
import torch
from test_quantize import QUANT

from golf.artifact.dequant import dequantize
from golf.errors import GolfError
from golf.quant import gptq, qmodel, sparsity
from golf.quant.config import QuantizeConfig

MLP = ("blocks.0.mlp.fc.weight", "blocks.0.mlp.proj.weight")
DENSE = ("blocks.0.attn.c_q.weight", "tok_emb.weight")


def correlated_hessian(n: int, seed: int) -> torch.Tensor:
    """XᵀX of inputs with correlated features (GPTQ's error feedback has something to exploit)."""
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(512, n, generator=g) @ (torch.eye(n) + 0.4 * torch.randn(n, n, generator=g))
    return X.T @ X / 512


def problem(seed: int = 0) -> tuple[dict, dict]:
    """A state dict with two MLP matrices (one has a tail of 2 columns), an attention matrix of the
    MLP fc's shape (the same batched GPTQ sweep) and an embedding, with their Hessians."""
    g = torch.Generator().manual_seed(seed)
    shapes = {MLP[0]: (24, 16), MLP[1]: (16, 26), DENSE[0]: (24, 16), DENSE[1]: (40, 16)}
    sd = {n: torch.randn(*s, generator=g) * 0.05 for n, s in shapes.items()}
    H = {n: correlated_hessian(s[1], seed + i) for i, (n, s) in enumerate(shapes.items())}
    return sd, H


def cfg(**over) -> QuantizeConfig:
    return QuantizeConfig(**{**QUANT, "attn_bits": 0, "mlp_sparsity_24": True, **over})


def test_two_four_keep_takes_the_two_highest_of_each_group_and_the_tail():
    score = torch.tensor([[1.0, 4.0, 3.0, 2.0, 5.0, 5.0, 5.0, 5.0, 0.1, 9.0]])
    keep = sparsity.two_four_keep(score)
    assert keep.tolist() == [[False, True, True, False, True, True, False, False, True, True]]
    keep = sparsity.two_four_keep(torch.rand(7, 4 * 9 + 3))
    assert (keep[:, :36].reshape(7, 9, 4).sum(-1) == 2).all() and keep[:, 36:].all()


def test_saliency_weighs_magnitude_by_the_inverse_hessian():
    w = torch.tensor([[1.0, 0.5, 0.1, 0.1]])
    H = torch.diag(torch.tensor([1e-3, 1e-3, 1e4, 1e4]))  # the small weights see large inputs
    assert sparsity.mlp_keep(w, H, 0.0).tolist() == [[False, False, True, True]]
    assert sparsity.mlp_keep(w, None, 0.0).tolist() == [[True, True, False, False]]  # no H: |w|


@pytest.mark.parametrize("seed, bits", [(0, 4), (1, 6), (2, 3)])
def test_gptq_with_the_mask_beats_mask_then_rtn(seed, bits):
    g = torch.Generator().manual_seed(seed)
    W = torch.randn(32, 64, generator=g)
    H = correlated_hessian(64, seed)
    keep = sparsity.mlp_keep(W, H, 0.01)
    scale = gptq.row_scales(W, 3.0, bits)
    sparse_gptq = gptq.gptq_quantize(W, H, scale, bits, 16, 0.01, keep)
    rtn = gptq.rtn_quantize(W * keep, scale, bits)
    assert (sparse_gptq.q[~keep] == 0).all() and (rtn.q[~keep] == 0).all()
    err_gptq = gptq.h_weighted_error(W - sparse_gptq.q * scale.float()[:, None], H)
    err_rtn = gptq.h_weighted_error(W - rtn.q * scale.float()[:, None], H)
    assert err_gptq < err_rtn


def test_an_all_kept_mask_is_plain_gptq():
    W, H = torch.randn(8, 16), correlated_hessian(16, 3)
    scale = gptq.row_scales(W, 3.0, 4)
    plain = gptq.gptq_quantize(W, H, scale, 4, 8, 0.01)
    held = gptq.gptq_quantize(W, H, scale, 4, 8, 0.01, torch.ones_like(W, dtype=torch.bool))
    assert torch.equal(plain.q, held.q)


@pytest.mark.parametrize("method", ["gptq", "rtn"])
def test_quantize_prunes_mlp_2_of_4_and_leaves_the_rest_alone(method):
    sd, H = problem()
    on_t, on_h, on_r = qmodel.quantize_state_dict(sd, H, cfg(method=method), {})
    off_t, off_h, _ = qmodel.quantize_state_dict(sd, H, cfg(method=method, mlp_sparsity_24=False), {})
    W = dequantize(on_t, on_h)
    for name in MLP:
        rows, cols = sd[name].shape
        full = cols - cols % 4
        zeros = (W[name][:, :full] == 0).reshape(rows, full // 4, 4).sum(-1)
        assert (zeros >= 2).all(), name
        assert on_h["plan"][name]["sparsity"] == "2:4"
        assert on_r["tensors"][name]["zero_frac"] >= (full // 2) / cols  # the tail is kept
    for name in DENSE:
        assert torch.equal(on_t[f"{name}.q"], off_t[f"{name}.q"]), name
        assert "sparsity" not in on_h["plan"][name] and "sparsity" not in off_h["plan"][name]
    summary = on_r["summary"]
    assert summary["sparsity_24_tensors"] == len(MLP) and summary["sparsity_24_zero_frac"] >= 0.45
    assert "sparsity_24_tensors" not in qmodel.quantize_state_dict(sd, H, cfg(mlp_sparsity_24=False), {})[2]["summary"]


def test_lqer_corrects_only_the_dense_tensors():
    sd, H = problem(1)
    tensors, header, _ = qmodel.quantize_state_dict(
        sd, H, cfg(lqer_enabled=True, lqer_top_k=len(sd), lqer_asym_group=0), {})
    for name in MLP:
        assert header["plan"][name]["lqer"] == "" and f"{name}.lqA" not in tensors
    assert any(header["plan"][n]["lqer"] for n in DENSE)
    W = dequantize(tensors, header)
    for name in MLP:  # still 2:4 after the dequantize that adds LQER terms elsewhere
        full = sd[name].shape[1] // 4 * 4
        assert ((W[name][:, :full] == 0).reshape(W[name].shape[0], -1, 4).sum(-1) >= 2).all()


@pytest.mark.parametrize("over", [dict(codebook_k=16), dict(hadamard=True)])
def test_config_refuses_sparsity_with_codebooks_or_rotation(over):
    from golf.artifact.typed import build_section

    with pytest.raises(GolfError, match="quantize.mlp_sparsity_24 = True"):
        build_section({**dataclasses.asdict(cfg()), **over}, "quantize", QuantizeConfig)
