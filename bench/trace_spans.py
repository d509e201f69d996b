"""Where a compile's seconds went, from torch's structured trace: the dynamo_timed spans (dynamo, AOTAutograd,
inductor's forward and backward compiles, autotuning, CUDA graph records, cache loads) of each process,
summed per name, with when each first began.

    python bench/bench_train.py --tokens .device-data/tokens --steps 8 --variant "tt=TORCH_TRACE=/tmp/tt"
    python bench/trace_spans.py /tmp/tt/*.log          # one table per process (training, its helpers)

The spans cover compiles only: a gap between the end of the looped graph's compile and its first CUDA graph
record is its first run (the CuTe DSL kernels' JIT among it; BENCHMARKS.md, twenty-sixth session).
"""

from __future__ import annotations

import argparse
import collections
import json
from pathlib import Path


def events(log: Path):
    """The chromium events of a TORCH_TRACE log: each is the payload (tab-indented lines) of a line whose
    metadata holds "chromium_event"."""
    payload = None
    for line in log.open(errors="replace"):
        if line.startswith("\t"):
            if payload is not None:
                payload.append(line[1:])
            continue
        if payload:
            yield json.loads("".join(payload))
        payload = [] if '"chromium_event"' in line else None
    if payload:
        yield json.loads("".join(payload))


def spans(log: Path) -> tuple[collections.Counter, dict[str, float]]:
    """(seconds per span name, summed over its calls; seconds from the log's first event to its first start)."""
    open_at, total, first, t0 = collections.defaultdict(list), collections.Counter(), {}, None
    for ev in events(log):
        if ev.get("ph") not in ("B", "E") or "name" not in ev:
            continue
        ts, name = float(ev["ts"]) / 1e6, ev["name"]
        t0 = ts if t0 is None else min(t0, ts)
        if ev["ph"] == "B":
            open_at[name].append(ts)
            first.setdefault(name, ts)
        elif open_at[name]:
            total[name] += ts - open_at[name].pop()
    return total, {k: v - (t0 or 0.0) for k, v in first.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("logs", type=Path, nargs="+", help="TORCH_TRACE's dedicated_log_torch_trace_*.log files")
    ap.add_argument("--top", type=int, default=30, help="spans per process")
    a = ap.parse_args()
    for log in a.logs:
        try:
            total, first = spans(log)
        except (OSError, ValueError) as e:  # a missing file, or a payload that is not JSON
            raise SystemExit(f"trace_spans: {log}: not a readable TORCH_TRACE log ({e})") from None
        print(f"\n{log.name}\n| span | s | first at s |\n|---|---:|---:|")
        for name, s in total.most_common(a.top):
            print(f"| {name} | {s:.2f} | {first[name]:.1f} |")


if __name__ == "__main__":
    main()
