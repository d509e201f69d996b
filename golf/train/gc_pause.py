"""train.compile_without_gc: Python's cyclic garbage collector off while the warm-up compiles.

A cold compile is mostly one Python thread (BENCHMARKS.md, twenty-sixth session) that allocates millions of
objects, so the collector's full passes, each over every object torch and golf hold, run again and again. On one
H200 the compile_ahead helper's looped graph was ready about 6 s sooner with the collector paused (BENCHMARKS.md,
thirtieth session). The compile's garbage waits for one collection at the end; the objects that survive it
(torch, golf, the compiled graphs) are frozen, so training's later full passes skip them.
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator


@contextlib.contextmanager
def paused(on: bool) -> Iterator[None]:
    """The collector off inside the block when `on` (and it was on); then one collection and a freeze."""
    if not on or not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()
        gc.collect()
        gc.freeze()
