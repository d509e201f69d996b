"""The stages as a user runs them, on a tiny pipeline (issue 19): every error is one line and exit 1
(the bundled train_gpt.py too), inputs are checked before the work, compress writes its outputs as
one unit, and stage outputs get normal file permissions."""

from __future__ import annotations

import json
import os
import re
import stat
import struct
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from test_quantize import CALIB, EVAL, QUANT, write_tokens  # noqa: E402  (tests/ is on sys.path under pytest)
from test_ttt import BLOCK_GOLF  # noqa: E402
from typer.testing import CliRunner

ROOT = Path(__file__).resolve().parents[1]


def params(tmp: Path, **sections) -> Path:
    """The repo's params.yaml with tiny quantize / eval / calibration / compress sections."""
    p = yaml.safe_load((ROOT / "params.yaml").read_text())
    p.update(hessian_calibrate=CALIB, quantize=QUANT, eval=EVAL)
    p["compress"].update(codec="zstd", zstd_level=3)
    p["prune_to_budget"].update(device="cpu")
    for name, values in sections.items():
        p[name] = {**p[name], **values}
    path = tmp / "params.yaml"
    path.write_text(yaml.safe_dump(p))
    return path


def golf(*args: str) -> tuple[int, str]:
    from stages.cli import app

    r = CliRunner().invoke(app, [str(a) for a in args])
    return r.exit_code, r.output


def one_line_error(code: int, out: str, stage: str, *words: str) -> None:
    lines = out.strip().splitlines()
    assert code == 1 and len(lines) == 1 and lines[0].startswith(f"golf {stage}: error: "), out[-2000:]
    for w in words:
        assert w in lines[0], (w, lines[0])


@pytest.fixture(scope="module")
def pipe(tmp_path_factory):
    """tokens, a checkpoint, its Hessians, a qmodel, a pruned qmodel and the compressed artifact."""
    from conftest import tiny_model_values

    from golf.artifact.model.config import ModelConfig
    from golf.artifact.model.gpt import GPT
    from golf.io.checkpoint import save_model

    d = tmp_path_factory.mktemp("pipe")
    cfg = ModelConfig(**tiny_model_values())
    torch.manual_seed(0)
    model = GPT(cfg)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    write_tokens(d / "tokens", cfg.vocab_size)
    save_model(d / "model.safetensors", model, {"train": {}, "val_bpb": 9.0, "val_loss": 0.0, "eval": EVAL})
    prm = params(d)
    common = ["--params", prm, "--tokens", d / "tokens"]
    ckpt, hess = d / "model.safetensors", d / "hessians.safetensors"
    code, out = golf("hessian-calibrate", *common, "--checkpoint", ckpt, "--out", hess,
                     "--metrics", d / "m/hessian_calibrate.json")
    assert code == 0, out
    code, out = golf("quantize", *common, "--checkpoint", ckpt, "--hessians", hess, "--out", d / "q/qmodel.safetensors",
                     "--report", d / "q/report.json", "--metrics", d / "m/quantize.json")
    assert code == 0, out
    code, out = golf("prune-to-budget", *common, "--qmodel", d / "q/qmodel.safetensors", "--hessians", hess,
                     "--out", d / "p/qmodel.safetensors", "--metrics", d / "m/prune.json")
    assert code == 0, out
    code, out = golf("compress", "--params", prm, "--qmodel", d / "p/qmodel.safetensors", "--out-dir", d / "c",
                     "--metrics", d / "m/compress.json")
    assert code == 0, out
    return d


# -- finding 3: one-line errors ----------------------------------------------------------------

def test_ttt_eval_on_a_zero_section_file_is_one_line(pipe, tmp_path):
    from golf.compress.container import pack

    (tmp_path / "model.golf").write_bytes(pack([]))
    code, out = golf("ttt-eval", "--params", params(tmp_path), "--artifact", tmp_path / "model.golf", "--tokens",
                     pipe / "tokens", "--out", tmp_path / "o", "--metrics", tmp_path / "m.json", "--plots",
                     tmp_path / "p.csv", "--device", "cpu")
    one_line_error(code, out, "ttt-eval", "model.golf", "need 'meta' first")


