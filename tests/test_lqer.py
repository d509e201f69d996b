"""LQER: the quantized low-rank correction lowers the error it targets; packing ranges."""

import pytest
import torch

from golf.artifact.dequant import lqer_unpack
from golf.quant import lqer


def planted_error(out: int, inn: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    low = torch.randn(out, 4, generator=g) @ torch.randn(4, inn, generator=g)
    return low + 0.05 * torch.randn(out, inn, generator=g)


@pytest.mark.parametrize("shape, group, kind", [((24, 64), 64, "asym"), ((20, 50), 64, "sym"), ((20, 48), 0, "sym")])
def test_correction_reduces_error(shape, group, kind):
    E = planted_error(*shape, seed=shape[1])
    got, t, corr = lqer.correct(E, rank=4, group=group, factor_bits=4)
    assert got == kind
    assert (E - corr).norm() < 0.8 * E.norm()
    assert torch.allclose(corr, lqer_unpack(kind, t))


def test_asym_code_ranges_and_dtypes():
    E = planted_error(16, 128, seed=3)
    A, B = lqer.svd_factors(E, 4)
    assert A.shape == (16, 4) and B.shape == (4, 128)
    kind, t = lqer.pack(A, B, 64, 4)
    assert kind == "asym"
    assert t["lqA"].dtype == torch.int8 and t["lqB"].dtype == torch.int8
    assert int(t["lqA"].min()) >= -2 and int(t["lqA"].max()) <= 1
    assert int(t["lqB"].min()) >= -8 and int(t["lqB"].max()) <= 7
    assert t["lqAs"].dtype == torch.float16 and t["lqAs"].numel() == 1
    assert t["lqBs"].dtype == torch.float16 and t["lqBs"].numel() == B.numel() // 64
    assert lqer.packed_bits(kind, t, 4) == 16 * 4 * 2 + 4 * 128 * 4 + 16 * (1 + 8)


def test_svd_factors_exact_for_low_rank():
    g = torch.Generator().manual_seed(5)
    E = torch.randn(9, 2, generator=g) @ torch.randn(2, 14, generator=g)
    A, B = lqer.svd_factors(E, 4)
    assert torch.allclose(A @ B, E, atol=1e-5)
