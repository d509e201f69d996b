"""lr schedule (flat, then linear warm-down to a floor) in step and wall-clock modes; momentum warm-up."""

import pytest

from golf.optim.schedule import lr_multiplier, muon_momentum, train_frac


def _curve(fracs, wd=0.4, floor=0.1):
    return [lr_multiplier(f, wd, floor) for f in fracs]


def test_step_mode_shape():
    its = 100
    muls = _curve([train_frac(s, 999.0, its, 0.0) for s in range(its + 1)])
    assert all(m == 1.0 for m in muls[:60])            # flat through frac < 0.6
    assert muls[60] == pytest.approx(1.0)              # warm-down starts at 1
    assert muls[80] == pytest.approx(0.5)              # halfway down: (1 - .8) / .4
    assert muls[100] == pytest.approx(0.1)             # floor
    assert muls[95] == pytest.approx(0.125)
    assert all(a >= b for a, b in zip(muls, muls[1:]))  # never increases
    assert _curve([0.99], floor=0.0)[0] == pytest.approx(0.025)


def test_wallclock_mode_uses_elapsed_time_not_steps():
    # 600 s budget with 100 s reserve: frac = elapsed / 500, whatever the step.
    assert train_frac(5, 250.0, 10, 600.0, reserve_s=100.0) == pytest.approx(0.5)
    assert train_frac(5, 900.0, 10, 600.0) == 1.0
    muls = _curve([train_frac(0, t, 1, 100.0) for t in (0.0, 59.0, 70.0, 80.0, 100.0)])
    assert muls == pytest.approx([1.0, 1.0, 0.75, 0.5, 0.1])


def test_no_warmdown_is_flat():
    assert _curve([0.0, 0.5, 1.0], wd=0.0, floor=0.0) == [1.0, 1.0, 1.0]


def test_momentum_warmup():
    assert muon_momentum(0, 0.92, 0.97, 100) == pytest.approx(0.92)
    assert muon_momentum(50, 0.92, 0.97, 100) == pytest.approx(0.945)
    assert muon_momentum(100, 0.92, 0.97, 100) == pytest.approx(0.97)
    assert muon_momentum(5000, 0.92, 0.97, 100) == pytest.approx(0.97)
    assert muon_momentum(0, 0.92, 0.97, 0) == 0.97
