"""Budget pruning: minimal, a no-op when it fits, a clear error when it cannot; 2:4 and magnitude rules."""

import dataclasses
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from golf.compress import container
from golf.errors import GolfError
from golf.prune import rules
from golf.prune.budget import prune_to_budget, search_min_n
from golf.prune.config import PruneConfig

sys.path.insert(0, str(Path(__file__).parent))
from test_container import BASE, HEADER, synthetic_model  # noqa: E402

CFG = PruneConfig(budget_bytes=16_000_000, margin_bytes=0, tolerance_bytes=0, method="selective", hessian_weighted=False,
                  magnitude_fraction=0.0, prune_embedding=False, eval_enabled=False, device="cpu")


def zeros(tensors: dict) -> int:
    return sum(int((t == 0).sum()) for k, t in tensors.items() if k.endswith(".q"))


def counting_size(base: int):
    """A size we can reason about: `base` bytes minus one per zero code (any header)."""
    z0 = None

    def size(tensors: dict, header: dict) -> int:
        nonlocal z0
        z = zeros(tensors)
        z0 = z if z0 is None else z0
        return base - (z - z0)
    return size


@pytest.mark.parametrize("over", [1, 2, 37, 500])
def test_minimal_n_known_answer(over):
    t = synthetic_model(layers=1, dim=32, vocab=40)
    code = 1000
    cfg = dataclasses.replace(CFG, budget_bytes=100_000, margin_bytes=10)
    base = cfg.budget_bytes - cfg.margin_bytes - code + over
    pruned, head, rep = prune_to_budget(t, HEADER, cfg, code, counting_size(base))
    assert rep.selective_zeroed == over == rep.values_zeroed
    assert zeros(pruned) - zeros(t) == over
    assert rep.bytes_after == cfg.budget_bytes - cfg.margin_bytes
    assert head["prune_to_budget"]["selective_zeroed"] == over
    assert sum(head["prune_to_budget"]["per_tensor"].values()) == over
    assert zeros(t) == zeros(synthetic_model(layers=1, dim=32, vocab=40))  # the input is untouched


