"""A cap on how much inductor packs into one mix-order reduction kernel.

Inductor (torch >= 2.10) fuses a norm backward's row reduction (over d) with column reductions (over
tokens) of the same inputs, the per-channel parameters' gradients, into one "mix-order" kernel. In
golf's looped graph on torch 2.11 two such kernels gathered ten column sums from 20 loads, spilled
registers and took 5-6 ms a launch, 86 ms of a 1,096 ms step, where the others take about 0.25 ms
(BENCHMARKS.md, "mix-order"). pytorch issue 179423, found on a Parameter Golf model, capped the
buffers one such kernel reads (`triton.mix_order_reduction_max_reads`, 10) in later torches, but only
where a mix-order kernel absorbs a further node; golf's two were made whole, from a column-reduction
node that had already fused its ten sums with each other. `cap_mix_order_reads` applies the same
cap at both decisions: making a mix-order reduction, and growing one.

The FX graph cache does not see the patch: a graph compiled before it was applied, in a warm cache,
keeps its kernels (golf's benchmarks compile cold).
"""

from __future__ import annotations

MAX_READS = 10  # torch's own default where it has the setting


def cap_mix_order_reads(max_reads: int | None = None) -> str:
    """Keep every mix-order reduction kernel this process compiles from now on to at most
    `max_reads` (default MAX_READS; 0 = no cap) distinct buffers read. Returns "capped", "off"
    (max_reads 0) or "none" (this torch makes no mix-order reductions). Once per process: a second
    call keeps the first cap."""
    from torch._inductor import scheduler

    max_reads = MAX_READS if max_reads is None else max_reads
    make = getattr(scheduler, "MixOrderReduction", None)
    grow = getattr(scheduler, "FusedMixOrderReductions", None)
    if make is None or grow is None:
        return "none"
    if max_reads <= 0:
        return "off"
    # the classmethod called as MixOrderReduction.can_fuse(a, b) and cls.can_fuse(a, b)
    cap_rule(make, "can_fuse", max_reads, static=True)
    cap_rule(grow, "can_fuse_with", max_reads, static=False)  # FusedMixOrderReductions.can_fuse_with(self, other)
    return "capped"


def cap_rule(cls: type, name: str, max_reads: int, static: bool) -> None:
    """Make the fusion rule `cls.name(a, b)` also refuse when a and b together read more than
    `max_reads` distinct buffers (asked after the rule itself, which rejects most pairs cheaply).
    static: the rule is called on the class (a classmethod or staticmethod), else on an instance.
    The original stays at `cls.name.golf_original`."""
    rule = getattr(cls, name)
    if hasattr(rule, "golf_original"):
        return

    def capped(a, b) -> bool:
        return rule(a, b) and reads(a, b) <= max_reads

    capped.golf_original = rule
    capped.golf_max_reads = max_reads
    setattr(cls, name, staticmethod(capped) if static else capped)


def reads(*nodes) -> int:
    """Distinct buffers the scheduler nodes (and the nodes fused inside them) read from memory."""
    from torch._inductor.dependencies import MemoryDep

    return len({dep.name for node in nodes for sub in node.get_nodes() for dep in sub.read_writes.reads
                if isinstance(dep, MemoryDep)})
