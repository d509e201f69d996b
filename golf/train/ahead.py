"""`train.compile_ahead`: a helper process compiles the looped graph while training starts without it.

At `model` scope, with looping to switch on later, training needs two whole-model graphs, each compiled mostly in
one Python thread (inductor's code generation is the largest part: BENCHMARKS.md, fifth session). Compiling both
before the first step made that step wait 64-121 s on the H200s measured (twenty-ninth session), the looped graph
(the larger) most of it. But the looped graph is first needed where looping switches on (train.enable_looping_at,
0.35 of the run in the presets). So the helper builds the same model and Stepper on a slice of the same tokens,
traces the looped graph and hands it to inductor, then stops before running it: it holds no activations. Training
meanwhile compiles the plain graph alone, warms it up and trains; at the switch it waits for the helper if it
must, then warms the looped graph up as it does at the start (its steps thrown away, off the train clock).
Inductor's FX graph cache and AOTAutograd's cache are on disk (TORCHINDUCTOR_CACHE_DIR), so training finds both
of the looped graph's compiled halves there instead of compiling them. 56.9 s to the first step against 81.9 s
when training compiled the looped graph first (BENCHMARKS.md, thirtieth session).

Both processes must compute the same cache keys. The keys hold the functorch config, so both compile the
backward at the first forward (loop.Stepper.compile): the helper never runs a backward. And they hold
pickles of the graph's tensor metadata, where pickle names a memory format (torch.contiguous_format) after
the first module in sys.modules that has a `torch` attribute, which differs between two processes that
import in different orders: `same_cache_keys` names it after torch in both. A helper that fails costs
nothing but its CPU time: training then compiles the looped graph itself at the switch, as it would have at the
start.

Under train.compile_ahead_kernels the helper first runs each CuTe DSL kernel of a step once (golf/train/
cute_kernels.py), which compiles FA4's and quack's kernels into their disk caches, while training compiles the
plain graph; without it they compile at that graph's first run in training (15-23 s on some H200s: BENCHMARKS.md,
twenty-sixth session). `take_kernels`, between training's compile and the graph's first run, either waits for a
helper that has started them (less time than compiling them again) or, when the helper has not reached them yet,
tells it to leave them to training.

Under torchrun every rank starts its own helper on its own GPU (rank 0's batch shapes, which every rank
shares); measured on one GPU only (BENCHMARKS.md, issue 17, eleventh session).
"""

from __future__ import annotations

import copyreg
import functools
import gc
import multiprocessing
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from golf.artifact.runtime import Dist

# train.compile_ahead_kernels: who compiles the CuTe DSL kernels, a shared int that both processes set under its lock
_STARTING, _KERNELS, _DONE, _FAILED, _TRAINING = range(5)  # the helper: not there yet, on them, ...; training


def _memory_format(name: str) -> torch.memory_format:
    return getattr(torch, name)


def same_cache_keys() -> None:
    """Pickle torch's memory formats by name in this process (what the cache keys hold; see above)."""
    copyreg.pickle(torch.memory_format, lambda f: (_memory_format, (str(f).removeprefix("torch."),)))


class _Compiled(Exception):
    """The helper's way out once inductor has compiled (and cached) the graph."""


def _compile_then_stop(gm: torch.fx.GraphModule, example_inputs: list, config_patches: dict) -> Any:
    """A dynamo backend: inductor's compile of the graph with training's config (which writes the caches), then
    stop before it runs."""
    from torch._inductor.compile_fx import compile_fx

    compile_fx(gm, example_inputs, config_patches=config_patches)
    raise _Compiled


def _stopped(e: BaseException) -> bool:
    """dynamo wraps a backend's exception; True when it is the helper's own stop."""
    while e is not None:
        if isinstance(e, _Compiled):
            return True
        e = e.__cause__ or getattr(e, "inner_exception", None)
    return False


