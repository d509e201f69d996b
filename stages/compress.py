"""compress: the artifact container and the self-contained train_gpt.py; their bytes are the score.

Reads artifacts/prune_to_budget/qmodel.safetensors and writes artifacts/compress/{model.golf,
train_gpt.py} as one unit (golf/compress/run.py: checked to decode bit-exactly, failing if code +
model bytes exceed the 16,000,000-byte cap).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from golf.compress.config import CompressConfig
from stages.common import Timer, finish, stage_command


@stage_command(cfg="compress")
def compress(
    cfg: CompressConfig,
    qmodel: Annotated[Path, typer.Option(help="Pruned quantized model (golf.qmodel).")] = Path("artifacts/prune_to_budget/qmodel.safetensors"),
    out_dir: Annotated[Path, typer.Option(help="Folder of its own for model.golf and train_gpt.py (replaced whole).")] = Path("artifacts/compress"),
    metrics: Annotated[Path, typer.Option(help="Metrics JSON.")] = Path("metrics/compress.json"),
) -> None:
    """Encode the model into our container, bundle the code, check the round trip and the cap."""
    from golf.compress.run import compress_qmodel
    from golf.io.metrics import timings_path

    timer = Timer()
    values = compress_qmodel(qmodel, out_dir, cfg, replaces=[metrics, timings_path(metrics)])
    finish("compress", metrics, {**values, "wall_s": timer.s})


command = compress
