"""compress: the artifact container and the self-contained train_gpt.py; their bytes are the score.

Reads artifacts/prune_to_budget/qmodel.safetensors, writes artifacts/compress/model.golf (checked
to decode bit-exactly every time) and artifacts/compress/train_gpt.py, and fails if code + model
bytes exceed 16,000,000.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer

from golf.compress.config import CompressConfig
from stages.common import Timer, finish, stage_command

CAP_BYTES = 16_000_000  # the challenge's cap, decimal


@stage_command(cfg="compress")
def compress(
    cfg: CompressConfig,
    qmodel: Annotated[Path, typer.Option(help="Pruned quantized model (golf.qmodel).")] = Path("artifacts/prune_to_budget/qmodel.safetensors"),
    out: Annotated[Path, typer.Option(help="The artifact to write.")] = Path("artifacts/compress/model.golf"),
    script: Annotated[Path, typer.Option(help="The self-contained code to write.")] = Path("artifacts/compress/train_gpt.py"),
    metrics: Annotated[Path, typer.Option(help="Metrics JSON.")] = Path("metrics/compress.json"),
) -> None:
    """Encode the model into our container, bundle the code, check the round trip and the cap."""
    import torch

    from golf.artifact.container import decode, describe
    from golf.compress import bundle, container
    from golf.errors import GolfError
    from golf.io.atomic import atomic_write_bytes, atomic_write_text
    from golf.quant.qmodel import load_qmodel

    timer = Timer()
    tensors, header = load_qmodel(qmodel)
    t0 = time.perf_counter()
    blob = container.encode(tensors, header, cfg)
    encode_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    back, back_header = decode(blob, cfg.workers)
    decode_s = time.perf_counter() - t0
    exact = back_header == header and back.keys() == tensors.keys() and all(
        back[k].dtype == v.dtype and back[k].shape == v.shape
        and torch.equal(back[k].reshape(-1).view(torch.uint8), v.contiguous().reshape(-1).view(torch.uint8))
        for k, v in tensors.items() if v.numel() and v.dtype != torch.bool)
    if not exact:
        raise GolfError(f"{out}: the container round trip is not bit-exact (a golf.compress bug)")
    code = bundle.build_script()
    model_bytes, code_bytes = len(blob), bundle.code_bytes(code)
    total = model_bytes + code_bytes
    if total > CAP_BYTES:
        raise GolfError(f"artifact is {total:,} bytes (model {model_bytes:,} + code {code_bytes:,}), "
                        f"{total - CAP_BYTES:,} over the {CAP_BYTES:,} cap; lower the budget in prune_to_budget")
    atomic_write_bytes(out, blob)
    atomic_write_text(script, code)
    sections = describe(blob)
    finish("compress", metrics, {
        "model_bytes": model_bytes, "code_bytes": code_bytes, "total_bytes": total, "margin_bytes": CAP_BYTES - total,
        "codec": cfg.codec if cfg.codec != "auto" else ",".join(f"{s['name']}={s['codec']}" for s in sections),
        **{f"section_bytes.{s['name']}": s["bytes"] for s in sections},
        "encode_s": round(encode_s, 3), "decode_s": round(decode_s, 3), "wall_s": timer.s})


command = compress
