"""train.compile_kernels_ahead (golf/train/kernels_ahead.py): the kernels thread runs each distinct attention call
once, forward and backward, without touching the model's gradients or training's random state; the backend
waits for it after the graph's compile and before the graph's first run."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from golf.artifact.model import GPT, attention
from golf.kernels import fa4
from golf.train import kernels_ahead


@pytest.fixture
def fa4_on_cpu():
    """The FA4 ops registered as the "fa4" backend; on CPU they run their float32 reference."""
    attention.register_backend("fa4", fa4.attention, fa4.varlen_attention)
    yield
    attention.unregister_backend("fa4")


@pytest.mark.parametrize("doc_masked", [False, True])
def test_kernels_thread_runs_each_distinct_attention_once_and_leaves_training_alone(tiny_model_config, fa4_on_cpu,
                                                                                    doc_masked):
    model = GPT(dataclasses.replace(tiny_model_config, doc_masked_attention=doc_masked))
    model.set_attention_backend("fa4")
    rng = torch.get_rng_state()
    ahead = kernels_ahead.KernelsAhead(model, 16, torch.device("cpu"))
    ahead.wait()
    ahead.wait()  # a second wait returns at once
    assert ahead.calls == 1  # every layer's attention has the same heads: one kernel
    assert ahead.seconds > 0 and ahead.waited >= 0
    assert all(p.grad is None for p in model.parameters())
    assert torch.equal(torch.get_rng_state(), rng)


def test_kernels_thread_finds_nothing_to_compile_without_fa4(tiny_model_config):
    ahead = kernels_ahead.KernelsAhead(GPT(tiny_model_config), 16, torch.device("cpu"))  # SDPA
    ahead.wait()
    assert ahead.calls == 0


def test_a_failing_kernels_thread_says_so_and_training_goes_on(monkeypatch, capsys):
    def fail(*args):
        raise RuntimeError("no CuTe DSL here\nsecond line")

    monkeypatch.setattr(kernels_ahead, "compile_kernels", fail)
    ahead = kernels_ahead.KernelsAhead(torch.nn.Linear(2, 2), 16, torch.device("cpu"))
    ahead.wait()
    assert ahead.calls == 0
    err = capsys.readouterr().err
    assert "compile_kernels_ahead failed (RuntimeError: no CuTe DSL here)" in err and "second line" not in err


def test_backend_waits_for_the_kernels_after_the_compile_and_before_the_first_run(monkeypatch):
    """inductor's compile stubbed (the order is the point, not inductor): compile, wait, then run."""
    import torch._inductor.compile_fx as compile_fx

    events = []

    def fake_compile_fx(gm, inputs, **kwargs):
        events.append(("compile", kwargs["config_patches"].get("combo_kernels")))

        def run(*args):
            events.append("run")
            return gm(*args)
        return run

    class Kernels:
        def wait(self):
            events.append("wait")

    monkeypatch.setattr(compile_fx, "compile_fx", fake_compile_fx)
    torch._dynamo.reset()
    fn = torch.compile(lambda x: x * 2 + 1, backend=kernels_ahead.inductor_then_wait({"combo_kernels": True}, Kernels()))
    assert torch.equal(fn(torch.ones(3)), torch.full((3,), 3.0))
    torch._dynamo.reset()
    assert events == [("compile", True), "wait", "run"]
