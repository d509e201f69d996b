"""train: the GPT with Muon + AdamW, EMA and a wall-clock (or step) schedule, on the tokenized shards.

Writes artifacts/train/model.safetensors (the averaged weights, config in the header),
plots/train.csv (one row per step) and metrics/train.json. With train.nproc_per_node > 1 it runs
itself again under torchrun (DDP); the children read the same resolved sections.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from golf.artifact.model.config import ModelConfig
from golf.train.config import TrainConfig
from stages.common import Timer, finish, stage_command


@stage_command(model_cfg="model", cfg="train")
def train(model_cfg: ModelConfig, cfg: TrainConfig,
          tokens: Annotated[Path, typer.Option(help="Tokenized shards (tokenize's output).")] = Path("data/tokens"),
          out: Annotated[Path, typer.Option(help="Checkpoint to write.")] = Path("artifacts/train/model.safetensors"),
          metrics: Annotated[Path, typer.Option(help="Metrics JSON to write.")] = Path("metrics/train.json"),
          plots: Annotated[Path, typer.Option(help="Per-step CSV to write.")] = Path("plots/train.csv")) -> None:
    """Train the model and save its EMA weights."""
    timer = Timer()
    from golf.artifact.runtime import launched_by_torchrun
    from golf.train import ddp

    if cfg.nproc_per_node > 1 and not launched_by_torchrun():
        from golf.train.launch import relaunch

        relaunch(model_cfg, cfg, {"tokens": tokens, "out": out, "metrics": metrics, "plots": plots})
        return

    import torch

    from golf.artifact.model import GPT
    from golf.artifact.runtime import init_dist, resolve_device
    from golf.data.tokens import TokenData
    from golf.errors import GolfError
    from golf.io.checkpoint import save_model
    from golf.io.metrics import write_csv
    from golf.params import section_dict
    from golf.train.backend import set_backend
    from golf.train.data import check_bos
    from golf.train.loop import seed_everything
    from golf.train.loop import train as run_train

    data = TokenData(tokens)
    if data.vocab_size > model_cfg.vocab_size:
        raise GolfError(f"{tokens}: tokenizer vocab {data.vocab_size} > model.vocab_size = {model_cfg.vocab_size}")
    if len(data.val) - 1 < cfg.train_seq_len:
        raise GolfError(f"{tokens}: val split has {len(data.val)} tokens, fewer than train.train_seq_len + 1 "
                        f"= {cfg.train_seq_len + 1}")
    if model_cfg.doc_masked_attention:
        check_bos(tokens, model_cfg.bos_id, data.bos_id)
    dctx, device = init_dist(resolve_device(cfg.device, "train.device"))
    if device.type == "cuda":
        device = torch.device("cuda", dctx.local_rank)
    seed_everything(cfg.seed)
    model = GPT(model_cfg)
    attention = set_backend(model, cfg.attention_backend, device)
    try:
        res = run_train(model, cfg, data.train, data.val, data.val_bytes, device, dctx, started=timer.t0)
    finally:
        if dctx.enabled:
            ddp.shutdown()
    if not dctx.is_main:
        return
    splits = data.manifest.get("splits", {})
    extra = {"train": section_dict(cfg), "val_bpb": res.val_bpb, "val_loss": res.val_loss, "looping": res.looping,
             "data": {"tokenizer_sha256": data.manifest.get("tokenizer_sha256", ""),
                      "train_tokens": splits.get("train", {}).get("tokens", len(data.train)),
                      "val_tokens": splits.get("val", {}).get("tokens", len(data.val))},
             "eval": {"seq_len": cfg.train_seq_len, "batch_seqs": cfg.val_batch_seqs, "max_tokens": cfg.val_max_tokens}}
    save_model(out, model.cpu(), extra)
    write_csv(plots, res.rows)
    values = {"val_bpb": res.val_bpb, "val_loss": res.val_loss, "val_bpb_raw": res.val_bpb_raw, "steps": res.steps,
              "train_tokens": res.train_tokens, "tokens_per_s": round(res.tokens_per_s, 1),
              "params": sum(p.numel() for p in model.parameters()), "peak_mem_bytes": res.peak_mem_bytes,
              **attention, "compile": res.compiled, "fused_kernels": res.fused_kernels,
              "train_s": round(res.train_s, 3), "first_step_s": round(res.first_step_s, 3),
              "world_size": dctx.world_size}
    if res.mfu is not None:
        values["mfu"] = round(res.mfu, 4)
    values["wall_s"] = timer.s
    finish("train", metrics, values)


command = train

if __name__ == "__main__":  # the torchrun children: python -m stages.train --params <resolved> ...
    typer.run(command)
