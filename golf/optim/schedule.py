"""Schedules by training fraction (docs/techniques.md §2.4): no lr warm-up, a flat phase, then a
linear warm-down to a floor; and Muon's momentum by step: a linear warm-up, then constant or a
triangle wave (cyclic momentum, docs/ablation.md: the record that cycled 0.85-0.95 every 50 steps).

frac is step / iterations in step mode, or elapsed train seconds / (max_wallclock_s - reserve)
in wall-clock mode (the clock paused during val evals and compile warm-up).
"""

from __future__ import annotations


def train_frac(step: int, elapsed_train_s: float, iterations: int, max_wallclock_s: float,
               reserve_s: float = 0.0) -> float:
    """Fraction of training done, in [0, 1]: by wall clock when max_wallclock_s > 0, else by step."""
    if max_wallclock_s > 0:
        return min(1.0, max(0.0, elapsed_train_s / max(max_wallclock_s - reserve_s, 1e-9)))
    return min(1.0, max(0.0, step / max(iterations, 1)))


def lr_multiplier(frac: float, warmdown_frac: float, min_lr: float) -> float:
    """1 while frac < 1 - warmdown_frac, then linear (1 - frac) / warmdown_frac, never below min_lr."""
    if warmdown_frac <= 0 or frac < 1.0 - warmdown_frac:
        return 1.0
    return max((1.0 - frac) / warmdown_frac, min_lr)


def muon_momentum(step: int, start: float, end: float, warmup_steps: int, cycle_steps: int = 0,
                  cycle_min: float = 0.0) -> float:
    """Muon momentum: linear from `start` at step 0 to `end` at `warmup_steps`; then `end`, or with
    cycle_steps > 0 a triangle wave of that period from `end` down to `cycle_min` and back.

    The wave starts at its top, so the momentum is continuous where the warm-up ends, and falls and
    rises linearly (a triangle, as the record that introduced it; a cosine would spend more of each
    period near the extremes). With t = (step - warmup_steps) mod cycle_steps:

        m = end - (end - cycle_min) * (1 - |2 t / cycle_steps - 1|)

    which is `end` at t = 0 and `cycle_min` at t = cycle_steps / 2.
    """
    if step < warmup_steps:
        t = step / warmup_steps
        return (1.0 - t) * start + t * end
    if cycle_steps <= 0:
        return end
    phase = ((step - warmup_steps) % cycle_steps) / cycle_steps
    return end - (end - cycle_min) * (1.0 - abs(2.0 * phase - 1.0))
