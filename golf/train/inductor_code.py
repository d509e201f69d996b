"""Reading inductor's generated code: its mix-order reduction kernels (golf/train/inductor.py caps them).

Not imported by training: bench/mix_order_kernels.py prints what this finds in a compile's
TORCHINDUCTOR_CACHE_DIR, and tests/test_inductor_cap.py checks the cap with it.
"""

from __future__ import annotations

import re


def mix_order_kernels(code: str) -> dict[str, tuple[int, int]]:
    """{kernel name: (distinct pointers it loads from, column sums it carries)} for each mix-order
    reduction kernel in inductor's generated code (`code`: the text of its .py files; a kernel met
    twice, in its own file and in the graph's, counts once). The column sums are the register
    accumulators that spilled in golf's two slow kernels on torch 2.11."""
    out = {}
    for kernel in code.split("@triton_heuristics.")[1:]:
        name = re.search(r"\ndef (\w+)\(", kernel)
        if "MixOrderReductionGrid" in kernel and name:
            loads = set(re.findall(r"tl\.load\((\w+) \+", kernel))
            out[name[1]] = (len(loads), len(re.findall(r"\baccum\d+ = tl\.full", kernel)))
    return out
