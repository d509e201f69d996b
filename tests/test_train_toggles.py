"""The issue-20 training toggles: EMA warm-up off, tight SWA / SWA of the EMA, late QAT, CAT's sigmoid
form, cyclic Muon momentum. Each off by default (tests/test_toggles_off.py); here, what each does when on."""

from __future__ import annotations

import math

import pytest
import torch
from test_train import SOLO, TinyLM, corpus, tcfg

from golf.optim.schedule import lr_multiplier, muon_momentum
from golf.train import loop
from golf.train.cat import cat_matrices, cat_penalty, clip_range, grid_point, grid_step, sigmoid_distance
from golf.train.loop import make_averages, train, update_averages
from golf.train.qat import fake_quantized

CPU = torch.device("cpu")


class Scalar(torch.nn.Module):
    """One weight: its EMA / SWA are plain numbers to check against a closed form."""

    def __init__(self, w0: float) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(torch.tensor([w0], dtype=torch.float64))

    def set(self, v: float) -> None:
        with torch.no_grad():
            self.w.fill_(v)


def _averages_of_ramp(steps: int, **over) -> tuple[float | None, float | None]:
    """Weights w_k = k after step k = 1..steps (w_0 = 0), averaged as the loop does with the lr multipliers of
    a warm-down over the whole run; (EMA, SWA average) at the end (fp32), None where off."""
    cfg = tcfg(iterations=steps, warmdown_frac=1.0, min_lr=0.0, **over)
    m = Scalar(0.0)
    ema, swa = make_averages(m, cfg)
    for k in range(1, steps + 1):
        lr_mul = lr_multiplier((k - 1) / steps, cfg.warmdown_frac, cfg.min_lr)  # the lr step k ran at
        m.set(float(k))
        update_averages(m, cfg, ema, swa, k, k / steps, lr_mul)
    return (ema.shadow["w"].item() if ema else None,
            swa.average()["w"].item() if swa is not None and swa.count else None)


# ---- 1. EMA warm-up on/off ------------------------------------------------------------------------

def test_ema_without_warmup_is_the_plain_decay_from_the_first_update():
    d, steps = 0.8, 7
    plain, _ = _averages_of_ramp(steps, ema_decay=d, ema_warmup=False)
    # s_T = d^T w_0 + sum_k (1 - d) d^(T-k) w_k with w_0 = 0, w_k = k
    assert plain == pytest.approx(sum((1 - d) * d ** (steps - k) * k for k in range(1, steps + 1)), rel=1e-6)
    warm, _ = _averages_of_ramp(steps, ema_decay=d, ema_warmup=True)
    # with the warm-up: decay_t = min(d, (1 + t) / (10 + t)), so s_t = decay_t s_(t-1) + (1 - decay_t) t
    s = 0.0
    for t in range(steps):
        dt = min(d, (1 + t) / (10 + t))
        s = dt * s + (1 - dt) * (t + 1)
    assert warm == pytest.approx(s, rel=1e-6)
    assert warm > plain + 1.0  # the warm-up forgets the init (w_0 = 0) faster


# ---- 2. tight SWA, alongside the EMA ---------------------------------------------------------------

def test_tight_swa_snapshots_only_at_low_lr_and_swa_of_ema_averages_the_ema():
    # 8 steps, warm-down over all of them: step k ran at lr 1 - (k-1)/8 < 0.5 once k >= 6, so with
    # swa_every = 2 the snapshots are after steps 6 and 8.
    common = dict(ema_decay=0.5, ema_warmup=False, swa_enabled=True, swa_every=2, swa_start_frac=0.0,
                  swa_max_lr_mul=0.5)
    ema, raw_swa = _averages_of_ramp(8, swa_mode="replace", **common)
    assert raw_swa == pytest.approx((6 + 8) / 2, rel=1e-6)
    # the EMA (decay 1/2) of the ramp w_t = t from 0: e_t = t - 1 + 2^-t
    assert ema == pytest.approx(7 + 2.0 ** -8, rel=1e-6)
    _, swa_of_ema = _averages_of_ramp(8, swa_mode="swa_of_ema", **common)
    assert swa_of_ema == pytest.approx(((5 + 2.0 ** -6) + (7 + 2.0 ** -8)) / 2, rel=1e-6)
    # no lr condition (0): every 2nd step from swa_start_frac on, as before this toggle (steps 4, 6, 8)
    _, loose = _averages_of_ramp(8, swa_mode="replace", **{**common, "swa_max_lr_mul": 0.0, "swa_start_frac": 0.5})
    assert loose == pytest.approx(6.0, rel=1e-6)


