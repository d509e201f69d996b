"""Re-launch `golf train` under torchrun when train.nproc_per_node > 1.

The parent writes the resolved `model` and `train` sections (flags already applied) to a temp
params file beside the checkpoint and runs

    python -m torch.distributed.run --standalone --nproc_per_node N -m stages.train --params <tmp> <paths>

so every child reads exactly the configuration the parent resolved; the children see WORLD_SIZE and
do not launch again. NCCL_NVLS_ENABLE=0 is set in their environment unless the user set it.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import yaml

from golf.errors import GolfError
from golf.params import section_dict
from golf.train import ddp


def relaunch(model_cfg: Any, cfg: Any, paths: dict[str, Path]) -> None:
    out_dir = Path(paths["out"]).parent
    out_dir.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=out_dir, prefix=".train-params.", suffix=".yaml")
    try:
        with os.fdopen(fd, "w") as f:
            yaml.safe_dump({"model": section_dict(model_cfg), "train": section_dict(cfg)}, f, sort_keys=False)
        args = ["stages.train", "--params", tmp]
        for name, path in paths.items():
            args += [f"--{name}", str(path)]
        argv = ddp.torchrun_argv(cfg.nproc_per_node, args)
        rc = subprocess.run(argv, env=ddp.child_env()).returncode
    finally:
        Path(tmp).unlink(missing_ok=True)
    if rc != 0:
        raise GolfError(f"torchrun with {cfg.nproc_per_node} processes exited with status {rc} "
                        "(see the rank errors above)")
