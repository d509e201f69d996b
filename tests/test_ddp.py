"""DDP on CPU (gloo, 2 processes): every rank ends with the same weights, equal to a 1-process run
on the same global batches; and `golf train` relaunches itself under torchrun."""

from __future__ import annotations

import os
import socket

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from test_train import TinyLM, corpus, tcfg  # noqa: E402  (tests/ is on sys.path under pytest)

from golf.artifact.runtime import Dist
from golf.train import ddp
from golf.train.loop import train

STEPS = 6


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run(dctx: Dist) -> dict[str, torch.Tensor]:
    tr, _ = corpus(seed=1)
    va, vb = corpus(700, seed=2)
    torch.manual_seed(0)
    m = TinyLM()
    train(m, tcfg(iterations=STEPS, warmup_steps=1, val_every=3), tr, va, vb, torch.device("cpu"), dctx,
          progress=False)
    return {k: v.clone() for k, v in m.state_dict().items()}


def _worker(rank: int, world: int, port: int, out_dir: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        state = _run(Dist(rank, rank, world))
        torch.save(state, os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


def test_two_rank_gloo_gives_identical_weights(tmp_path):
    mp.spawn(_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)
    r0 = torch.load(tmp_path / "rank0.pt")
    r1 = torch.load(tmp_path / "rank1.pt")
    solo = _run(Dist(0, 0, 1))
    for k in r0:
        assert torch.equal(r0[k], r1[k]), k
        # Same global batches, averaged grads: the 1-process run matches up to summation order.
        assert torch.allclose(r0[k], solo[k], atol=1e-4), (k, (r0[k] - solo[k]).abs().max())


def test_grad_all_reduce_is_identity_alone():
    p = torch.nn.Parameter(torch.ones(3))
    p.grad = torch.full((3,), 2.0)
    ddp.all_reduce_grads([p], 1)
    assert torch.equal(p.grad, torch.full((3,), 2.0))


def test_torchrun_argv_and_env(monkeypatch):
    monkeypatch.delenv("NCCL_NVLS_ENABLE", raising=False)
    argv = ddp.torchrun_argv(4, ["stages.train", "--params", "p.yaml"])
    assert argv[1:] == ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node=4", "-m", "stages.train",
                        "--params", "p.yaml"]
    assert ddp.child_env()["NCCL_NVLS_ENABLE"] == "0"
    monkeypatch.setenv("NCCL_NVLS_ENABLE", "1")
    assert ddp.child_env()["NCCL_NVLS_ENABLE"] == "1"


def test_golf_train_relaunches_under_torchrun(tmp_path, monkeypatch):
    """nproc_per_node 2 on CPU: `golf train` runs itself under torchrun (gloo); rank 0 writes the files."""
    import json

    from test_train import invoke, write_params, write_tokens

    monkeypatch.delenv("WORLD_SIZE", raising=False)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    write_tokens(tmp_path / "tokens")
    write_params(tmp_path / "params.yaml", nproc_per_node=2, iterations=4, val_every=0, warmup_steps=1)
    r = invoke(tmp_path)
    assert r.exit_code == 0, r.output
    m = json.loads((tmp_path / "metrics/train.json").read_text())["train"]
    assert m["world_size"] == 2 and m["steps"] == 4
    assert (tmp_path / "artifacts/train/model.safetensors").is_file()
    assert not list((tmp_path / "artifacts/train").glob(".train-params*"))