def _run(cfg_over: dict, on_step=None) -> torch.nn.Module:
    tr, _ = corpus(seed=1)
    va, vb = corpus(600, seed=2)
    torch.manual_seed(0)
    m = TinyLM()
    train(m, tcfg(val_every=0, warmup_steps=0, **cfg_over), tr, va, vb, CPU, SOLO, progress=False, on_step=on_step)
    return m


@pytest.mark.parametrize("mode", ["replace", "swa_of_ema"])
def test_the_loop_saves_the_mean_of_the_tight_swa_snapshots(mode, monkeypatch):
    """12 steps, warm-down 0.5: steps 11 and 12 run at lr multiplier < 0.5, so with swa_every = 1 the saved
    weights are the mean of the raw (replace) or EMA (swa_of_ema) weights after those two steps."""
    made = {}

    def keep(model, cfg):
        made["ema"], made["swa"] = make_averages(model, cfg)
        return made["ema"], made["swa"]

    monkeypatch.setattr(loop, "make_averages", keep)
    seen: dict[int, dict] = {}
    model_ref = {}

    def on_step(step: int) -> None:
        src = made["ema"].shadow if mode == "swa_of_ema" else model_ref["m"].state_dict()
        seen[step] = {k: v.detach().clone().float() for k, v in src.items()}

    tr, _ = corpus(seed=1)
    va, vb = corpus(600, seed=2)
    torch.manual_seed(0)
    m = model_ref["m"] = TinyLM()
    train(m, tcfg(iterations=12, val_every=0, warmup_steps=0, warmdown_frac=0.5, min_lr=0.1, ema_decay=0.9,
                  swa_enabled=True, swa_every=1, swa_start_frac=0.0, swa_max_lr_mul=0.5, swa_mode=mode),
          tr, va, vb, CPU, SOLO, progress=False, on_step=on_step)
    assert made["swa"].count == 2
    for k, v in m.state_dict().items():
        torch.testing.assert_close(v.float(), (seen[11][k] + seen[12][k]) / 2, msg=k)


def test_swa_of_ema_needs_an_ema():
    from golf.errors import GolfError

    with pytest.raises(GolfError, match="swa_mode"):
        tcfg(swa_enabled=True, swa_mode="swa_of_ema", ema_decay=0.0)


# ---- 3. late QAT -----------------------------------------------------------------------------------

def _batch(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 29, (3, 16), generator=g)
    return x[:, :-1], x[:, 1:]


def test_qat_forward_uses_the_grid_points_and_restores_the_weights():
    torch.manual_seed(0)
    m = TinyLM()
    ws = cat_matrices(m)
    before = {id(w): w.detach().clone() for w in ws}
    used = {}
    hooks = [blk.fc.register_forward_hook(lambda mod, i, o, n=n: used.__setitem__(n, mod.weight.detach().clone()))
             for n, blk in enumerate(m.blocks)]
    with fake_quantized(ws, 4, 2.0):
        m.nll(*_batch()).mean().backward()
    for h in hooks:
        h.remove()
    for n, blk in enumerate(m.blocks):
        w0 = before[id(blk.fc.weight)]
        s = grid_step(w0, 4, 2.0)  # the step of the float weights, as quantize computes it
        codes = used[n] / s
        torch.testing.assert_close(codes, codes.round(), rtol=0, atol=1e-5)  # on the grid ...
        assert codes.round().abs().max() == clip_range(4)  # ... clamped to R (clip 2 sigma: some are)
        torch.testing.assert_close(used[n], grid_point(w0, s, 4), rtol=0, atol=0)  # the nearest point
        assert (used[n] - w0).abs().max() > 0
    for w in ws:
        assert torch.equal(w.detach(), before[id(w)])  # the float weights are back, bit for bit


def test_qat_gradient_is_straight_through():
    """The gradient QAT leaves on w equals the plain gradient of the model whose weights are the grid points."""
    torch.manual_seed(0)
    qat, ref = TinyLM(), TinyLM()
    ws = cat_matrices(qat)
    with torch.no_grad():
        for w, r in zip(ws, cat_matrices(ref)):
            r.copy_(grid_point(w, grid_step(w, 5, 3.0), 5))
    x, y = _batch(1)
    with fake_quantized(ws, 5, 3.0):
        loss_q = qat.nll(x, y).mean()
        loss_q.backward()
    loss_r = ref.nll(x, y).mean()
    loss_r.backward()
    assert loss_q.item() == loss_r.item()
    for (n, p), r in zip(qat.named_parameters(), ref.parameters()):
        torch.testing.assert_close(p.grad, r.grad, rtol=0, atol=0, msg=n)
    # and it is not the float model's gradient
    fl = TinyLM()
    fl.nll(x, y).mean().backward()
    assert not torch.allclose(ws[0].grad, cat_matrices(fl)[0].grad)


