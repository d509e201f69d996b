"""Distributed setup: one code path for 1 and N processes.

`golf train` with train.nproc_per_node > 1 re-launches itself under torchrun (see `torchrun_argv`);
each child finds WORLD_SIZE/RANK/LOCAL_RANK in its environment and golf.artifact.runtime.init_dist
joins the process group (nccl on CUDA, gloo on CPU). Gradients are averaged by one flat all-reduce per step
(`all_reduce_grads`) rather than a DDP wrapper: it composes with grad accumulation and
torch.compile without no_sync or optimize_ddp settings, and Muon then runs identically on every rank.
"""

from __future__ import annotations

import os

import torch
import torch.distributed as dist


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