def _helper(model_cfg: Any, cfg: Any, tokens_file: str, device: str, world: int, done_at: Any, kernels: Any,
            kernels_over: Any) -> None:
    """In the helper process: the same model, backend (set_backend resolves train.attention_backend here as it
    does in training, which it starts beside) and Stepper as training, looping on, one micro-batch
    (rank 0's shapes of `world` ranks; it stops before the step's all-reduce, so it joins no process group).
    done_at: a shared double, set to time.time() when the graph is in the caches; kernels: the shared state
    above; kernels_over: an event set once the helper is through with the kernels."""
    from golf.artifact.model import GPT
    from golf.train.backend import set_backend
    from golf.train.loop import inductor_options, make_stepper

    if cfg.compile_without_gc:
        gc.disable()  # the helper's life is a compile, then it exits (golf/train/gc_pause.py)
    tokens = np.load(tokens_file)
    # its weights are never used, so they start on the device and take no CPU threads from training beside it
    # (training's own CPU init ran 10-18x slower beside a busy helper: BENCHMARKS.md, twenty-ninth session)
    with torch.device(device):
        model = GPT(model_cfg)
    set_backend(model, cfg.attention_backend, torch.device(device))
    stepper = make_stepper(model, cfg, tokens, torch.device(device), Dist(0, 0, world), announce=False)
    # training needs the kernels at its plain graph's first run, the looped graph much later
    _compile_kernels(model, cfg.train_seq_len, torch.device(device), kernels, kernels_over)
    stepper.compile(backend=functools.partial(_compile_then_stop, config_patches=inductor_options(cfg)))
    model.looping = True
    try:
        stepper(0, 1.0, cfg.muon_momentum_warmup_start)
    except Exception as e:  # noqa: BLE001  anything but the stop is the helper's failure, said below
        if _stopped(e):
            done_at.value = time.time()
            return
        print(f"train: compile_ahead helper failed ({type(e).__name__}: {str(e).splitlines()[0][:200]}); "
              "the looped graph compiles in training instead", file=sys.stderr)
        sys.exit(1)
    print("train: compile_ahead helper ran its step without compiling anything", file=sys.stderr)
    sys.exit(1)


def _compile_kernels(model: torch.nn.Module, seq_len: int, device: torch.device, kernels: Any,
                    kernels_over: Any) -> None:
    """The helper's part of train.compile_ahead_kernels: the kernels into the disk caches, unless training has
    taken them on (or the key is off: _TRAINING from the start)."""
    from golf.train.cute_kernels import compile_kernels

    with kernels.get_lock():
        if kernels.value == _TRAINING:
            return
        kernels.value = _KERNELS
    try:
        compile_kernels(model, seq_len, device)
        kernels.value = _DONE
    except Exception as e:  # noqa: BLE001  training then compiles them at the graph's first run, as without it
        kernels.value = _FAILED
        print(f"train: compile_ahead helper failed to compile the kernels ({type(e).__name__}: "
              f"{str(e).splitlines()[0][:200]}); they compile in training instead", file=sys.stderr)
    finally:
        kernels_over.set()


def _share_kernel_caches() -> None:
    """Turn FA4's disk cache on (off by default; it reads the switch at import, so this comes before training
    imports FA4, and the spawned helper inherits it): the helper's kernels reach training there. quack's is on by
    default. Both key by the kernel's arguments and their package's sources, so a later run on this machine finds
    them too."""
    os.environ.setdefault("FLASH_ATTENTION_CUTE_DSL_CACHE_ENABLED", "1")


def take_kernels(proc: Any) -> tuple[bool, float]:
    """In training, after the plain graph's compile and before its first run: (whether the helper compiled the
    CuTe DSL kernels, seconds waited for it). A helper that has not reached them leaves them to training."""
    t0 = time.perf_counter()
    with proc.kernels.get_lock():
        if proc.kernels.value == _STARTING:
            proc.kernels.value = _TRAINING
    if proc.kernels.value != _TRAINING:
        while not proc.kernels_over.wait(0.05) and proc.is_alive():
            pass
    return proc.kernels.value == _DONE, time.perf_counter() - t0