def test_qat_off_leaves_the_weights_alone_and_on_switches_late(capsys):
    with fake_quantized([], 6, 12.85):
        pass  # an empty list (QAT off) is a no-op
    off = _run(dict(iterations=8))
    same = _run(dict(iterations=8, qat_start_frac=0.0, qat_bits=2, qat_clip_sigmas=1.0))  # grid keys unused when off
    for a, b in zip(off.state_dict().values(), same.state_dict().values()):
        assert torch.equal(a, b)
    assert "late QAT" not in capsys.readouterr().err
    late = _run(dict(iterations=8, qat_start_frac=0.75, qat_bits=3, qat_clip_sigmas=2.0))
    assert "late QAT on from step 7 (training fraction 0.750)" in capsys.readouterr().err
    assert any(not torch.equal(a, b) for a, b in zip(off.state_dict().values(), late.state_dict().values()))


def test_quantize_says_when_the_qat_grid_differs_from_its_plan():
    from test_quantize import qcfg

    from golf.quant.run import qat_grid_note

    cfg = qcfg(matrix_bits=6, clip_sigmas=12.85, attn_bits=0, attn_clip_sigmas=0.0, mlp_bits=5, mlp_clip_sigmas=0.0)
    assert qat_grid_note({}, cfg) is None  # a checkpoint from before the QAT keys
    assert qat_grid_note({"qat_start_frac": 0.0, "qat_bits": 4, "qat_clip_sigmas": 1.0}, cfg) is None  # QAT off
    note = qat_grid_note({"qat_start_frac": 0.85, "qat_bits": 6, "qat_clip_sigmas": 12.85}, cfg)
    assert note is not None and "mlp 5 bits / 12.85 sigmas" in note and "attn" not in note
    same = qcfg(matrix_bits=6, clip_sigmas=12.85, attn_bits=0, attn_clip_sigmas=0.0, mlp_bits=0, mlp_clip_sigmas=0.0)
    assert qat_grid_note({"qat_start_frac": 0.85, "qat_bits": 6, "qat_clip_sigmas": 12.85}, same) is None


def test_qat_switching_on_does_not_recompile():
    """The compiled forward sees the same parameter tensors, only new values: no second graph."""
    import torch._dynamo as dynamo

    dynamo.reset()
    torch.manual_seed(0)
    m = TinyLM()
    ws = cat_matrices(m)
    compiled = torch.compile(m.nll, backend="eager", dynamic=False)
    x, y = _batch(2)
    with dynamo.config.patch(error_on_recompile=True):
        compiled(x, y).mean().backward()
        with fake_quantized(ws, 6, 12.85):
            out = compiled(x, y)
            out.mean().backward()
        compiled(x, y)
    with fake_quantized(ws, 6, 12.85):
        torch.testing.assert_close(out, m.nll(x, y))
    dynamo.reset()


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_late_qat_in_a_compiled_gpu_run_does_not_recompile(tiny_model_config):
    """golf's GPT, torch.compile'd (inductor) on CUDA: QAT switching on mid-run compiles nothing new."""
    import torch._dynamo as dynamo

    from golf.artifact.model.gpt import GPT

    tr, _ = corpus(3000, vocab=96, seed=1)
    va, vb = corpus(400, vocab=96, seed=2)
    dynamo.reset()
    torch.manual_seed(0)
    model = GPT(tiny_model_config)
    cfg = tcfg(iterations=6, val_every=0, warmup_steps=1, train_batch_tokens=2 * 24, grad_accum_steps=1,
               val_max_tokens=2 * 24, device="cuda", compile="on", fused_kernels="off", enable_looping_at=0.0,
               qat_start_frac=0.5)
    with dynamo.config.patch(error_on_recompile=True):
        res = train(model, cfg, tr, va, vb, torch.device("cuda"), SOLO, progress=False)
    assert res.compiled and all(math.isfinite(r["train_loss"]) for r in res.rows)
    dynamo.reset()


# ---- 4. CAT's sigmoid form ---------------------------------------------------------------------------

