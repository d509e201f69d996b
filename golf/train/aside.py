"""The compile aside (train.compile_aside; cold start, issue 17): a second process compiles the looped graph.

At compile_scope model the warm-up (golf/train/loop.py, Stepper.warm_up) compiles the plain graph, then the
looped one (model.looping, on from train.enable_looping_at): two long compiles in a row, mostly one thread of
Python (dynamo, AOTAutograd, inductor). So `run_training` (golf/train/run.py) starts a child right after its
config checks: `python -m stages.train` on the resolved sections, GOLF_COMPILE_ASIDE naming the CUDA device.
The child takes the same path (run_training, loop.prepare: model, seed, fused kernels, attention backend,
autocast, bf16 residual, the mix-order cap, the dynamic cu_seqlens) as one process with this rank's per-rank
batch, on this rank's device, then runs one looped micro-batch forward and backward and exits: no optimizer
step, nothing written but inductor's FX graph cache and AOTAutograd's cache (TORCHINDUCTOR_CACHE_DIR,
inherited). Meanwhile the parent compiles and warms up the plain graph; before its looped warm-up it waits
for the child, and its own looped compile then hits both caches. A failed child costs only the wait: the
parent says so in one line and compiles the looped graph itself.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import torch

from golf.train.launch import params_file, stage_args
from golf.train.loop import micro_objective

ENV = "GOLF_COMPILE_ASIDE"  # in the child: the CUDA device index to compile on
PARENT_ENV = "GOLF_COMPILE_ASIDE_PARENT"  # in the child: its parent's pid
MIN_MEMORY_BYTES = 100 * 2**30  # auto: room for two processes' peaks (TrainConfig.compile_aside)
# torchrun's variables: a child that saw them would try to join the process group
TORCHRUN_ENV = ("WORLD_SIZE", "RANK", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "GROUP_RANK", "GROUP_WORLD_SIZE",
                "ROLE_RANK", "ROLE_NAME", "ROLE_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")
LOG = "child.log"


def wanted(model_cfg: Any, cfg: Any, device_type: str, memory_bytes: Callable[[], int]) -> bool:
    """Whether a child helps: on CUDA, training compiles one graph per looping phase, looping switches on
    later and the warm-up compiles it; with `auto`, the device's total memory (`memory_bytes()`) holds both."""
    if (device_type != "cuda" or cfg.compile_aside == "off" or cfg.compile == "off" or cfg.compile_scope != "model"
            or model_cfg.num_loops == 0 or cfg.enable_looping_at == 0 or cfg.warmup_steps == 0):
        return False
    return cfg.compile_aside == "on" or memory_bytes() >= MIN_MEMORY_BYTES


@dataclasses.dataclass
class Child:
    proc: subprocess.Popen
    tmp: Path
    ran: bool = False
    """The child compiled the looped graph (it exited 0)."""

    def wait(self) -> float:
        """Wait for the child; the seconds waited. A failure is said once on stderr, never raised."""
        t0 = time.perf_counter()
        rc = self.proc.wait()
        self.ran = rc == 0
        if rc != 0:
            print(f"train: the looped graph's compile aside failed (exit {rc}, log tail: {log_tail(self.tmp / LOG)}); "
                  "compiling it here", file=sys.stderr)
        return time.perf_counter() - t0

    def close(self) -> None:
        """Kill the child if it still runs (with its compile workers: its own session), remove its files."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        shutil.rmtree(self.tmp, ignore_errors=True)


def start(model_cfg: Any, cfg: Any, tokens: Path, device: torch.device, world: int) -> Child | None:
    """This rank's child when `wanted` (never in a child); None otherwise, or when it cannot start."""
    if os.environ.get(ENV) is not None or not wanted(model_cfg, cfg, device.type,
                                                      lambda: torch.cuda.mem_get_info(device)[1]):
        return None
    try:
        return spawn(model_cfg, cfg, tokens, device, world)
    except OSError as e:  # training never fails because of the child
        print(f"train: the looped graph's compile aside could not start ({e}); compiling it here", file=sys.stderr)
        return None


def spawn(model_cfg: Any, cfg: Any, tokens: Path, device: torch.device, world: int) -> Child:
    """Start the child in a new temp dir: its params file, its log, and the outputs it never writes."""
    tmp = Path(tempfile.mkdtemp(prefix="golf-compile-aside."))
    try:
        argv, env = command(model_cfg, cfg, tokens, device, world, tmp)
        with open(tmp / LOG, "wb") as log:
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env,
                                    start_new_session=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return Child(proc, tmp)


def command(model_cfg: Any, cfg: Any, tokens: Path, device: torch.device, world: int,
            tmp: Path) -> tuple[list[str], dict[str, str]]:
    """(argv, env) of the child: one process with this rank's batch, on this rank's device (the device index
    is part of the graph, so the cache keys match), outside torchrun's group."""
    child_cfg = dataclasses.replace(cfg, train_batch_tokens=cfg.train_batch_tokens // world, nproc_per_node=1)
    paths = {"tokens": tokens, "out": tmp / "model.safetensors", "metrics": tmp / "train.json",
             "plots": tmp / "train.csv"}
    argv = [sys.executable, "-m", *stage_args(params_file(model_cfg, child_cfg, tmp), paths)]
    env = {k: v for k, v in os.environ.items() if k not in TORCHRUN_ENV and not k.startswith("TORCHELASTIC_")}
    env |= {ENV: str(device.index or 0), PARENT_ENV: str(os.getpid())}
    return argv, env


def child_device() -> int | None:
    """In the child: the CUDA device index to compile on, after tying the child's life to its parent's
    (Linux: killed when the parent dies); None in any other process."""
    if (index := os.environ.get(ENV)) is None:
        return None
    if sys.platform == "linux":
        import ctypes

        ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        if os.getppid() != int(os.environ[PARENT_ENV]):  # the parent died before that
            os._exit(1)
    return int(index)


def compile_looped(stepper: Any) -> None:
    """The child's warm-up: one looped micro-batch forward and backward, called as Stepper.__call__ calls it
    (golf/train/loop.py), which compiles the looped graph's forward and backward; no optimizer step."""
    stepper.model.looping = True
    x, y, cu = stepper.loader.batch(0)[0]
    if cu is not None and stepper.compiled:
        torch._dynamo.mark_dynamic(cu, 0)
    with torch.autocast("cuda", dtype=torch.bfloat16, enabled=stepper.autocast):
        loss, aux = micro_objective(stepper.model, stepper.forward, x, y, stepper.moe_w, stepper.mtp_w, cu)
    ((loss + aux) / stepper.cfg.grad_accum_steps).backward()
    if x.is_cuda:
        torch.cuda.synchronize(x.device)


def log_tail(log: Path, lines: int = 3) -> str:
    """The log's last non-empty lines, on one line."""
    try:
        text = log.read_text(errors="replace")
    except OSError as e:
        return f"no log: {e}"
    return " | ".join([ln.strip() for ln in text.splitlines() if ln.strip()][-lines:])[-400:] or "empty"
