"""Distributed setup: one code path for 1 and N processes.

`golf train` with train.nproc_per_node > 1 re-launches itself under torchrun (see `relaunch_argv`);
each child finds WORLD_SIZE/RANK/LOCAL_RANK in its environment and `init` joins the process group
(nccl on CUDA, gloo on CPU). Gradients are averaged by one flat all-reduce per step
(`all_reduce_grads`) rather than a DDP wrapper: it composes with grad accumulation and
torch.compile without no_sync or optimize_ddp settings, and Muon then runs identically on every rank.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


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


def init(device_type: str) -> Dist:
    """Join the process group if torchrun started us (nccl on CUDA, gloo on CPU); else a 1-process Dist."""
    if not launched_by_torchrun():
        return Dist(0, 0, 1)
    rank, local, world = int(os.environ["RANK"]), int(os.environ["LOCAL_RANK"]), int(os.environ["WORLD_SIZE"])
    if world > 1 and not dist.is_initialized():
        if device_type == "cuda":
            torch.cuda.set_device(local)
        dist.init_process_group("nccl" if device_type == "cuda" else "gloo")
    return Dist(rank, local, world)


def shutdown() -> None:
    if dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def all_reduce_grads(params: list[torch.nn.Parameter], world_size: int) -> None:
    """Average the gradients over ranks with one flat all-reduce (gloo has no AVG: SUM then divide)."""
    if world_size <= 1:
        return
    grads = [p.grad for p in params if p.grad is not None]
    flat = torch.cat([g.reshape(-1).float() for g in grads])
    dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    flat.div_(world_size)
    offset = 0
    for g in grads:
        n = g.numel()
        g.copy_(flat[offset:offset + n].view_as(g))
        offset += n


def all_reduce_sum(values: list[float], device: torch.device, world_size: int) -> list[float]:
    """Sum a few floats over ranks (the step's loss and stop flags); identity in one process."""
    if world_size <= 1:
        return values
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t.tolist()


def all_reduce_max(value: float, device: torch.device, world_size: int) -> float:
    """The largest of one float over ranks (the train clock: the slowest rank decides the stop)."""
    if world_size <= 1:
        return value
    t = torch.tensor([value], dtype=torch.float64, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return float(t.item())


def torchrun_argv(nproc: int, module_args: list[str]) -> list[str]:
    """The command that runs `python -m <module_args...>` in nproc processes on this node."""
    import sys

    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
            "-m", *module_args]


def child_env() -> dict[str, str]:
    """The launched processes' environment: NVLink multicast (NVLS) off unless the user set it."""
    env = dict(os.environ)
    env.setdefault("NCCL_NVLS_ENABLE", "0")
    return env