@pytest.mark.parametrize("damage", ["truncated", "zero sections", "old version", "missing"])
def test_the_bundled_script_fails_in_one_line(pipe, tmp_path, damage):
    """train_gpt.py alone (golf imports blocked): a damaged artifact is one line on stderr, exit 1."""
    from golf.compress import container

    blob = (pipe / "c/model.golf").read_bytes()
    art = tmp_path / "model.golf"
    if damage == "truncated":
        art.write_bytes(blob[:-100])
    elif damage == "zero sections":
        art.write_bytes(container.pack([]))
    elif damage == "old version":
        old = bytearray(blob)
        struct.pack_into("<H", old, 4, 2)
        art.write_bytes(bytes(old))
    script = tmp_path / "train_gpt.py"
    script.write_bytes((pipe / "c/train_gpt.py").read_bytes())
    r = subprocess.run([sys.executable, "-c", BLOCK_GOLF, str(script), "--artifact", str(art), "--tokens",
                        str(pipe / "tokens"), "--device", "cpu"], capture_output=True, text=True, cwd=tmp_path,
                       timeout=300)
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 1 and len(lines) == 1 and lines[0].startswith("train_gpt.py: error: "), r.stderr[-2000:]
    assert str(art) in lines[0]  # the file is named


@pytest.mark.parametrize("text, why", [("{not json", "is not JSON"), ("[1, 2]", "JSON list, not an object")])
def test_a_checkpoint_header_that_is_not_a_json_object_is_one_line(pipe, tmp_path, text, why):
    from safetensors.torch import load_file, save_file

    bad = tmp_path / "model.safetensors"
    save_file(load_file(str(pipe / "model.safetensors")), str(bad), metadata={"golf": text})
    for stage in ("hessian-calibrate", "quantize"):
        code, out = golf(stage, "--params", params(tmp_path), "--checkpoint", bad, "--tokens", pipe / "tokens",
                         "--out", tmp_path / "o.safetensors", "--metrics", tmp_path / "m.json")
        one_line_error(code, out, stage, "model.safetensors", why)


# -- finding 5: inputs before work ---------------------------------------------------------------

@pytest.fixture
def truncated_tokens(pipe, tmp_path) -> Path:
    """A copy of the tokens whose val shard lost its last 10 bytes."""
    import shutil

    d = tmp_path / "tokens"
    shutil.copytree(pipe / "tokens", d)
    shard = next(d.glob("val_0*.bin"))
    shard.write_bytes(shard.read_bytes()[:-10])
    return d


def _forbid(monkeypatch, module: str, name: str) -> list:
    """Make module.name raise if called (the work that must not start); returns the call log."""
    import importlib

    calls: list = []

    def boom(*a, **k):
        calls.append(name)
        raise AssertionError(f"{module}.{name} ran before the inputs were checked")

    monkeypatch.setattr(importlib.import_module(module), name, boom)
    return calls


def test_quantize_checks_the_val_shards_before_gptq_and_writes_nothing(pipe, tmp_path, truncated_tokens, monkeypatch):
    calls = _forbid(monkeypatch, "golf.quant.qmodel", "quantize_state_dict")
    out, report = tmp_path / "q/qmodel.safetensors", tmp_path / "q/report.json"
    code, text = golf("quantize", "--params", params(tmp_path), "--tokens", truncated_tokens, "--checkpoint",
                      pipe / "model.safetensors", "--hessians", pipe / "hessians.safetensors", "--out", out,
                      "--report", report, "--metrics", tmp_path / "m.json")
    one_line_error(code, text, "quantize", "val_000000.bin", "truncated")
    assert calls == [] and not out.exists() and not report.exists() and not (tmp_path / "m.json").exists()


def _prune(pipe, tmp_path, *extra, tokens=None, hessians=None, **sections) -> tuple[int, str]:
    return golf("prune-to-budget", "--params", params(tmp_path, **sections), "--tokens", tokens or pipe / "tokens",
                "--qmodel", pipe / "q/qmodel.safetensors", "--hessians", hessians or pipe / "hessians.safetensors",
                "--out", tmp_path / "p/qmodel.safetensors", "--metrics", tmp_path / "m.json", *extra)


