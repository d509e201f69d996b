"""PruneConfig: the `prune_to_budget` section of params.yaml."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True, kw_only=True)
class PruneConfig:
    budget_bytes: int
    """The cap on code bytes + compressed model bytes, decimal bytes (the challenge: 16000000)."""
    margin_bytes: int
    """Safety margin kept below the budget, bytes: the search targets budget_bytes - margin_bytes."""
    tolerance_bytes: int
    """Stop the search at the first probe that fits at most this many bytes under the target, bytes; 0 = exact (the fewest prunes: n fits, n - 1 does not). Each probe is a full compress."""
    method: Literal["selective", "magnitude", "two_four", "hessian_two_four", "none"]
    """selective: only zero the cheapest ±1 codes until it fits; magnitude / two_four / hessian_two_four: apply that rule to the codes first, then selective if still over; none: prune nothing, fail if over."""
    hessian_weighted: bool
    """Selective cost = scale_row² × H_jj (needs the hessians file) instead of scale_row² alone."""
    magnitude_fraction: float
    """method = magnitude: fraction of each matrix's codes zeroed, smallest |q·scale| first, 0..1."""
    prune_embedding: bool
    """Also prune the tied embedding's codes (the records prune only the int6 block matrices)."""
    eval_enabled: bool
    """Score the pruned model's val BPB with the `eval` section's settings; false = skip it (NaN)."""
    device: Literal["auto", "cpu", "cuda"]
    """Where the after-prune eval runs; auto = cuda when available."""

    def __post_init__(self) -> None:
        if self.budget_bytes < 1:
            raise ValueError(f"prune_to_budget.budget_bytes = {self.budget_bytes}: must be >= 1")
        if not 0 <= self.margin_bytes < self.budget_bytes:
            raise ValueError(f"prune_to_budget.margin_bytes = {self.margin_bytes}: must be in 0..budget_bytes-1")
        if self.tolerance_bytes < 0:
            raise ValueError(f"prune_to_budget.tolerance_bytes = {self.tolerance_bytes}: must be >= 0")
        if not 0.0 <= self.magnitude_fraction <= 1.0:
            raise ValueError(f"prune_to_budget.magnitude_fraction = {self.magnitude_fraction}: must be in 0..1")
