"""bench/trace_spans.py reads torch's structured trace: spans summed per name (nested and repeated ones
included), when each first began, and the other records of the log skipped."""

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
import trace_spans  # noqa: E402


def record(meta: dict, payload: dict | None = None) -> str:
    """One line of a TORCH_TRACE log, then its payload as tab-indented JSON lines."""
    line = f"V1204 12:00:38.923000 3553 torch/_dynamo/utils.py:2350] {json.dumps(meta)}\n"
    if payload is not None:
        line += "".join(f"\t{part}\n" for part in json.dumps(payload, indent=0).splitlines())
    return line


def event(name: str, ph: str, t: float) -> str:
    return record({"chromium_event": {}, "frame_id": 0}, {"name": name, "ts": t * 1e6, "ph": ph, "pid": 0})


def test_spans_sum_each_name_over_its_calls(tmp_path):
    log = tmp_path / "dedicated_log_torch_trace_x.log"
    log.write_text(event("dynamo", "B", 100.0) + record({"artifact": {"name": "v"}}, {"torch": "2.11"})
                   + event("bw_compiler", "B", 101.0) + event("bw_compiler", "E", 104.0)
                   + event("bw_compiler", "B", 110.0) + event("bw_compiler", "E", 110.5)
                   + record({"str": "no payload"}) + event("dynamo", "E", 112.0))
    total, first = trace_spans.spans(log)
    assert total == {"dynamo": pytest.approx(12.0), "bw_compiler": pytest.approx(3.5)}
    assert first == {"dynamo": 0.0, "bw_compiler": pytest.approx(1.0)}


def test_a_log_that_is_not_a_trace_is_one_line_naming_it(tmp_path, monkeypatch):
    log = tmp_path / "x.log"
    log.write_text(record({"chromium_event": {}}) + "\t{not json\n")
    monkeypatch.setattr(sys, "argv", ["trace_spans.py", str(log)])
    with pytest.raises(SystemExit, match=f"trace_spans: {log}: not a readable TORCH_TRACE log"):
        trace_spans.main()