def test_an_impossible_budget_fails_before_the_first_probe(pipe, tmp_path, monkeypatch):
    calls = _forbid(monkeypatch, "golf.compress.container", "encode")
    code, out = _prune(pipe, tmp_path, "--budget-bytes", "100")
    one_line_error(code, out, "prune-to-budget", "the code alone is", "budget 100")
    assert calls == [] and not re.search(r"-\d", out)  # no negative target
    assert not (tmp_path / "p/qmodel.safetensors").exists()


def test_prune_refuses_hessians_of_another_checkpoint(pipe, tmp_path, monkeypatch):
    from golf.io.tensors import load_tensors, save_tensors
    from golf.quant.hessian import FORMAT, VERSION

    H, header = load_tensors(pipe / "hessians.safetensors", FORMAT, VERSION)
    other = tmp_path / "other.safetensors"
    save_tensors(other, H, {**header, "model_sha256": "ab" * 32})
    calls = _forbid(monkeypatch, "golf.compress.container", "encode")
    code, out = _prune(pipe, tmp_path, "--hessian-weighted", hessians=other)
    one_line_error(code, out, "prune-to-budget", "other.safetensors", "another checkpoint")
    assert calls == []
    monkeypatch.undo()
    (tmp_path / "ok").mkdir()
    code, out = _prune(pipe, tmp_path / "ok", "--hessian-weighted")  # the right Hessians pass
    assert code == 0, out


def test_prune_checks_the_val_shards_before_the_first_probe(pipe, tmp_path, truncated_tokens, monkeypatch):
    calls = _forbid(monkeypatch, "golf.compress.container", "encode")
    code, out = _prune(pipe, tmp_path, tokens=truncated_tokens)
    one_line_error(code, out, "prune-to-budget", "val_000000.bin", "truncated")
    assert calls == [] and not (tmp_path / "p/qmodel.safetensors").exists()


# -- finding 6: one unit, normal permissions --------------------------------------------------------

def test_compress_never_pairs_a_new_artifact_with_an_old_script(pipe, tmp_path, monkeypatch):
    """A failure while the outputs are written (here: writing train_gpt.py) leaves every old output
    as it was: model.golf, train_gpt.py and the metrics."""
    import shutil

    out, metrics = tmp_path / "c", tmp_path / "m/compress.json"
    shutil.copytree(pipe / "c", out)
    metrics.parent.mkdir()
    metrics.write_text('{"compress": {"old": 1}}\n')
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    real = Path.write_bytes

    def killed_at_the_script(self, data):
        if "train_gpt.py" in self.name:
            raise KeyboardInterrupt("killed while writing train_gpt.py")
        return real(self, data)

    monkeypatch.setattr(Path, "write_bytes", killed_at_the_script)
    code, _ = golf("compress", "--params", params(tmp_path, compress={"codec": "lzma"}), "--qmodel",
                   pipe / "p/qmodel.safetensors", "--out-dir", out, "--metrics", metrics)
    monkeypatch.setattr(Path, "write_bytes", real)
    assert code != 0
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert json.loads(metrics.read_text()) == {"compress": {"old": 1}}
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []  # no temp left behind


def test_compress_refuses_a_folder_holding_other_files(pipe, tmp_path):
    (tmp_path / "keep.txt").write_text("mine")
    code, out = golf("compress", "--params", params(tmp_path), "--qmodel", pipe / "p/qmodel.safetensors",
                     "--out-dir", tmp_path, "--metrics", tmp_path / "m.json")
    one_line_error(code, out, "compress", "holds", "folder of its own")
    assert (tmp_path / "keep.txt").read_text() == "mine"


def test_stage_outputs_get_normal_permissions(pipe):
    """0666 less the umask (what `open(path, "w")` gives), not mkstemp's 0600; folders 0777 less it."""
    from golf.io.atomic import UMASK

    files = [pipe / "q/qmodel.safetensors", pipe / "q/report.json", pipe / "p/qmodel.safetensors",
             pipe / "c/model.golf", pipe / "c/train_gpt.py", pipe / "m/quantize.json", pipe / "m/compress.json"]
    for f in files:
        assert stat.S_IMODE(os.stat(f).st_mode) == 0o666 & ~UMASK, f
    assert stat.S_IMODE(os.stat(pipe / "c").st_mode) == 0o777 & ~UMASK
