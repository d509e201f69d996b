"""The params mechanism: YAML section -> frozen dataclass -> named stage flags, one source of truth."""

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

import pytest
import typer
import yaml
from typer.testing import CliRunner

from golf.artifact.typed import build_section
from golf.errors import GolfError
from golf.params import field_docs, load_section
from stages.common import stage_command


@dataclass(frozen=True, kw_only=True)
class Demo:
    clip_sigmas: float
    """Clip at this many standard deviations of the row."""
    bits: int
    """Bits per weight."""
    lqer_enabled: bool
    """Add the low-rank error correction."""
    layers: tuple[int, ...]
    """Layers it applies to."""
    method: Literal["gptq", "rtn"]
    """How codes are rounded."""

    def __post_init__(self) -> None:
        if not 2 <= self.bits <= 8:
            raise ValueError(f"demo.bits = {self.bits}: must be in 2..8")


GOOD = {"clip_sigmas": 12.85, "bits": 6, "lqer_enabled": True, "layers": [3, 4], "method": "gptq"}


def write(tmp_path: Path, section: dict) -> Path:
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump({"demo": section}))
    return path


def test_round_trip(tmp_path):
    cfg = load_section(write(tmp_path, GOOD), "demo", Demo)
    assert cfg == Demo(clip_sigmas=12.85, bits=6, lqer_enabled=True, layers=(3, 4), method="gptq")


def test_int_widens_to_float_and_string_float_parses(tmp_path):
    assert load_section(write(tmp_path, {**GOOD, "clip_sigmas": 12}), "demo", Demo).clip_sigmas == 12.0
    assert build_section({**GOOD, "clip_sigmas": "3e-4"}, "demo", Demo).clip_sigmas == 3e-4


@pytest.mark.parametrize("change, words", [
    ({"clip_sigma": 3.0}, ["demo.clip_sigma", "unknown"]),
    ({"bits": "six"}, ["demo.bits", "integer", "six"]),
    ({"bits": 6.5}, ["demo.bits", "integer"]),
    ({"bits": True}, ["demo.bits", "integer"]),
    ({"lqer_enabled": "yes"}, ["demo.lqer_enabled", "true or false"]),
    ({"layers": 3}, ["demo.layers", "list"]),
    ({"layers": [3, "x"]}, ["demo.layers[1]", "integer"]),
    ({"method": "awq"}, ["demo.method", "awq", "'gptq'"]),
    ({"bits": 12}, ["demo.bits = 12", "2..8"]),
])
def test_bad_values_name_key_value_and_file(tmp_path, change, words):
    path = write(tmp_path, {**GOOD, **change})
    with pytest.raises(GolfError) as e:
        load_section(path, "demo", Demo)
    assert str(path) in str(e.value)
    for w in words:
        assert w in str(e.value)


def test_missing_key_section_and_file(tmp_path):
    with pytest.raises(GolfError, match="missing key.*demo.bits"):
        load_section(write(tmp_path, {k: v for k, v in GOOD.items() if k != "bits"}), "demo", Demo)
    with pytest.raises(GolfError, match="section 'other'"):
        load_section(write(tmp_path, GOOD), "other", Demo)
    with pytest.raises(GolfError, match="not found"):
        load_section(tmp_path / "nope.yaml", "demo", Demo)


def test_field_docs_are_the_help_text():
    docs = field_docs(Demo)
    assert docs["clip_sigmas"] == "Clip at this many standard deviations of the row."
    assert set(docs) == {"clip_sigmas", "bits", "lqer_enabled", "layers", "method"}


def _app(seen: list):
    @stage_command(cfg="demo")
    def demo(cfg: Demo, out: Annotated[Path, typer.Option(help="Where to write.")] = Path("out.bin")) -> None:
        """Demo stage."""
        seen.append((cfg, out))

    app = typer.Typer()
    app.callback()(lambda: None)
    app.command("demo")(demo)
    return app


def test_flags_override_one_key_and_default_to_the_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write(tmp_path, GOOD)
    seen: list = []
    app = _app(seen)
    r = CliRunner().invoke(app, ["demo", "--clip-sigmas", "13.5", "--no-lqer-enabled", "--layers", "1,2,5"])
    assert r.exit_code == 0, r.output
    cfg, out = seen[-1]
    assert cfg == Demo(clip_sigmas=13.5, bits=6, lqer_enabled=False, layers=(1, 2, 5), method="gptq")
    assert out == Path("out.bin")
    r = CliRunner().invoke(app, ["demo"])
    assert seen[-1][0] == load_section(tmp_path / "params.yaml", "demo", Demo)


