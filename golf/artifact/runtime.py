"""Where code runs: device choice, torchrun's process group, all-reduce, autocast, progress bars.

One module for every stage and for the bundled train_gpt.py, so `device` means the same everywhere
(cpu, cuda or auto) and a process started by torchrun joins its group the same way in training and
in eval (nccl on CUDA, gloo on CPU). Every helper is a no-op in a single process.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from typing import Any

import torch

from golf.errors import GolfError

try:  # progress bars are optional: the bundled train_gpt.py may run where tqdm is absent
    from tqdm import tqdm as _tqdm
except ImportError:  # pragma: no cover
    _tqdm = None

DEVICES = ("auto", "cpu", "cuda")


def resolve_device(name: str, key: str = "device") -> torch.device:
    """auto = cuda when torch sees a GPU, else cpu; cuda without a GPU is an error naming `key`."""
    if name not in DEVICES:
        raise GolfError(f"{key} = {name!r}: must be one of {', '.join(DEVICES)}")
    if name == "cuda" and not torch.cuda.is_available():
        raise GolfError(f"{key} = 'cuda' but torch sees no CUDA device")
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(name)


@dataclass(frozen=True)
class Dist:
    rank: int
    local_rank: int
    world_size: int

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def launched_by_torchrun() -> bool:
    return "WORLD_SIZE" in os.environ


def init_dist(device: torch.device) -> tuple[Dist, torch.device]:
    """Join torchrun's process group if it started us; (Dist, this rank's device)."""
    if not launched_by_torchrun():
        return Dist(0, 0, 1), device
    rank, local, world = int(os.environ["RANK"]), int(os.environ["LOCAL_RANK"]), int(os.environ["WORLD_SIZE"])
    if world > 1:
        if device.type == "cuda":
            torch.cuda.set_device(local)
            device = torch.device("cuda", local)
        if not torch.distributed.is_initialized():
            torch.distributed.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return Dist(rank, local, world), device


def dist_on() -> bool:
    return torch.distributed.is_available() and torch.distributed.is_initialized()


def rank_world() -> tuple[int, int]:
    if dist_on():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


def all_reduce_sum(t: torch.Tensor) -> torch.Tensor:
    """Sum `t` over ranks in place (NCCL needs it on the GPU; gloo takes CPU)."""
    if dist_on():
        backend = torch.distributed.get_backend()
        dev = torch.device("cuda", torch.cuda.current_device()) if backend == "nccl" else torch.device("cpu")
        buf = t.to(dev)
        torch.distributed.all_reduce(buf)
        t.copy_(buf.to(t.device))
    return t


def autocast(device: torch.device | str) -> contextlib.AbstractContextManager:
    """bf16 autocast on CUDA; nothing on CPU (fp32 there, and the tests use fp64 models)."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def progress_bar(it: Any, desc: str, on: bool, total: int | None = None) -> Any:
    """`it` wrapped in a tqdm bar on stderr when `on` (rank 0 only) and tqdm is installed."""
    if on and _tqdm is not None and rank_world()[0] == 0:
        return _tqdm(it, desc=desc, total=total, leave=False)
    return it