class InductorThenKernels(torch._TorchCompileInductorWrapper):
    """torch.compile's inductor backend (a subclass, so dynamo treats it as inductor) that takes the kernels from
    the helper after its first compile (the plain graph's), before that graph first runs."""

    def __init__(self, options: dict[str, Any], proc: Any):
        super().__init__(None, options, False)
        self.proc = proc

    def __call__(self, model_: Any, inputs_: Any, **kwargs: Any) -> Any:
        compiled = super().__call__(model_, inputs_, **kwargs)
        if not hasattr(self.proc, "kernels_taken"):
            self.proc.kernels_taken = take_kernels(self.proc)
        return compiled


def wanted(cfg: Any, model_cfg: Any, device: torch.device) -> bool:
    """compile_ahead applies to golf's GPT of model_cfg on `device`: compiled at `model` scope, with warm-up
    steps and a looping switch (golf/train/loop.py: can_loop, enable_looping_at > 0)."""
    return (cfg.compile_ahead and cfg.compiles_on(device.type) and model_cfg.num_loops > 0
            and cfg.enable_looping_at > 0 and cfg.warmup_steps > 0 and cfg.compile_scope == "model")


def start(model_cfg: Any, cfg: Any, train_tokens: np.ndarray, device: torch.device, world: int) -> Any:
    """Start the helper (a spawned process) on the same device, for golf's GPT of model_cfg. Training starts it
    once its model is initialised, before the attention backend, the fused kernels and the Stepper (golf/train/
    run.py): about 5 s of setup on an H200 that the helper spends on its own imports, so that it reaches the
    kernels of train.compile_ahead_kernels sooner (BENCHMARKS.md, twenty-ninth session). Not before the init: the init's
    threads ran 10-18x slower beside a starting helper. Under train.compile_ahead_kernels it turns FA4's disk
    cache on first, so training's set_backend must come after it. It gets a step's worth of tokens from the start
    of the train split (the graph depends on their shapes, not on the whole split) in a file.
    Not as an argument: spawn pipes the pickled arguments to the child, which reads them only after
    importing, so a few MB there held this process up for seconds (setup 8.4 s instead of 4.4 s in
    BENCHMARKS.md's twelfth session)."""
    if cfg.compile_ahead_kernels:
        _share_kernel_caches()
    fd, path = tempfile.mkstemp(prefix="golf-ahead-", suffix=".npy")
    with os.fdopen(fd, "wb") as f:
        np.save(f, np.asarray(train_tokens[:cfg.train_batch_tokens + cfg.train_seq_len + 1]))
    ctx = multiprocessing.get_context("spawn")
    done_at = ctx.Value("d", 0.0, lock=False)
    kernels = ctx.Value("i", _STARTING if cfg.compile_ahead_kernels else _TRAINING)
    kernels_over = ctx.Event()
    proc = ctx.Process(target=_helper, args=(model_cfg, cfg, path, str(device), world, done_at, kernels,
                                             kernels_over), name="golf-compile-ahead")
    proc.tokens_file = path  # removed by finish / stop
    proc.done_at, proc.kernels, proc.kernels_over = done_at, kernels, kernels_over
    try:
        proc.start()
    except BaseException:
        Path(path).unlink(missing_ok=True)
        raise
    return proc


def finish(proc: Any) -> tuple[bool, float, float]:
    """Wait for the helper; (whether it compiled the looped graph, seconds waited, seconds its graph had been
    ready before this call: its slack)."""
    t0, now = time.perf_counter(), time.time()
    proc.join()
    Path(proc.tokens_file).unlink(missing_ok=True)
    if proc.exitcode not in (0, 1):  # 1: the helper said why itself
        print(f"train: compile_ahead helper exited with status {proc.exitcode}; the looped graph compiles in "
              "training instead", file=sys.stderr)
    done = proc.exitcode == 0
    return done, time.perf_counter() - t0, max(0.0, now - proc.done_at.value) if done else 0.0


def stop(proc: Any) -> None:
    """Training is over (after finish, or early on an error): do not leave the helper compiling."""
    if proc is None:
        return
    if proc.is_alive():
        proc.terminate()
        proc.join()
    Path(proc.tokens_file).unlink(missing_ok=True)
