"""Muon (Newton–Schulz, MuonEq-R, decoupled WD, batched = per-matrix), EMA math and warm-up, SWA."""

import math

import pytest
import torch

from golf.optim.ema import EMA, SWA, warmup_decay
from golf.optim.muon import POLAR_EXPRESS, QUINTIC, Muon, newton_schulz, row_normalize


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("coeffs,lo,hi", [("quintic", 0.6, 1.25), ("polar_express", 0.85, 1.15)])
@pytest.mark.parametrize("shape", [(24, 40), (40, 24)])
def test_newton_schulz_is_near_orthogonal(coeffs, lo, hi, shape):
    g = torch.randn(*shape, generator=_gen(1))
    x = newton_schulz(g, steps=5, coeffs=coeffs)
    assert x.shape == g.shape
    s = torch.linalg.svdvals(x)
    assert s.min() > lo and s.max() < hi, (coeffs, s.min(), s.max())
    # Same singular vectors as the polar factor U Vᵀ: <X, UVᵀ> close to rank.
    u, _, vh = torch.linalg.svd(g, full_matrices=False)
    assert (x * (u @ vh)).sum() / min(shape) > lo


def test_polar_express_is_closer_to_orthogonal_than_quintic():
    g = torch.randn(32, 48, generator=_gen(2))
    dev = {c: (torch.linalg.svdvals(newton_schulz(g, 5, c)) - 1).abs().max() for c in ("quintic", "polar_express")}
    assert dev["polar_express"] < dev["quintic"]


def test_row_normalize():
    u = torch.randn(5, 7, generator=_gen(3)) * torch.arange(1, 6).float()[:, None]
    r = row_normalize(u)
    assert torch.allclose(r.norm(dim=1), torch.ones(5), atol=1e-6)
    assert torch.allclose(r * u.norm(dim=1, keepdim=True), u, atol=1e-6)
    assert torch.isfinite(row_normalize(torch.zeros(2, 3))).all()


def _reference_muon(ws, grads_per_step, lr, mu, wd, steps, coeffs, rownorm):
    """Straightforward per-matrix Muon, written from the spec, for comparison."""
    ws = [w.clone() for w in ws]
    bufs = [torch.zeros_like(w) for w in ws]
    for grads in grads_per_step:
        for i, (w, g) in enumerate(zip(ws, grads)):
            bufs[i] = mu * bufs[i] + g
            u = g + mu * bufs[i]
            if rownorm:
                u = u / u.norm(dim=1, keepdim=True).clamp_min(1e-7)
            x = u.T if u.shape[0] > u.shape[1] else u
            x = x / (x.norm() + 1e-7)
            for k in range(steps):
                a, b, c = QUINTIC if coeffs == "quintic" else POLAR_EXPRESS[k]
                A = x @ x.T
                x = a * x + (b * A + c * A @ A) @ x
            if u.shape[0] > u.shape[1]:
                x = x.T
            ws[i] = w * (1 - lr * wd) - lr * max(1.0, w.shape[0] / w.shape[1]) ** 0.5 * x
    return ws


@pytest.mark.parametrize("coeffs,rownorm", [("quintic", False), ("polar_express", True)])
def test_muon_matches_reference(coeffs, rownorm):
    g = _gen(4)
    shapes = [(6, 10), (12, 5), (6, 10)]  # two same-shape matrices exercise the batched path
    ws = [torch.randn(*s, generator=g) for s in shapes]
    grads = [[torch.randn(*s, generator=g) for s in shapes] for _ in range(3)]
    params = [torch.nn.Parameter(w.clone()) for w in ws]
    opt = Muon(params, lr=0.05, momentum=0.9, weight_decay=0.1, backend_steps=5, coeffs=coeffs,
               row_normalize=rownorm)
    for step_grads in grads:
        for p, gr in zip(params, step_grads):
            p.grad = gr.clone()
        opt.step()
    ref = _reference_muon(ws, grads, 0.05, 0.9, 0.1, 5, coeffs, rownorm)
    for p, r in zip(params, ref):
        assert torch.allclose(p.detach(), r, atol=1e-5), (p - r).abs().max()


