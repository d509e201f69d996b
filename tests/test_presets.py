"""Presets are overlays: small, order-free, comment-keeping, validated before they land."""

from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from golf.errors import GolfError
from golf.presets import apply_overlay, preset_names, read_overlay, yaml_value
from stages.cli import app
from stages.preset import validate_all

ROOT = Path(__file__).resolve().parents[1]
NAMES = preset_names(ROOT / "presets")
PARAMS = (ROOT / "params.yaml").read_text()


def overlay(name: str) -> dict:
    return read_overlay(ROOT / "presets" / f"{name}.yaml")


def keys(ov: dict) -> set:
    return {(s, k) for s, kv in ov.items() for k in kv}


def test_params_yaml_is_the_cpu_small_preset():
    assert apply_overlay(PARAMS, overlay("cpu-small")) == PARAMS  # byte for byte


def test_every_preset_sets_the_same_keys_so_switching_is_order_free():
    assert {"cpu-small", "h100", "record"} <= set(NAMES)
    assert len({frozenset(keys(overlay(n))) for n in NAMES}) == 1
    for a in NAMES:
        for b in NAMES:
            via_a = apply_overlay(apply_overlay(PARAMS, overlay(a)), overlay(b))
            assert yaml.safe_load(via_a) == yaml.safe_load(apply_overlay(PARAMS, overlay(b)))


@pytest.mark.parametrize("name", NAMES)
def test_every_preset_validates_and_keeps_comments(tmp_path, name):
    text = apply_overlay(PARAMS, overlay(name))
    (tmp_path / "params.yaml").write_text(text)
    validate_all(tmp_path / "params.yaml")
    assert [ln for ln in text.splitlines() if ln.lstrip().startswith("#")] == \
        [ln for ln in PARAMS.splitlines() if ln.lstrip().startswith("#")]
    loaded = yaml.safe_load(text)
    assert all(loaded[s][k] == v for s, kv in overlay(name).items() for k, v in kv.items())


def test_overlays_are_small():
    assert all(len(keys(overlay(n))) < 0.5 * sum(len(v) for v in yaml.safe_load(PARAMS).values()) for n in NAMES)


@pytest.mark.parametrize("value", ["on", "auto", "", "a b", 3.0e-4, 1.0, 5, True, [9, 10], ["news-bbc"], [], 1e-10])
def test_values_are_written_back_as_themselves(value):
    assert yaml.safe_load(yaml_value(value)) == value


def test_a_key_that_no_longer_exists_is_named():
    with pytest.raises(GolfError, match=r"train\.no_such_key"):
        apply_overlay(PARAMS, {"train": {"no_such_key": 1}}, source="presets/x.yaml")


def test_golf_preset_command(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "params.yaml").write_text(PARAMS)
    (tmp_path / "presets").mkdir()
    for n in NAMES:
        (tmp_path / "presets" / f"{n}.yaml").write_text((ROOT / "presets" / f"{n}.yaml").read_text())
    (tmp_path / "presets" / "broken.yaml").write_text("train:\n  iterations: -5\n")
    r = CliRunner().invoke(app, ["preset", "h100"])
    assert r.exit_code == 0, r.output
    assert yaml.safe_load((tmp_path / "params.yaml").read_text())["model"]["model_dim"] == 512
    r = CliRunner().invoke(app, ["preset", "broken"])
    assert r.exit_code == 1 and "train.iterations" in r.output
    assert yaml.safe_load((tmp_path / "params.yaml").read_text())["model"]["model_dim"] == 512  # unchanged
    r = CliRunner().invoke(app, ["preset", "nope"])
    assert r.exit_code == 1 and "cpu-small" in r.output
    assert CliRunner().invoke(app, ["preset", "cpu-small"]).exit_code == 0
    assert yaml.safe_load((tmp_path / "params.yaml").read_text()) == yaml.safe_load(PARAMS)
