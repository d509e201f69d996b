"""train.compile_ahead_kernels: golf/train/cute_kernels.py runs each distinct CuTe DSL kernel call once without
touching the model's gradients or the caller's random state; golf/train/ahead.py's helper compiles the kernels
first, unless training is through its plain graph's compile before the helper reaches them, and training's backend
takes them (or leaves them to training) between that graph's compile and its first run."""

from __future__ import annotations

import dataclasses
import multiprocessing
import threading
import time
from types import SimpleNamespace

import pytest
import torch

from golf.artifact.model import GPT
from golf.train import ahead, cute_kernels


@pytest.mark.parametrize("doc_masked", [False, True])
def test_compile_kernels_runs_each_distinct_attention_once_and_leaves_training_alone(tiny_model_config, fa4_on_cpu,
                                                                                    doc_masked):
    model = GPT(dataclasses.replace(tiny_model_config, doc_masked_attention=doc_masked))
    model.set_attention_backend("fa4")
    rng = torch.get_rng_state()
    assert cute_kernels.compile_kernels(model, 16, torch.device("cpu")) == 1  # every layer: the same heads
    assert all(p.grad is None for p in model.parameters())
    assert torch.equal(torch.get_rng_state(), rng)


def test_compile_kernels_finds_none_without_fa4(tiny_model_config):
    assert cute_kernels.compile_kernels(GPT(tiny_model_config), 16, torch.device("cpu")) == 0  # SDPA


def helper_proc(state: int, alive: bool = True) -> SimpleNamespace:
    """What ahead.start hands training, with the real shared state and event and no process."""
    ctx = multiprocessing.get_context("spawn")
    return SimpleNamespace(kernels=ctx.Value("i", state), kernels_over=ctx.Event(), is_alive=lambda: alive)


def test_a_helper_that_has_not_reached_the_kernels_leaves_them_to_training(monkeypatch):
    proc = helper_proc(ahead._STARTING)
    assert ahead.take_kernels(proc) == (False, pytest.approx(0.0, abs=0.5))
    compiled = []
    monkeypatch.setattr(cute_kernels, "compile_kernels", lambda *a: compiled.append(a))
    ahead._compile_kernels(None, 16, torch.device("cpu"), proc.kernels, proc.kernels_over)  # then it gets there
    assert compiled == [] and proc.kernels.value == ahead._TRAINING


@pytest.mark.parametrize("fails", [False, True])
def test_training_waits_for_kernels_the_helper_has_started(monkeypatch, capsys, fails):
    proc = helper_proc(ahead._STARTING)

    def compile_kernels(*args):
        time.sleep(0.3)
        if fails:
            raise RuntimeError("no CuTe DSL here\nsecond line")

    monkeypatch.setattr(cute_kernels, "compile_kernels", compile_kernels)
    helper = threading.Thread(target=ahead._compile_kernels,
                              args=(None, 16, torch.device("cpu"), proc.kernels, proc.kernels_over))
    helper.start()
    while proc.kernels.value == ahead._STARTING:
        time.sleep(0.01)
    done, waited = ahead.take_kernels(proc)
    helper.join()
    assert done == (not fails) and 0.1 < waited < 5
    err = capsys.readouterr().err
    assert ("failed to compile the kernels (RuntimeError: no CuTe DSL here)" in err) == fails
    assert "second line" not in err


def test_training_stops_waiting_for_a_helper_that_died():
    proc = helper_proc(ahead._KERNELS, alive=False)
    assert ahead.take_kernels(proc) == (False, pytest.approx(0.0, abs=0.5))


def test_backend_takes_the_kernels_once_after_the_first_compile_and_before_the_first_run(monkeypatch):
    """inductor's compile stubbed (the order is the point, not inductor): compile, take, run; a second graph
    (the looped one, at the switch) takes nothing."""
    import torch._inductor.compile_fx as compile_fx

    events = []

    def fake_compile_fx(gm, inputs, **kwargs):
        events.append(("compile", kwargs["config_patches"].get("combo_kernels")))

        def run(*args):
            events.append("run")
            return gm(*args)
        return run

    monkeypatch.setattr(compile_fx, "compile_fx", fake_compile_fx)
    monkeypatch.setattr(ahead, "take_kernels", lambda proc: events.append("take") or (True, 0.0))
    proc = SimpleNamespace()
    backend = ahead.InductorThenKernels({"combo_kernels": True}, proc)
    torch._dynamo.reset()
    try:
        first, second = (torch.compile(f, backend=backend) for f in (lambda x: x * 2 + 1, lambda x: x - 1))
        assert torch.equal(first(torch.ones(3)), torch.full((3,), 3.0))
        assert torch.equal(second(torch.ones(3)), torch.zeros(3))
    finally:
        torch._dynamo.reset()
    assert events == [("compile", True), "take", "run", ("compile", True), "run"]
    assert proc.kernels_taken == (True, 0.0)
