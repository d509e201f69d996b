"""hessian_calibrate: H = XᵀX for every matrix GPTQ will quantize, in the graph eval runs.

Reads artifacts/train/model.safetensors (+ data/tokens for the train windows); writes
artifacts/hessian_calibrate/hessians.safetensors (format golf.hessians v1, one fp32 (in, in)
matrix per weight name, header with the checkpoint's sha256) and metrics/hessian_calibrate.json.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from golf.quant.config import HessianCalibrateConfig
from stages.common import Timer, finish, stage_command


@stage_command(cfg="hessian_calibrate")
def hessian_calibrate(
    cfg: HessianCalibrateConfig,
    checkpoint: Annotated[Path, typer.Option(help="Trained model (golf.artifact.model).")] = Path("artifacts/train/model.safetensors"),
    tokens: Annotated[Path, typer.Option(help="Tokenized data (train split for calibration).")] = Path("data/tokens"),
    out: Annotated[Path, typer.Option(help="Hessians file to write.")] = Path("artifacts/hessian_calibrate/hessians.safetensors"),
    metrics: Annotated[Path, typer.Option(help="Metrics JSON.")] = Path("metrics/hessian_calibrate.json"),
) -> None:
    """Collect GPTQ Hessians from train windows or the model's own samples."""
    from golf.artifact.runtime import resolve_device
    from golf.data.tokens import TokenData
    from golf.errors import GolfError
    from golf.io.checkpoint import load_model
    from golf.io.metrics import clear_clock, write_clock
    from golf.io.tensors import save_tensors
    from golf.params import section_dict
    from golf.quant import hessian

    timer = Timer()
    device = resolve_device(cfg.device, "hessian_calibrate.device")
    model, header = load_model(checkpoint, str(device))
    hessian.prepare_eval(model)
    data = TokenData(tokens)
    if data.vocab_size != model.cfg.vocab_size:
        raise GolfError(f"{tokens}: vocab_size {data.vocab_size}, the checkpoint's is {model.cfg.vocab_size}")
    shape = (cfg.batches, cfg.batch_seqs, cfg.seq_len, cfg.seed)
    if cfg.source == "train":
        batches = hessian.train_batches(data.train, *shape, device=device)
    else:
        batches = hessian.self_generated_batches(model, *shape[:3], cfg.temperature, cfg.seed, data.bos_id, device)
    t_collect = Timer()
    H, n_tokens = hessian.collect_hessians(model, batches, progress=True, total=cfg.batches)
    collect_s = t_collect.s
    clear_clock(out)
    save_tensors(out, H, {"format": hessian.FORMAT, "version": hessian.VERSION, "source": cfg.source,
                          "batches": cfg.batches, "tokens": n_tokens, "model_sha256": hessian.file_sha256(checkpoint),
                          "hessian_calibrate": section_dict(cfg)})
    write_clock(out, {"collect_s": round(collect_s, 3)})  # ttt_eval's compliance verdict (golf/compliance.py)
    finish("hessian_calibrate", metrics, {"hessians": len(H), "tokens": n_tokens, "collect_s": collect_s,
                                                "wall_s": timer.s})


command = hessian_calibrate
