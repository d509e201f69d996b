"""The trained model on disk: safetensors weights + header `golf.model` v1 with the model config.

The architecture travels with the weights: `load_model` rebuilds the GPT from the header alone,
never from params.yaml, and loads the weights strictly.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from golf.artifact.model.gpt import GPT
from golf.artifact.model.load import model_from_header
from golf.io.tensors import load_tensors, save_tensors
from golf.params import section_dict

FORMAT, VERSION = "golf.model", 1


def save_model(path: Path, model: GPT, extra: dict[str, Any], keep_train_only: bool = False) -> None:
    """Write `model`'s state_dict with header {format, version, model: config, **extra}.

    The multi-token-prediction head is a training aid: unless `keep_train_only`, its weights are
    left out and the header says mtp_heads = 0, so later stages never quantize or ship it.
    """
    if clash := sorted({"format", "version", "model"} & extra.keys()):
        raise ValueError(f"extra header keys {clash} would overwrite the model header")
    cfg, state = model.cfg, model.state_dict()
    if cfg.mtp_heads and not keep_train_only:
        cfg = dataclasses.replace(cfg, mtp_heads=0)
        state = {k: v for k, v in state.items() if not k.startswith("mtp.")}
    header = {"format": FORMAT, "version": VERSION, "model": section_dict(cfg), **extra}
    save_tensors(Path(path), state, header)


def load_model(path: Path, device: str = "cpu") -> tuple[GPT, dict[str, Any]]:
    """(GPT on `device` in eval mode, header). Looping is on whenever the config has loops."""
    tensors, header = load_tensors(Path(path), FORMAT, VERSION)
    return model_from_header(header, tensors, device, source=str(path)), header