def test_help_shows_the_current_values(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write(tmp_path, GOOD)
    r = CliRunner().invoke(_app([]), ["demo", "--help"], env={"COLUMNS": "200"})
    assert r.exit_code == 0
    assert "--clip-sigmas" in r.output and "12.85" in r.output and "--no-lqer-enabled" in r.output


def test_bad_flag_value_is_one_line_error(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write(tmp_path, GOOD)
    r = CliRunner().invoke(_app([]), ["demo", "--method", "awq"])
    assert r.exit_code == 1
    assert "demo.method" in r.output and "command line" in r.output


def test_a_flag_that_breaks_a_check_blames_the_command_line(tmp_path, monkeypatch):
    """The dataclass's own check names the key; the message must say where the value came from."""
    monkeypatch.chdir(tmp_path)
    write(tmp_path, GOOD)
    r = CliRunner().invoke(_app([]), ["demo", "--bits", "12"])
    assert r.exit_code == 1 and "command line: demo.bits = 12: must be in 2..8" in r.output
    write(tmp_path, {**GOOD, "bits": 12})  # the file's value is the bad one, whatever flag is given
    r = CliRunner().invoke(_app([]), ["demo", "--clip-sigmas", "3"])
    assert r.exit_code == 1 and "params.yaml: demo.bits = 12" in r.output and "command line" not in r.output
    seen: list = []
    r = CliRunner().invoke(_app(seen), ["demo", "--bits", "4"])  # a flag may fix the file's bad value
    assert r.exit_code == 0 and seen[-1][0].bits == 4


def test_help_lists_the_choices_of_a_choice_key(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write(tmp_path, GOOD)
    r = CliRunner().invoke(_app([]), ["demo", "--help"], env={"COLUMNS": "200"})
    assert r.exit_code == 0 and "(one of: gptq, rtn)" in r.output


def test_help_says_when_params_yaml_is_not_valid_yaml(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "params.yaml").write_text("demo:\n  method: [gptq\n  bits: 3\n")
    r = CliRunner().invoke(_app([]), ["demo", "--help"], env={"COLUMNS": "250"})
    assert r.exit_code == 0
    lines = [line for line in r.output.splitlines() if "not valid YAML" in line]
    assert len(lines) == 1 and "params.yaml: not valid YAML at line 3, column 7" in lines[0], r.output
    r = CliRunner().invoke(_app([]), ["demo"])
    assert r.exit_code == 1 and "not valid YAML at line 3" in r.output and len(r.output.strip().splitlines()) == 1


def test_params_option_selects_another_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write(tmp_path, GOOD)
    other = tmp_path / "other.yaml"
    other.write_text(yaml.safe_dump({"demo": {**GOOD, "bits": 5}}))
    seen: list = []
    r = CliRunner().invoke(_app(seen), ["demo", "--params", str(other)])
    assert r.exit_code == 0, r.output
    assert seen[-1][0].bits == 5


@pytest.mark.parametrize("bad, key", [({"seq_len": 0}, "eval.seq_len"), ({"batch_seqs": 0}, "eval.batch_seqs"),
                                      ({"max_tokens": -1}, "eval.max_tokens")])
def test_eval_block_values_have_one_meaning(bad, key):
    from golf.eval.settings import EvalConfig

    with pytest.raises(GolfError, match=key):
        build_section({"seq_len": 256, "batch_seqs": 8, "max_tokens": 0, **bad}, "eval", EvalConfig)


def test_float_bpb_is_reused_only_for_the_checkpoints_own_eval():
    from golf.eval.settings import EvalConfig, same_as_checkpoint

    ev = EvalConfig(seq_len=256, batch_seqs=8, max_tokens=32768)
    header = {"val_bpb": 1.9, "eval": {"seq_len": 256, "batch_seqs": 16, "max_tokens": 32768}}
    assert same_as_checkpoint(ev, header)  # batch size does not change the score
    assert not same_as_checkpoint(ev, {**header, "eval": {"seq_len": 128, "max_tokens": 32768}})
    assert not same_as_checkpoint(ev, {"eval": header["eval"]})  # no recorded val_bpb
