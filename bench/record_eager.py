"""Run a record script with torch.compile as the identity (eager), for loss-parity runs
(bench/record_parity.py): the 1.0611 script spends ~10 minutes compiling before its first step, and
compiling changes how the math is scheduled, not what it computes.

    torchrun --standalone --nproc_per_node=1 bench/record_eager.py REC/train_gpt.py
"""

from __future__ import annotations

import runpy
import sys

import torch


def identity_compile(fn=None, *args, **kwargs):
    """torch.compile's signature: compile(fn) -> fn; compile(**options) -> a decorator that returns fn."""
    return fn if fn is not None else (lambda f: f)


if __name__ == "__main__":
    torch.compile = identity_compile
    script = sys.argv[1]
    sys.argv = sys.argv[1:]
    runpy.run_path(script, run_name="__main__")