def test_sigmoid_distance_zero_on_grid_max_half_way_gradient_to_nearest_point():
    s = torch.tensor([[0.25]])
    f = torch.linspace(-0.5, 0.5, 101)
    w = ((torch.tensor(3.0) + f) * s).reshape(1, -1).requires_grad_()  # around code 3 of a 6-bit grid
    d = sigmoid_distance(w, s, 6)
    assert d[0, 50].item() == 0.0 and d.min().item() == 0.0                  # on the grid point
    assert d[0, 0].item() == pytest.approx(1.0) and d[0, -1].item() == pytest.approx(1.0)  # half-way: maximal
    assert d.max().item() == pytest.approx(1.0)
    left, right = d[0, :51], d[0, 50:]
    assert torch.all(left[:-1] >= left[1:]) and torch.all(right[:-1] <= right[1:])  # grows with |f|
    assert d[0, 40].item() < 0.03  # |f| = 0.1: nearly flat near the grid point
    d.sum().backward()
    g, fr = w.grad[0], f
    inside = (fr.abs() > 0.01) & (fr.abs() < 0.49)
    assert torch.all(g[inside] * fr[inside] > 0)  # descent (-g) moves each weight toward code 3
    assert w.grad[0, 50].item() == 0.0
    # just beyond the clip range (code 31.6 > R = 31): pulled back toward the outermost code; far beyond it
    # the sigmoid saturates and lets go (the squared form would keep pulling)
    out = torch.tensor([[31.6 * 0.25, 40.0 * 0.25]], requires_grad=True)
    sigmoid_distance(out, s, 6).sum().backward()
    assert out.grad[0, 0].item() > 0 and out.grad[0, 1].item() == 0.0


def test_cat_penalty_sigmoid_form_is_the_mean_distance():
    gen = torch.Generator().manual_seed(5)
    ws = [torch.randn(4, 9, generator=gen), torch.randn(3, 20, generator=gen)]
    pen = cat_penalty(ws, 4, 2.5, "sigmoid").item()
    manual = sum(sigmoid_distance(w, grid_step(w, 4, 2.5), 4).sum().item() for w in ws) / (36 + 60)
    assert pen == pytest.approx(manual, rel=1e-6) and 0 < pen < 1
    with pytest.raises(ValueError, match="form"):
        cat_penalty(ws, 4, 2.5, "cubic")


def test_sigmoid_cat_in_the_loop_pulls_weights_to_the_grid():
    pens = {}
    for every in (0, 1):
        m = _run(dict(iterations=12, ema_decay=0.0, cat_every=every, cat_weight=30.0, cat_form="sigmoid",
                      cat_bits=4, cat_clip_sigmas=3.0))
        with torch.no_grad():
            pens[every] = cat_penalty(cat_matrices(m), 4, 3.0, "sigmoid").item()
    assert pens[1] < 0.8 * pens[0], pens


# ---- 5. cyclic Muon momentum ---------------------------------------------------------------------------

def test_cyclic_momentum_is_a_triangle_after_the_warmup():
    mom = [muon_momentum(s, 0.85, 0.95, 10, 50, 0.85) for s in range(200)]
    assert mom[0] == pytest.approx(0.85) and mom[5] == pytest.approx(0.90)  # warm-up unchanged
    assert mom[10] == pytest.approx(0.95)                                    # top where the warm-up ends
    assert mom[20] == pytest.approx(0.95 - 0.10 * 0.4)                      # 10 of 50 steps in: 2/5 of the way down
    assert mom[35] == pytest.approx(0.85)                                    # half a period: the low point
    assert mom[60] == pytest.approx(0.95) and mom[85] == pytest.approx(0.85)  # periodic
    assert all(a > b for a, b in zip(mom[10:35], mom[11:36]))                # linear down ...
    assert all(a < b for a, b in zip(mom[35:60], mom[36:61]))                # ... and up
    assert max(mom[10:]) == pytest.approx(0.95) and min(mom[10:]) == pytest.approx(0.85)
    assert mom[22] - mom[23] == pytest.approx(0.004)                          # slope (max - min) / (P/2)
    # off: constant after the warm-up, as before
    assert muon_momentum(137, 0.85, 0.95, 10, 0, 0.5) == 0.95
    assert muon_momentum(7, 0.85, 0.95, 0, 4, 0.75) == pytest.approx(0.95 - 0.2 * 0.5)  # no warm-up: from step 0


def test_cyclic_momentum_reaches_muon_in_the_loop(monkeypatch):
    seen = []
    real = loop.Stepper.__call__

    def spy(self, step, lr_mul, momentum):
        seen.append(momentum)
        return real(self, step, lr_mul, momentum)

    monkeypatch.setattr(loop.Stepper, "__call__", spy)
    _run(dict(iterations=8, muon_momentum_warmup_steps=2, muon_momentum_cycle_steps=4, muon_momentum_cycle_min=0.75))
    assert seen == pytest.approx([muon_momentum(s, 0.85, 0.95, 2, 4, 0.75) for s in range(8)])
    assert min(seen[2:]) == pytest.approx(0.75) and math.isclose(seen[2], 0.95)


def test_cyclic_momentum_config_checks():
    from golf.errors import GolfError

    with pytest.raises(GolfError, match="muon_momentum_cycle_min"):
        tcfg(muon_momentum_cycle_steps=50, muon_momentum_cycle_min=0.99)
    with pytest.raises(GolfError, match="muon_momentum_cycle_steps"):
        tcfg(muon_momentum_cycle_steps=1)
