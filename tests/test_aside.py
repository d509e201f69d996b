"""train.compile_aside (golf/train/aside.py): when a child compiles the looped graph, what it runs, and that a
failed child never fails training. CPU, real subprocesses; the cache hit itself is the GPU test at the end."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import sys
import tempfile
from pathlib import Path

import pytest
import torch
from test_train import MODEL, SOLO, corpus, invoke, tcfg, write_params, write_tokens

from golf.artifact.model import GPT
from golf.artifact.model.config import ModelConfig
from golf.artifact.typed import build_section
from golf.params import load_section
from golf.train import aside
from golf.train.config import TrainConfig
from golf.train.loop import prepare, train

GIB = 2**30


def mcfg(**over) -> ModelConfig:
    return build_section(MODEL, "model", ModelConfig, over)


@pytest.fixture
def own_tmp(tmp_path, monkeypatch) -> Path:
    """The system temp dir, for this test alone: a child's temp dir left there can be seen."""
    d = tmp_path / "systmp"
    d.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(d))
    return d


def no_memory_query() -> int:
    raise AssertionError("the device's memory was queried")


@pytest.mark.parametrize("model_over,over", [
    ({}, {"compile_aside": "off"}),
    ({}, {"compile": "off"}),
    ({}, {"compile_scope": "blocks"}),
    ({"num_loops": 0}, {}),
    ({}, {"enable_looping_at": 0.0}),
    ({}, {"warmup_steps": 0}),
])
def test_no_child_where_it_cannot_help(model_over, over):
    """Each condition alone keeps the child off, even forced on with room to spare, without asking the
    device's memory; and start() spawns nothing for it."""
    m, c = mcfg(**model_over), tcfg(**{"compile_aside": "on", **over})
    assert not aside.wanted(m, c, "cuda", no_memory_query)
    assert aside.start(m, c, Path("tokens"), torch.device("cuda", 0), 1) is None


def test_auto_wants_room_for_two_peaks_and_cpu_never_acts():
    m, c = mcfg(), tcfg(compile="auto", compile_scope="model", compile_aside="auto")
    assert aside.wanted(m, c, "cuda", lambda: aside.MIN_MEMORY_BYTES)
    assert not aside.wanted(m, c, "cuda", lambda: aside.MIN_MEMORY_BYTES - 1)
    assert not aside.wanted(m, c, "cuda", lambda: 80 * GIB)  # an H100: two peaks beside the optimizer do not fit
    assert aside.wanted(m, c, "cuda", lambda: 139 * GIB)  # an H200, as torch reports it
    assert aside.wanted(m, dataclasses.replace(c, compile_aside="on"), "cuda", no_memory_query)
    for setting in ("auto", "on"):
        assert not aside.wanted(m, tcfg(compile="on", compile_aside=setting), "cpu", no_memory_query)


def test_stage_on_cpu_starts_no_child_and_says_so(tmp_path, own_tmp):
    write_tokens(tmp_path / "tokens")
    write_params(tmp_path / "params.yaml", compile_aside="on", iterations=4, val_every=0)
    r = invoke(tmp_path)
    assert r.exit_code == 0, r.output
    m = json.loads((tmp_path / "metrics/train.json").read_text())["train"]
    t = json.loads((tmp_path / "metrics/timings/train.json").read_text())["train"]
    assert m["compile_aside"] is False and "start_s_looped_wait" not in t and t["start_s_looped"] > 0
    assert not list(own_tmp.glob("golf-compile-aside.*"))


