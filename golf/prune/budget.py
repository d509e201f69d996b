"""Fit code bytes + compressed model bytes under the budget with the FEWEST pruned ±1 codes.

Every probe is the real artifact: the caller's `model_bytes(tensors, header)` encodes with the
exact final compress config (and a section cache, so unchanged sections cost nothing), and the
header probed is the one that will be written for that n. The search on n keeps, at the end,
a probed n that fits next to a probed n - 1 that does not, or (tolerance_bytes > 0) the first
probed n that fits within tolerance_bytes of the target: the last probes of an exact search
move the size by a few hundred bytes of a 16 MB artifact, at one full compress each.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from golf.errors import GolfError
from golf.params import section_dict
from golf.prune import rules
from golf.prune.config import PruneConfig

SizeFn = Callable[[dict, dict], int]


@dataclass
class PruneReport:
    values_zeroed: int = 0
    candidates: int = 0
    selective_zeroed: int = 0
    rule_zeroed: int = 0
    bytes_before: int = 0
    bytes_after: int = 0
    probes: int = 0
    target_bytes: int = 0
    per_tensor: dict[str, int] = field(default_factory=dict)
    sizes: list[tuple[int, int]] = field(default_factory=list)  # (n, total bytes) per probe


def search_min_n(fits_size: Callable[[int], int], n_max: int, target: int,
                 log: Callable[[str], None] = lambda _: None,
                 tolerance: int = 0) -> tuple[int, int, list[tuple[int, int]]]:
    """Smallest n in 0..n_max with size(n) <= target (size assumed to fall with n).

    Returns (n, size(n), probes). size(0) and size(n_max) are probed first. Sizes fall about
    linearly in n, so each next probe interpolates toward the target inside the bracket (the
    Illinois rule: an end kept twice in a row has its excess halved, so the bracket closes from
    both sides instead of creeping in from one); the search ends with a probed n that fits next
    to a probed n - 1 that does not, or early at a probed n with target - tolerance <= size(n) <= target.
    """
    probes: list[tuple[int, int]] = []

    def size(n: int) -> int:
        s = fits_size(n)
        probes.append((n, s))
        log(f"probe {len(probes)}: {n:,} pruned -> {s:,} bytes ({'fits' if s <= target else 'over'} {target:,})")
        return s

    s0 = size(0)
    if s0 <= target:
        return 0, s0, probes
    s_hi = size(n_max) if n_max > 0 else s0
    if s_hi > target:
        raise GolfError(f"cannot fit the budget: even with all {n_max:,} candidates pruned the artifact is "
                        f"{s_hi:,} bytes, {s_hi - target:,} bytes over the target {target:,}")
    lo, hi, s_best = 0, n_max, s_hi
    f_lo, f_hi, kept = float(s0 - target), float(s_hi - target), ""  # f > 0: over; f <= 0: fits
    while hi - lo > 1 and not (tolerance > 0 and target - s_best <= tolerance):
        mid = lo + int(f_lo / (f_lo - f_hi) * (hi - lo)) if f_lo > f_hi else (lo + hi) // 2
        mid = min(max(mid, lo + 1), hi - 1)
        s = size(mid)
        if s <= target:
            hi, s_best, f_hi = mid, s, float(s - target)
            f_lo, kept = (f_lo / 2, "hi") if kept == "hi" else (f_lo, "hi")
        else:
            lo, f_lo = mid, float(s - target)
            f_hi, kept = (f_hi / 2, "lo") if kept == "lo" else (f_hi, "lo")
    return hi, s_best, probes


def decisions(cfg: PruneConfig, n: int, cands: rules.Candidates, rule_zeroed: int, code_bytes: int) -> dict:
    """What goes into the pruned qmodel's header (deterministic, so probes see the final header)."""
    return {"config": section_dict(cfg), "selective_zeroed": n, "candidates": len(cands),
            "rule_zeroed": rule_zeroed, "per_tensor": cands.counts(n), "code_bytes": code_bytes}


def check_budget(cfg: PruneConfig, code_bytes: int) -> None:
    """Before any probe: the code alone must leave the model some of budget_bytes - margin_bytes."""
    room = cfg.budget_bytes - cfg.margin_bytes
    if code_bytes >= room:
        raise GolfError(f"cannot fit the budget: the code alone is {code_bytes:,} bytes, the budget "
                        f"{cfg.budget_bytes:,} less the margin {cfg.margin_bytes:,} leaves {room:,} for code + model")


def prune_to_budget(tensors: dict, header: dict, cfg: PruneConfig, code_bytes: int, model_bytes: SizeFn,
                    hessians: dict | None = None, log: Callable[[str], None] = lambda _: None,
                    ) -> tuple[dict, dict, PruneReport]:
    """(pruned tensors, header with `prune_to_budget` decisions, report); `log` hears each probe."""
    check_budget(cfg, code_bytes)
    target = cfg.budget_bytes - cfg.margin_bytes - code_bytes
    rep = PruneReport(target_bytes=cfg.budget_bytes - cfg.margin_bytes)
    names = rules.prunable(tensors, cfg.prune_embedding)
    rep.bytes_before = model_bytes(tensors, header) + code_bytes
    work = tensors
    if cfg.method == "magnitude":
        work, rep.rule_zeroed = rules.magnitude(tensors, names, cfg.magnitude_fraction)
    elif cfg.method == "two_four":
        work, rep.rule_zeroed = rules.two_four(tensors, names)
    elif cfg.method == "hessian_two_four":
        work, rep.rule_zeroed = rules.two_four(tensors, names, hessians if hessians is not None else {})
    cands = rules.candidates(work, names, hessians, cfg.hessian_weighted) if cfg.method != "none" else \
        rules.Candidates(names, np.zeros(0, np.int32), np.zeros(0, np.int64), np.zeros(0))
    rep.candidates = len(cands)

    def head(n: int) -> dict:
        return {**header, "prune_to_budget": decisions(cfg, n, cands, rep.rule_zeroed, code_bytes)}

    try:
        n, size, probes = search_min_n(lambda n: model_bytes(rules.zero_first(work, cands, n), head(n)),
                                       len(cands), target, log, cfg.tolerance_bytes)
    except GolfError as e:
        raise GolfError(f"{e} (method {cfg.method}, code {code_bytes:,} bytes, budget {cfg.budget_bytes:,}, "
                        f"margin {cfg.margin_bytes:,})") from None
    rep.probes, rep.sizes = len(probes), [(m, s + code_bytes) for m, s in probes]
    rep.selective_zeroed, rep.per_tensor = n, cands.counts(n)
    rep.values_zeroed = n + rep.rule_zeroed
    rep.bytes_after = size + code_bytes
    return rules.zero_first(work, cands, n), head(n), rep


def timed(fn: SizeFn) -> tuple[SizeFn, list[float]]:
    """Wrap a size function to record each probe's seconds."""
    times: list[float] = []

    def wrapped(t: dict, h: dict) -> int:
        t0 = time.perf_counter()
        try:
            return fn(t, h)
        finally:
            times.append(time.perf_counter() - t0)

    return wrapped, times
