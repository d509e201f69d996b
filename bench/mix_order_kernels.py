"""The mix-order reduction kernels inductor generated, with the pointers each loads from and the
column sums each carries (read by golf/train/inductor_code.py). golf/train/inductor.py caps them: two,
with ten sums each, spilled registers and cost 86 ms of a looped training step on torch 2.11.

    TORCHINDUCTOR_CACHE_DIR=/tmp/ind python bench/profile_train.py --phase after --quick
    python bench/mix_order_kernels.py /tmp/ind          # the kernels of that compile, most sums first

Read the kernel names against profile_train's top-kernels table to see what each one costs.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from golf.train.inductor_code import mix_order_kernels  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("cache_dir", type=Path, help="the TORCHINDUCTOR_CACHE_DIR of a compile")
    ap.add_argument("--top", type=int, default=20)
    a = ap.parse_args()
    files = sorted(a.cache_dir.rglob("*.py"))
    if not files:
        raise SystemExit(f"{a.cache_dir}: no generated .py files (is it a TORCHINDUCTOR_CACHE_DIR?)")
    kernels = mix_order_kernels("\n".join(f.read_text(errors="replace") for f in files))
    print(f"{len(kernels)} mix-order kernels in {len(files)} files\n")
    print("| kernel | pointers loaded | column sums |\n|---|---:|---:|")
    for name, (loads, sums) in sorted(kernels.items(), key=lambda kv: (-kv[1][1], -kv[1][0]))[:a.top]:
        print(f"| `{name[:90]}` | {loads} | {sums} |")


if __name__ == "__main__":
    main()
