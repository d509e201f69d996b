"""train.compile_without_gc (golf/train/gc_pause.py): the collector is off while the warm-up compiles, and on,
with the survivors frozen, once it is over."""

from __future__ import annotations

import functools
import gc

import pytest
import torch
from test_train import SOLO, corpus, tcfg

from golf.train import gc_pause
from golf.train.loop import train


@pytest.fixture(autouse=True)
def unfrozen():
    yield
    gc.unfreeze()
    gc.enable()


def test_paused_turns_the_collector_off_inside_and_freezes_after():
    frozen = gc.get_freeze_count()
    with gc_pause.paused(True):
        assert not gc.isenabled()
        garbage = [None]
        garbage.append(garbage)  # a cycle: only the collector frees it
        del garbage
    assert gc.isenabled() and gc.get_freeze_count() > frozen


def test_paused_is_a_no_op_when_off_or_already_off():
    with gc_pause.paused(False):
        assert gc.isenabled()
    gc.disable()
    with gc_pause.paused(True):
        assert not gc.isenabled()
    assert not gc.isenabled() and gc.get_freeze_count() == 0  # whoever turned it off turns it on


def test_paused_turns_it_back_on_after_an_error():
    with pytest.raises(RuntimeError), gc_pause.paused(True):
        raise RuntimeError("compile failed")
    assert gc.isenabled()


@pytest.mark.parametrize("without_gc", [True, False])
def test_the_warm_up_compiles_without_the_collector(monkeypatch, tiny_model_config, without_gc):
    """With compile on, each dynamo compile of the warm-up sees the collector as the key says; training's steps
    after the warm-up see it on."""
    import torch._dynamo as dynamo

    from golf.artifact.model import GPT

    seen = []

    def eager(gm, example_inputs):
        seen.append(gc.isenabled())
        return gm.forward

    tr, _ = corpus(seed=1, vocab=96)
    va, vb = corpus(600, seed=2, vocab=96)
    dynamo.reset()
    monkeypatch.setattr(torch, "compile", functools.partial(torch.compile, backend=eager))
    cfg = tcfg(iterations=2, warmup_steps=1, val_every=0, ema_decay=0.0, enable_looping_at=0.5, compile="on",
               compile_without_gc=without_gc)
    train(GPT(tiny_model_config), cfg, tr, va, vb, torch.device("cpu"), SOLO, progress=False,
          on_step=lambda step: seen.append(("step", gc.isenabled())))
    dynamo.reset()
    compiles = [s for s in seen if not isinstance(s, tuple)]
    assert len(compiles) == 2 and set(compiles) == {not without_gc}  # the looped graph, then the plain one
    assert [s for s in seen if isinstance(s, tuple)] == [("step", True)] * 2
