"""bench/setup_parts.py: the parts of training's setup, with the compile_ahead helper placed as asked."""

import os
import sys
import tempfile
from pathlib import Path

import pytest
from test_train import write_params, write_tokens

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
import setup_parts  # noqa: E402


@pytest.mark.parametrize("place", ["none", "after", "before"])
def test_setup_parts_times_each_part_and_leaves_no_helper(place, tmp_path, monkeypatch):
    write_tokens(tmp_path / "tokens")
    write_params(tmp_path / "params.yaml", compile_ahead=True, compile_ahead_kernels=True)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # where ahead.start writes the helper's tokens
    monkeypatch.delenv("FLASH_ATTENTION_CUTE_DSL_CACHE_ENABLED", raising=False)  # restored after the test
    parts = setup_parts.one(tmp_path / "params.yaml", tmp_path / "tokens", place, "cpu")
    expected = ["imports", "init", "backend", "quack", "stepper"]
    if place != "none":
        expected.insert(1 if place == "before" else 2, "spawn")
    assert list(parts) == expected and all(s >= 0 for s in parts.values())
    assert not list(tmp_path.glob("golf-ahead-*"))  # stopped, its file removed
    # ahead.start turned FA4's disk cache on for the helper's kernels (set_backend came after it)
    assert os.environ.get("FLASH_ATTENTION_CUTE_DSL_CACHE_ENABLED") == (None if place == "none" else "1")