@pytest.mark.gpu
def test_muon_on_cuda_matches_cpu():
    """The multi-tensor kernels on the GPU (bf16 Newton–Schulz there, fp32 here) make the same update."""
    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    g = _gen(7)
    shapes = [(64, 32), (32, 64), (64, 32), (16, 16)]
    ws = [torch.randn(*s, generator=g) for s in shapes]
    grads = [[torch.randn(*s, generator=g) for s in shapes] for _ in range(3)]
    runs = []
    for device in ("cpu", "cuda"):
        params = [torch.nn.Parameter(w.clone().to(device)) for w in ws]
        opt = Muon(params, lr=0.05, momentum=0.9, weight_decay=0.1, coeffs="polar_express", row_normalize=True)
        for step_grads in grads:
            for p, gr in zip(params, step_grads):
                p.grad = gr.to(device)
            opt.step()
        runs.append([p.detach().cpu() for p in params])
    for cpu, cuda, w in zip(*runs, ws):
        assert (cuda - w).abs().max() > 0.01  # it moved
        assert torch.allclose(cuda, cpu, atol=5e-3), (cuda - cpu).abs().max()


def test_muon_decoupled_weight_decay_uses_scheduled_lr():
    w = torch.randn(4, 9, generator=_gen(5))
    p = torch.nn.Parameter(w.clone())
    opt = Muon([p], lr=0.1, momentum=0.0, weight_decay=0.5)
    opt.param_groups[0]["lr"] = 0.02  # as the schedule would write it
    p.grad = torch.zeros_like(w)  # a zero gradient orthogonalizes to zero: only the decay acts
    opt.step()
    assert torch.allclose(p.detach(), w * (1 - 0.02 * 0.5), atol=1e-7)


def test_muon_rejects_vectors():
    with pytest.raises(ValueError):
        Muon([torch.nn.Parameter(torch.zeros(3))], lr=0.1)


def test_muon_banks_are_batched_matrices():
    g = torch.randn(3, 6, 10, generator=_gen(6))
    x = newton_schulz(g, 5, "polar_express")
    for i in range(3):
        assert torch.allclose(x[i], newton_schulz(g[i], 5, "polar_express"), atol=1e-5)


def test_ema_matches_hand_computation():
    m = torch.nn.Linear(3, 2)
    w0 = m.weight.detach().clone()
    ema = EMA(m, decay=0.5, warmup=False)
    ws = [w0]
    for k in range(3):
        with torch.no_grad():
            m.weight.add_(1.0 + k)
        ws.append(m.weight.detach().clone())
        ema.update(m)
    # s1 = .5 w0 + .5 w1; s2 = .5 s1 + .5 w2; s3 = .5 s2 + .5 w3
    hand = ws[0]
    for w in ws[1:]:
        hand = 0.5 * hand + 0.5 * w
    assert torch.allclose(ema.shadow["weight"], hand, atol=1e-6)
    # With warm-up the decays are min(0.5, (1+t)/(10+t)) = 0.1, 0.1818..., 0.25.
    assert [warmup_decay(0.5, t) for t in range(3)] == [0.1, 2 / 11, 0.25]
    assert warmup_decay(0.5, 100) == 0.5


def test_ema_warmup_forgets_the_init():
    """decay 0.9965, 144 steps: the init keeps ~60% in a plain EMA, ~0 with the warm-up."""
    decay, steps = 0.9965, 144
    plain = decay ** steps
    assert 0.55 < plain < 0.65
    warm = math.prod(warmup_decay(decay, t) for t in range(steps))
    assert warm < 1e-6
    # And the same through the class: init weights 0, every step's weights 1 -> shadow = 1 - init share.
    m = torch.nn.Linear(2, 2, bias=False)
    with torch.no_grad():
        m.weight.zero_()
    e_plain, e_warm = EMA(m, decay, warmup=False), EMA(m, decay, warmup=True)
    with torch.no_grad():
        m.weight.fill_(1.0)
    for _ in range(steps):
        e_plain.update(m)
        e_warm.update(m)
    assert abs(1 - e_plain.shadow["weight"][0, 0].item() - plain) < 1e-4
    assert 1 - e_warm.shadow["weight"][0, 0].item() < 1e-5


def test_ema_copy_to_and_swa():
    m = torch.nn.Linear(3, 2)
    ema = EMA(m, 0.9)
    with torch.no_grad():
        m.weight.fill_(2.0)
    ema.update(m)
    ema.copy_to(m)
    assert torch.equal(m.weight, ema.shadow["weight"])
    swa = SWA(every=2, start_frac=0.5)
    assert not swa.due(2, 0.4) and not swa.due(3, 0.6) and swa.due(4, 0.6)
    for v in (1.0, 2.0, 6.0):
        with torch.no_grad():
            m.weight.fill_(v)
        swa.add(m)
    assert torch.allclose(swa.average()["weight"], torch.full((2, 3), 3.0))