def test_child_command_is_this_rank_alone_on_its_device(tmp_path, monkeypatch):
    """Under torchrun (rank 1 of 2): the child reads back the parent's model section and its train section
    with the per-rank batch at world 1, so the same micro-batch shape; it sees none of torchrun's variables,
    keeps the rest (the inductor cache dir), and is told its device and its parent."""
    torchrun = {"WORLD_SIZE": "2", "RANK": "1", "LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "2", "GROUP_RANK": "0",
                "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "29500", "TORCHELASTIC_RUN_ID": "x"}
    for k, v in {**torchrun, "TORCHINDUCTOR_CACHE_DIR": str(tmp_path / "cache")}.items():
        monkeypatch.setenv(k, v)
    m, c = mcfg(), tcfg(nproc_per_node=2, compile_aside="on")
    argv, env = aside.command(m, c, tmp_path / "tokens", torch.device("cuda", 1), 2, tmp_path)
    assert argv[:4] == [sys.executable, "-m", "stages.train", "--params"]
    opts = dict(zip(argv[3::2], argv[4::2]))
    assert opts["--tokens"] == str(tmp_path / "tokens")
    assert all(Path(opts[f"--{k}"]).parent == tmp_path for k in ("params", "out", "metrics", "plots"))
    assert load_section(Path(opts["--params"]), "model", ModelConfig) == m
    child = load_section(Path(opts["--params"]), "train", TrainConfig)
    assert child == dataclasses.replace(c, train_batch_tokens=c.train_batch_tokens // 2, nproc_per_node=1)
    assert child.micro_batch_seqs(1) == c.micro_batch_seqs(2)
    assert not set(torchrun) & set(env) and env["TORCHINDUCTOR_CACHE_DIR"] == str(tmp_path / "cache")
    assert env[aside.ENV] == "1" and env[aside.PARENT_ENV] == str(os.getpid())


def test_the_child_compiles_one_looped_micro_batch_and_steps_nothing():
    """What the child runs after loop.prepare: looping on, one micro-batch's gradient, no optimizer state."""
    tr, _ = corpus(seed=1)
    torch.manual_seed(0)
    model = GPT(mcfg())
    before = {k: v.clone() for k, v in model.state_dict().items()}
    stepper, _ = prepare(model, tcfg(), tr, torch.device("cpu"), SOLO)
    aside.compile_looped(stepper)
    assert model.looping is True
    assert all(p.grad is not None for p in stepper.params)
    assert not stepper.muon.state and not stepper.adam.state
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_a_real_child_exits_zero_and_writes_nothing(tmp_path, own_tmp, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    write_tokens(tmp_path / "tokens")
    child = aside.spawn(mcfg(), tcfg(), tmp_path / "tokens", torch.device("cpu"), 1)
    try:
        assert child.wait() >= 0 and child.ran, aside.log_tail(child.tmp / aside.LOG)
        assert {p.name for p in child.tmp.iterdir()} == {aside.LOG, next(child.tmp.glob(".train-params.*")).name}
    finally:
        child.close()
    assert not list(own_tmp.glob("golf-compile-aside.*"))


def test_a_failed_child_is_said_once_and_training_goes_on(tmp_path, own_tmp, monkeypatch, capsys):
    """The child fails for real (its tokens do not exist); the parent warns once, with the child's error,
    trains the looped graph itself, and ends with the weights of a run without a child."""
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    tr, _ = corpus(seed=1)
    va, vb = corpus(600, seed=2)
    cfg = tcfg(iterations=4, val_every=0)
    states = []
    for with_child in (True, False):
        child = aside.spawn(mcfg(), cfg, tmp_path / "missing", torch.device("cpu"), 1) if with_child else None
        torch.manual_seed(0)
        model = GPT(mcfg())
        try:
            res = train(model, cfg, tr, va, vb, torch.device("cpu"), SOLO, progress=False,
                        aside=None if child is None else child.wait)
        finally:
            if child is not None:
                child.close()
        assert res.steps == 4 and res.looping
        assert ("looped_wait" in res.start_s) == with_child and (child is None or not child.ran)
        states.append(model.state_dict())
    err = capsys.readouterr().err
    assert err.count("train: the looped graph's compile aside failed (exit 1, log tail: ") == 1, err
    assert "missing" in err and err.count("compiling it here") == 1
    assert all(torch.equal(states[0][k], states[1][k]) for k in states[0])
    assert not list(own_tmp.glob("golf-compile-aside.*"))


def test_close_kills_a_running_child_and_its_files(tmp_path, own_tmp):
    write_tokens(tmp_path / "tokens")
    child = aside.spawn(mcfg(), tcfg(), tmp_path / "tokens", torch.device("cpu"), 1)
    child.close()
    assert child.proc.returncode == -signal.SIGKILL and not child.ran
    assert not list(own_tmp.glob("golf-compile-aside.*"))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_the_looped_warm_up_hits_the_childs_caches_and_trains_the_same(tmp_path, monkeypatch):
    """A tiny looped GPT compiled on CUDA, fresh inductor cache: with the child, the parent's looped warm-up
    finds every graph it compiles in the FX graph cache (hits, no miss), and the weights are bit for bit
    those of a run without the child on the same cache (the same kernels and autotuning choices)."""
    from torch._dynamo.utils import counters

    from golf.io.checkpoint import load_model
    from golf.train.run import run_training

    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "inductor"))
    write_tokens(tmp_path / "tokens")
    seen: dict[str, int] = {}
    wait = aside.Child.wait

    def spy_wait(self):  # the real wait, then the counters as the looped warm-up starts
        waited = wait(self)
        seen.update(hit=counters["inductor"]["fxgraph_cache_hit"], miss=counters["inductor"]["fxgraph_cache_miss"])
        return waited

    monkeypatch.setattr(aside.Child, "wait", spy_wait)
    weights, values = {}, {}
    for setting in ("on", "off"):
        torch._dynamo.reset()
        cfg = tcfg(device="cuda", compile="on", compile_aside=setting, iterations=4, warmup_steps=1, val_every=0)
        out = tmp_path / setting / "model.safetensors"
        values[setting] = run_training(mcfg(), cfg, tmp_path / "tokens", out, tmp_path / setting / "train.csv")
        if setting == "on":  # nothing compiles after the looped warm-up: evals run eager
            hits = counters["inductor"]["fxgraph_cache_hit"] - seen["hit"]
            assert hits >= 2 and counters["inductor"]["fxgraph_cache_miss"] == seen["miss"], (hits, seen)
        weights[setting] = load_model(out)[0].state_dict()
    assert values["on"]["compile_aside"] is True and values["on"]["start_s_looped_wait"] >= 0
    assert values["off"]["compile_aside"] is False and "start_s_looped_wait" not in values["off"]
    assert all(torch.equal(weights["on"][k], weights["off"][k]) for k in weights["on"])
