"""Seed statistics: mean ± sample std, and the leaderboard's significance rule as a Welch t-test.

The rule (README.md, Experiments): a new record must be at least 0.005 nats better than the
baseline at p < 0.01, one-sided. We test it on `ttt_eval.val_loss`, the mean NLL in nats per
scored token that the records' logs print (BPB is bits per byte: val_loss = val_bpb x ln 2 x
bytes/token of the scored span). The null hypothesis is "better by at most 0.005 nats": the
baseline's losses, shifted down by the margin, against the candidate's, Welch (unequal
variances), alternative "the shifted baseline is still higher". `p_diff` is the two-sided Welch
p-value of any difference, for saying which ablation rows differ at all.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from typing import Sequence

MARGIN_NATS = 0.005
ALPHA = 0.01
MIN_SEEDS = 2
"""A t-test needs a variance on each side: at least two seeds per side."""


@dataclass(frozen=True)
class Summary:
    mean: float
    std: float | None
    """Sample standard deviation (n - 1); None for one value."""
    n: int


def summarize(values: Sequence[float]) -> Summary | None:
    """mean, sample std and n of the finite values; None if there are none."""
    xs = [float(v) for v in values if math.isfinite(v)]
    if not xs:
        return None
    return Summary(mean=statistics.fmean(xs), std=statistics.stdev(xs) if len(xs) > 1 else None, n=len(xs))


@dataclass(frozen=True)
class Comparison:
    delta: float
    """Candidate mean minus baseline mean, nats per token (negative = better)."""
    p_rule: float | None
    """One-sided Welch p of "better by more than MARGIN_NATS"; None below MIN_SEEDS a side or with no variance."""
    p_diff: float | None
    """Two-sided Welch p of any difference."""

    @property
    def clears(self) -> bool:
        """At least MARGIN_NATS better at p < ALPHA (the test's p < ALPHA implies the mean gain > margin)."""
        return self.p_rule is not None and self.p_rule < ALPHA and -self.delta >= MARGIN_NATS


def _p(a: Sequence[float], b: Sequence[float], alternative: str) -> float | None:
    from scipy import stats

    p = float(stats.ttest_ind(a, b, equal_var=False, alternative=alternative).pvalue)
    return p if math.isfinite(p) else None  # both sides without variance: no test


def compare(baseline: Sequence[float], candidate: Sequence[float], margin: float = MARGIN_NATS) -> Comparison:
    """The rule's test of candidate vs baseline losses (nats; lower is better)."""
    delta = statistics.fmean(candidate) - statistics.fmean(baseline)
    if min(len(baseline), len(candidate)) < MIN_SEEDS:
        return Comparison(delta=delta, p_rule=None, p_diff=None)
    shifted = [x - margin for x in baseline]
    return Comparison(delta=delta, p_rule=_p(shifted, candidate, "greater"),
                      p_diff=_p(baseline, candidate, "two-sided"))
