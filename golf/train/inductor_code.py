"""Reading inductor's generated code: its mix-order reduction kernels (golf/train/inductor.py caps them),
and what each kernel moves to and from HBM (bench/profile_train.py --bandwidth).

Not imported by training: bench/mix_order_kernels.py prints what this finds in a compile's
TORCHINDUCTOR_CACHE_DIR, and tests/test_inductor_cap.py checks the cap with it.
"""

from __future__ import annotations

import math
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


DTYPE_BYTES = {"bf16": 2, "fp16": 2, "fp32": 4, "fp64": 8, "i64": 8, "i32": 4, "i16": 2, "i8": 1, "u8": 1, "i1": 1}
_VAR_RANGE = [  # an index variable's definition -> its number of distinct values, from its base's numel n
    (re.compile(r"^(\w+index)$"), lambda n, *c: n),
    (re.compile(r"^\(?(\w+index) // (\d+)\)?$"), lambda n, a: n // a),
    (re.compile(r"^\((\w+index) % (\d+)\)$"), lambda n, b: min(n, b)),
    (re.compile(r"^\(\((\w+index) // (\d+)\) % (\d+)\)$"), lambda n, a, b: min(n // a, b)),
]


def _var_ranges(kernel: str, numel: dict[str, int]) -> dict[str, tuple[str, int]]:
    """{index variable: (its base, its distinct values)} from lines such as `x1 = xindex // 512`."""
    out = {}
    for var, rhs in re.findall(r"^\s+([xyr]\w*) = (\(*[xyr]\w*index\b.*)$", kernel, re.M):
        for pattern, size in _VAR_RANGE:
            m = pattern.match(rhs.strip())
            base = m[1][:-len("index")] if m else ""
            if m and base in numel:
                out[var] = (base, size(numel[base], *map(int, m.groups()[1:])))
                break
    return out


def kernel_bytes(code: str) -> dict[str, int]:
    """{kernel name: an estimate of the HBM bytes one launch moves} for each Triton kernel with static
    sizes in inductor's generated code. Every distinct (pointer, index) load and store counts the values
    its index variables take (`x1 = xindex // 512` takes xnumel / 512; at most the dim's numel per dim)
    times the pointer's dtype size. An upper bound of sorts: a load that hits L2 counts in full, and two
    indices into one buffer count twice."""
    out = {}
    for kernel in code.split("@triton_heuristics.")[1:]:
        name = re.search(r"\ndef (\w+)\(", kernel)
        numel = {k[:-len("numel")]: int(v) for k, v in re.findall(r"\b(xnumel|ynumel|r0_numel) = (\d+)\b", kernel)}
        if not name or "x" not in numel:
            continue
        dtypes = dict(re.findall(r"'(\w+)': '\*(\w+)'", kernel))
        ranges = _var_ranges(kernel, numel)
        total = 0
        for ptr, index in set(re.findall(r"tl\.(?:load|store)\((\w+) \+ \(([^,]*)\),", kernel)):
            per_dim: dict[str, int] = {}
            for var in set(re.findall(r"\b[xyr]\w*\b", index)) & ranges.keys():
                base, size = ranges[var]
                per_dim[base] = min(per_dim.get(base, 1) * size, numel[base])
            total += math.prod(per_dim.values()) * DTYPE_BYTES.get(dtypes.get(ptr, ""), 2)
        out[name[1]] = total
    return out
