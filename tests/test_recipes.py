"""Recipes (recipes/*.yaml, docs/recipes.md): each validates on its preset and trains one CPU step at a
reduced size with its own toggles still on; a stale key is named with the recipe file."""

import json
from pathlib import Path

import pytest
import yaml
from test_train import invoke, write_tokens
from typer.testing import CliRunner

from golf.errors import GolfError
from golf.presets import preset_names, read_overlay, recipe_preset, recipe_text
from stages.cli import app
from stages.preset import validate_all

ROOT = Path(__file__).resolve().parents[1]
RECIPES = preset_names(ROOT / "recipes")
PARAMS = (ROOT / "params.yaml").read_text()
LAYERS = 4  # the reduced model's depth


def applied(name: str) -> dict:
    return yaml.safe_load(recipe_text(PARAMS, ROOT / "recipes" / f"{name}.yaml", ROOT / "presets"))


def shrink(p: dict, vocab: int = 32) -> dict:
    """The recipe at CPU size: small widths and depth, layer indices mapped onto the last layers, one step.
    Every on/off toggle and every non-size value the recipe set stays as it is, but the GPU-only ones (device,
    compile, CUDA graphs)."""
    m, t = p["model"], p["train"]
    old = m["num_layers"]
    last = lambda i: LAYERS - (old - i)  # noqa: E731  (layer i of old counted from the top)
    m.update(vocab_size=vocab, bos_id=0, num_layers=LAYERS, model_dim=32, num_heads=4, num_kv_heads=2, rope_dims=4,
             gate_window=min(m["gate_window"], 32), xsa_last_n=min(m["xsa_last_n"], LAYERS),
             bigram_vocab_size=min(m["bigram_vocab_size"], 64), bigram_dim=min(m["bigram_dim"], 8),
             ve_dim=min(m["ve_dim"], 8), ve_layers=[last(i) for i in m["ve_layers"]])
    if m["parallel_start_layer"] >= 0:
        m["parallel_start_layer"] = max(last(m["parallel_start_layer"]), LAYERS // 2)
    m.update(loop_start=1, loop_end=1)  # one looped layer (read only when num_loops > 1)
    t.update(iterations=1, max_wallclock_s=0.0, gptq_reserve_s=0.0, warmup_steps=0, train_batch_tokens=8 * 24,
             train_seq_len=24, grad_accum_steps=1, nproc_per_node=1, val_every=0, val_batch_seqs=4,
             val_max_tokens=0, device="cpu", compile="off", cuda_graphs=False, peak_flops=0.0)
    return p


def test_the_five_recipes_exist_and_name_their_preset():
    assert set(RECIPES) == {"record", "xsa_gptq_prune", "headwise_small_batch", "negative_baseline",
                            "int6_mlp3x_zstd"}
    for name in RECIPES:
        assert recipe_preset(ROOT / "recipes" / f"{name}.yaml") in preset_names(ROOT / "presets")


@pytest.mark.parametrize("name", RECIPES)
def test_every_recipe_validates_on_its_preset(tmp_path, name):
    path = ROOT / "recipes" / f"{name}.yaml"
    text = recipe_text(PARAMS, path, ROOT / "presets")
    (tmp_path / "params.yaml").write_text(text)
    validate_all(tmp_path / "params.yaml")  # every section builds its dataclass
    loaded = yaml.safe_load(text)
    assert all(loaded[s][k] == v for s, kv in read_overlay(path).items() for k, v in kv.items())


@pytest.mark.parametrize("name", RECIPES)
def test_every_recipe_trains_one_cpu_step_with_its_own_toggles(tmp_path, name):
    full = applied(name)
    small = shrink(json.loads(json.dumps(full)))
    # the recipe's toggles survive the shrink: what it turns on stays on, its layer lists stay non-empty
    for key in ("doc_masked_attention", "smear_gate_enabled", "sparse_attn_gate_enabled", "gated_attn_enabled",
                "mlp_mult", "qk_gain_init", "num_loops", "activation"):
        assert small["model"][key] == full["model"][key]
    for key in ("bigram_vocab_size", "ve_dim", "ve_layers"):
        assert bool(small["model"][key]) == bool(full["model"][key])
    assert (small["model"]["parallel_start_layer"] >= 0) == (full["model"]["parallel_start_layer"] >= 0)
    assert small["train"]["ema_decay"] == full["train"]["ema_decay"]
    assert small["train"]["ema_warmup"] == full["train"]["ema_warmup"]
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(small))  # the train stage validates what it reads
    write_tokens(tmp_path / "tokens", vocab=29)
    r = invoke(tmp_path)
    assert r.exit_code == 0, r.output
    m = json.loads((tmp_path / "metrics/train.json").read_text())["train"]
    assert m["steps"] == 1 and m["params"] > 0 and m["val_bpb"] > 0


def test_recipes_turn_on_what_they_reproduce():
    xsa, head, neg = applied("xsa_gptq_prune"), applied("headwise_small_batch"), applied("negative_baseline")
    assert xsa["model"]["bigram_vocab_size"] == 2048 and xsa["model"]["ve_layers"] == [9, 10]
    assert xsa["model"]["xsa_last_n"] == xsa["model"]["num_layers"] and xsa["compress"]["codec"] == "lzma"
    assert head["model"]["gated_attn_enabled"] and head["train"]["train_batch_tokens"] == 196608
    assert head["ttt_eval"]["lora_sites"] == ["attn.c_k", "mlp", "attn.proj"]
    assert neg["model"]["parallel_start_layer"] >= 0 and neg["ttt_eval"]["ttt_mode"] == "chunk_sgd"
    assert applied("record")["train"]["ema_warmup"] is False


def test_a_recipe_key_that_no_longer_exists_is_named_with_the_file(tmp_path):
    bad = tmp_path / "stale.yaml"
    bad.write_text("# preset: record\nmodel:\n  mlp_mult: 3.0\ntrain:\n  no_such_key: 1\n")
    with pytest.raises(GolfError, match=r"^\S*stale\.yaml: key\(s\) train\.no_such_key are not in params\.yaml"):
        recipe_text(PARAMS, bad, ROOT / "presets")
    missing = tmp_path / "gone.yaml"
    missing.write_text("# preset: no-such-preset\n")
    with pytest.raises(GolfError, match="no-such-preset.yaml: no such preset"):
        recipe_text(PARAMS, missing, ROOT / "presets")


def test_golf_recipe_command(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "params.yaml").write_text(PARAMS)
    for folder in ("presets", "recipes"):
        (tmp_path / folder).mkdir()
        for f in (ROOT / folder).glob("*.yaml"):
            (tmp_path / folder / f.name).write_text(f.read_text())
    (tmp_path / "recipes" / "stale.yaml").write_text("# preset: h100\ntrain:\n  no_such_key: 1\n")
    r = CliRunner().invoke(app, ["recipe", "xsa_gptq_prune"])
    assert r.exit_code == 0, r.output
    assert "on preset record" in r.output
    assert yaml.safe_load((tmp_path / "params.yaml").read_text())["model"]["ve_layers"] == [9, 10]
    r = CliRunner().invoke(app, ["recipe", "stale"])
    assert r.exit_code == 1 and "stale.yaml" in r.output and "train.no_such_key" in r.output
    assert yaml.safe_load((tmp_path / "params.yaml").read_text())["model"]["ve_layers"] == [9, 10]  # unchanged
    r = CliRunner().invoke(app, ["recipe", "nope"])
    assert r.exit_code == 1 and "no such recipe" in r.output and "record" in r.output