def test_search_stops_within_tolerance():
    size = lambda n: 100_000 - 10 * n  # noqa: E731
    target = 50_005
    n_exact, s_exact, exact = search_min_n(size, 10_000, target)
    n, s, probes = search_min_n(size, 10_000, target, tolerance=2_000)
    assert (n_exact, s_exact) == (5_000, 50_000)
    assert target - 2_000 <= s == size(n) <= target and n >= n_exact
    assert len(probes) <= len(exact)
    with pytest.raises(ValueError, match="tolerance_bytes"):
        dataclasses.replace(CFG, tolerance_bytes=-1)
    # a tolerance never accepts an over-budget probe
    for tol in (0, 1, 10, 10**9):
        n, s, _ = search_min_n(lambda n: 1000 - 3 * (n // 7), 500, 901, tolerance=tol)
        assert s <= 901


def test_search_is_minimal_on_a_staircase():
    size = lambda n: 1000 - 3 * (n // 7)  # noqa: E731  (flat runs: plain bisection must still be exact)
    for target in (1000, 999, 990, 901, 800):
        n, s, probes = search_min_n(size, 500, target)
        assert s == size(n) <= target and (n == 0 or size(n - 1) > target)
        assert len(probes) <= 2 + int(np.ceil(np.log2(500))) + 1


def test_already_fits_prunes_nothing():
    t = synthetic_model(layers=1, dim=32, vocab=40)
    pruned, head, rep = prune_to_budget(t, HEADER, CFG, 5000, counting_size(10_000))
    assert rep.values_zeroed == 0 and rep.probes == 1 and zeros(pruned) == zeros(t)
    assert head["prune_to_budget"]["selective_zeroed"] == 0


def test_cannot_fit_says_how_many_bytes_are_missing():
    t = synthetic_model(layers=1, dim=32, vocab=40)
    n_cand = len(rules.candidates(t, rules.prunable(t, False), None, False))
    cfg = dataclasses.replace(CFG, budget_bytes=50_000, margin_bytes=0)
    base = 50_000 + n_cand + 123  # even all candidates leave 123 bytes over
    with pytest.raises(GolfError, match=r"123 bytes over"):
        prune_to_budget(t, HEADER, cfg, 0, counting_size(base))


def test_none_fails_when_over():
    t = synthetic_model(layers=1, dim=32, vocab=40)
    with pytest.raises(GolfError, match="over"):
        prune_to_budget(t, HEADER, dataclasses.replace(CFG, method="none", budget_bytes=100), 0, counting_size(200))


def test_real_compressor_minimal():
    """With the real container: the chosen n fits, n - 1 does not, and the written header is the probed one."""
    t = synthetic_model(layers=1, dim=64, vocab=64)
    cfg_c = dataclasses.replace(BASE, brotli_quality=5)
    cache: dict = {}
    size = lambda tensors, header: len(container.encode(tensors, header, cfg_c, cache))  # noqa: E731
    code = 777
    full = size(t, HEADER)
    budget = full + code - 300
    cfg = dataclasses.replace(CFG, budget_bytes=budget, margin_bytes=0)
    pruned, head, rep = prune_to_budget(t, HEADER, cfg, code, size)
    n = rep.selective_zeroed
    assert n > 0 and len(container.encode(pruned, head, cfg_c)) + code <= budget
    names = rules.prunable(t, False)
    cands = rules.candidates(t, names, None, False)
    prev_head = {**head, "prune_to_budget": {**head["prune_to_budget"], "selective_zeroed": n - 1,
                                             "per_tensor": cands.counts(n - 1)}}
    assert len(container.encode(rules.zero_first(t, cands, n - 1), prev_head, cfg_c)) + code > budget


def test_candidates_are_pm1_sorted_by_scale_squared_and_hessian():
    t = synthetic_model(layers=1, dim=32, vocab=40)
    names = rules.prunable(t, False)
    assert names and not any("tok_emb" in n for n in names)
    assert "tok_emb.weight" in rules.prunable(t, True)
    c = rules.candidates(t, names, None, False)
    assert np.all(np.diff(c.cost) >= 0)
    for tid, idx in zip(c.tensor[:50], c.index[:50]):
        assert abs(int(t[names[tid] + ".q"].view(-1)[idx])) == 1
    g = torch.Generator().manual_seed(3)
    hess = {}
    for n in names:
        x = torch.randn(64, t[n + ".q"].shape[1], generator=g)
        hess[n] = x.T @ x
    ch = rules.candidates(t, names, hess, True)
    assert len(ch) == len(c) and np.all(np.diff(ch.cost) >= 0)
    with pytest.raises(GolfError, match="Hessian"):
        rules.candidates(t, names, {}, True)


def test_two_four_keeps_two_of_every_four():
    g = torch.Generator().manual_seed(0)
    q = torch.randint(1, 31, (6, 20), generator=g, dtype=torch.int8) * (torch.randint(0, 2, (6, 20), generator=g) * 2 - 1).to(torch.int8)
    t = {"blocks.0.mlp.fc.weight.q": q, "blocks.0.mlp.fc.weight.scale": torch.rand(6, generator=g).half() + 0.1}
    names = rules.prunable(t, False)
    for hess in (None, {names[0]: torch.diag(torch.rand(20, generator=g) + 0.01)}):
        out, zeroed = rules.two_four(t, names, hess)
        nz = (out["blocks.0.mlp.fc.weight.q"] != 0).reshape(6, 5, 4).sum(-1)
        assert torch.all(nz == 2) and zeroed == 6 * 10
        kept = out["blocks.0.mlp.fc.weight.q"].reshape(6, 5, 4)
        if hess is None:  # the two kept are the two largest |q| of each group
            top2 = q.abs().reshape(6, 5, 4).sort(-1, descending=True).values[..., :2]
            assert torch.equal(kept.abs().sort(-1, descending=True).values[..., :2], top2)
    # Hessian-guided: a column with a huge H_jj always survives
    h = torch.ones(20)
    h[3] = 1e6
    out, _ = rules.two_four(t, names, {names[0]: torch.diag(h)})
    assert torch.all(out["blocks.0.mlp.fc.weight.q"][:, 3] != 0)


def test_two_four_at_most_two_with_zeros_and_tail():
    t = synthetic_model(layers=1, dim=18, vocab=40)  # 18 columns: a 2-column tail stays
    names = rules.prunable(t, False)
    out, _ = rules.two_four(t, names)
    for n in names:
        q = out[n + ".q"]
        full = q.shape[1] - q.shape[1] % 4
        assert torch.all((q[:, :full] != 0).reshape(q.shape[0], -1, 4).sum(-1) <= 2)
        assert torch.equal(q[:, full:], t[n + ".q"][:, full:])


def test_magnitude_fraction():
    t = synthetic_model(layers=1, dim=32, vocab=40)
    names = rules.prunable(t, False)
    out, zeroed = rules.magnitude(t, names, 0.5)
    for n in names:
        assert int((out[n + ".q"] == 0).sum()) >= out[n + ".q"].numel() // 2
    assert zeroed == zeros(out) - zeros(t)


def test_method_then_selective():
    t = synthetic_model(layers=1, dim=32, vocab=40)
    cfg = dataclasses.replace(CFG, method="two_four", budget_bytes=100_000)
    pruned, head, rep = prune_to_budget(t, HEADER, cfg, 0, counting_size(90_000))
    assert rep.rule_zeroed > 0 and rep.selective_zeroed == 0 and rep.values_zeroed == rep.rule_zeroed
    with pytest.raises(GolfError, match="Hessian"):
        prune_to_budget(t, HEADER, dataclasses.replace(cfg, method="hessian_two_four"), 0, counting_size(90_000))
