"""prune_to_budget: zero the cheapest ±1 codes until code + compressed model fit the byte budget.

Reads artifacts/quantize/qmodel.safetensors (and the Hessians when a Hessian-weighted rule asks),
probes sizes with the exact `compress` config and the real code bundle, writes the pruned qmodel
(header adds `prune_to_budget` decisions) and scores it on val. Inputs are checked before the first
probe (golf/prune/run.py).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from golf.compress.config import CompressConfig
from golf.eval.settings import EvalConfig
from golf.prune.config import PruneConfig
from stages.common import Timer, finish, stage_command


@stage_command(cfg="prune_to_budget", compress_cfg="compress", ev="eval")
def prune_to_budget(
    cfg: PruneConfig,
    compress_cfg: CompressConfig,
    ev: EvalConfig,
    qmodel: Annotated[Path, typer.Option(help="Quantized model (golf.qmodel).")] = Path("artifacts/quantize/qmodel.safetensors"),
    hessians: Annotated[Path, typer.Option(help="Hessians, for hessian_weighted / hessian_two_four.")] = Path("artifacts/hessian_calibrate/hessians.safetensors"),
    tokens: Annotated[Path, typer.Option(help="Tokenized data (val split for the eval).")] = Path("data/tokens"),
    out: Annotated[Path, typer.Option(help="Pruned quantized model to write.")] = Path("artifacts/prune_to_budget/qmodel.safetensors"),
    metrics: Annotated[Path, typer.Option(help="Metrics JSON.")] = Path("metrics/prune_to_budget.json"),
) -> None:
    """Prune the fewest codes that make code + compressed model fit the budget."""
    from golf.prune.run import prune_qmodel

    timer = Timer()
    values = prune_qmodel(cfg, compress_cfg, ev, qmodel, hessians, tokens, out)
    finish("prune_to_budget", metrics, {**values, "wall_s": timer.s})


command = prune_to_budget
