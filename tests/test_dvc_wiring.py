"""dvc.yaml, params.yaml, presets/ and stages/ must agree. Catches drift without running DVC."""

import importlib
from pathlib import Path

import pytest
import yaml

from golf.compress.bundle import closure
from golf.params import load_section, read_params
from stages.cli import STAGES

ROOT = Path(__file__).resolve().parents[1]
PIPELINE = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
PRESETS = sorted((ROOT / "presets").glob("*.yaml"))


def command(name: str):
    return importlib.import_module(f"stages.{name}").command


def sections(name: str) -> dict:
    return getattr(command(name), "__sections__", {})


def test_every_stage_is_in_the_pipeline_once():
    assert list(PIPELINE) == STAGES


@pytest.mark.parametrize("name", STAGES)
def test_stage_cmd_and_params(name):
    stage = PIPELINE[name]
    assert stage["cmd"] == f"golf {name.replace('_', '-')}"
    assert set(stage["params"]) == set(sections(name)), "a stage lists exactly the sections it reads"
    assert sections(name), f"{name} reads no params section (not built yet?)"


def stage_files(name: str) -> set[Path]:
    """What the stage runs, plus the modules its code bundle carries (their bytes are its output)."""
    modules = closure(f"stages.{name}", roots=("golf", "stages"))
    if "golf.compress.bundle" in modules:
        modules |= closure()
    files = {p.resolve() for p in modules.values()}
    return files - {ROOT / "stages" / "__init__.py", ROOT / "golf" / "__init__.py"}


@pytest.mark.parametrize("name", STAGES)
def test_deps_are_exactly_the_source_the_stage_runs(name):
    files = stage_files(name)
    source_deps = [d for d in PIPELINE[name]["deps"] if d.split("/")[0] in ("golf", "stages")]
    for f in files:
        rel = f.relative_to(ROOT).as_posix()
        assert any(rel == d or rel.startswith(d + "/") for d in source_deps), f"{name}: {rel} is not in deps"
    for d in source_deps:
        assert any(f.relative_to(ROOT).as_posix().startswith(d) for f in files), f"{name}: dep {d} is never imported"


@pytest.mark.parametrize("name", STAGES)
def test_path_defaults_are_declared(name):
    """Every default file path of the command is a declared dep, out, metric or plot of its stage."""
    stage = PIPELINE[name]
    declared = list(stage.get("deps", [])) + list(stage.get("outs", []))
    declared += [next(iter(m)) for m in stage.get("metrics", []) + stage.get("plots", [])]
    import inspect
    for p in inspect.signature(command(name)).parameters.values():
        if isinstance(p.default, Path) and p.name != "params":
            path = p.default.as_posix()
            assert any(path == d or path.startswith(d + "/") for d in declared), f"{name}: --{p.name} {path} undeclared"


def test_params_yaml_is_the_cpu_small_preset():
    assert read_params(ROOT / "params.yaml") == read_params(ROOT / "presets" / "cpu-small.yaml")


@pytest.mark.parametrize("preset", PRESETS, ids=lambda p: p.stem)
def test_every_preset_loads_every_section(preset):
    for name in STAGES:
        for section, cls in sections(name).items():
            load_section(preset, section, cls)
    assert set(read_params(preset)) == {s for n in STAGES for s in sections(n)}, "no stray sections"
