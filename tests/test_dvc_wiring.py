"""dvc.yaml, params.yaml, presets/ and stages/ must agree. Catches drift without running DVC."""

import importlib
import os
from pathlib import Path

import pytest
import yaml

from golf.params import load_section, read_params
from golf.wiring import is_source, rewrite, stage_sources
from stages.cli import STAGES

ROOT = Path(__file__).resolve().parents[1]
PIPELINE = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]


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


@pytest.mark.parametrize("name", STAGES)
def test_deps_are_exactly_the_source_the_stage_runs(name):
    """Equality, not coverage: a file the stage never imports is no dep (`python -m golf.wiring` rewrites them)."""
    listed = sorted(d for d in PIPELINE[name]["deps"] if is_source(d))
    assert listed == stage_sources(name, ROOT), f"{name}: run `python -m golf.wiring` to rewrite dvc.yaml's deps"


def test_corpus_only_code_is_no_dep_of_later_stages():
    assert "golf/corpus/extras.py" in stage_sources("corpus", ROOT)
    assert all("golf/corpus/extras.py" not in stage_sources(s, ROOT) for s in STAGES if s != "corpus")
    assert [s for s in STAGES if "golf/eval/lora_ttt.py" in stage_sources(s, ROOT)] == ["ttt_eval"]


def test_rewrite_is_idempotent(tmp_path):
    copy = tmp_path / "dvc.yaml"
    copy.write_text((ROOT / "dvc.yaml").read_text())
    assert rewrite(copy, STAGES, ROOT) == []
    assert copy.read_text() == (ROOT / "dvc.yaml").read_text()


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


def test_params_yaml_holds_every_section_the_stages_read_and_no_other():
    for name in STAGES:
        for section, cls in sections(name).items():
            load_section(ROOT / "params.yaml", section, cls)
    assert set(read_params(ROOT / "params.yaml")) == {s for n in STAGES for s in sections(n)}, "no stray sections"


def test_no_declared_metric_holds_a_timing():
    """Timings live in metrics/timings/ (not tracked by DVC), so a rerun with equal outputs is clean."""
    import json

    from golf.io.metrics import is_timing

    for stage in PIPELINE.values():
        for entry in stage.get("metrics", []):
            values = json.loads((ROOT / next(iter(entry))).read_text())
            (inner,) = values.values()
            assert not [k for k in inner if is_timing(k)], next(iter(entry))


def dvc_status(repo: Path) -> dict:
    import json
    import subprocess

    out = subprocess.run(["dvc", "status", "--json"], cwd=repo, capture_output=True, text=True, check=True,
                         env={**os.environ, "DVC_NO_ANALYTICS": "1"})
    return json.loads(out.stdout or "{}")


def stages_changed_by(status: dict, path: str) -> set[str]:
    return {stage for stage, entries in status.items() for e in entries
            if isinstance(e, dict) and path in e.get("changed deps", {})}


def test_dvc_status_marks_only_the_stages_that_run_an_edited_file(tmp_path):
    """Real DVC on a copy of the pipeline, its lock made current over placeholder outputs: a comment
    appended to one module marks exactly the stages that run it."""
    import shutil
    import subprocess

    for name in ("golf", "stages", ".dvc"):
        shutil.copytree(ROOT / name, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__", "tmp", "cache"))
    for name in ("dvc.yaml", "params.yaml", "corpus-requirements.txt"):
        shutil.copy(ROOT / name, tmp_path / name)
    for stage in PIPELINE.values():
        for out in stage["outs"]:  # a file (model.safetensors) or a folder (data/tokens)
            target = tmp_path / out if Path(out).suffix else tmp_path / out / "placeholder"
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(out)  # contents of its own: outputs never share a cache object
        for entry in stage.get("metrics", []) + stage.get("plots", []):
            (tmp_path / next(iter(entry))).parent.mkdir(parents=True, exist_ok=True)
            (tmp_path / next(iter(entry))).write_text("{}")
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    subprocess.run(["dvc", "commit", "-f", "-q"], cwd=tmp_path, check=True, env={**os.environ, "DVC_NO_ANALYTICS": "1"})
    assert dvc_status(tmp_path) == {}
    for edited in ("golf/eval/lora_ttt.py", "golf/corpus/extras.py", "golf/quant/gptq.py"):
        original = (tmp_path / edited).read_text()
        (tmp_path / edited).write_text(original + "# an edit\n")
        status = dvc_status(tmp_path)
        runs = {s for s in STAGES if edited in stage_sources(s, ROOT)}
        assert set(status) == runs and runs, edited
        assert stages_changed_by(status, edited) == runs
        (tmp_path / edited).write_text(original)
    # a train rerun that wrote the same weights: only its clock differs, and only ttt_eval reads it
    clock = tmp_path / "artifacts/train/model.clock.json"
    clock.unlink()  # a new file, as a stage writes it (the old one may be linked to DVC's cache)
    clock.write_text("another run's seconds")
    assert {s for s, entries in dvc_status(tmp_path).items() for e in entries
            if isinstance(e, dict) and "changed deps" in e} == {"ttt_eval"}
