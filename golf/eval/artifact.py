"""The scored model comes from the compressed artifact alone (never the training checkpoint).

model.golf -> golf.artifact.container.load_artifact -> golf.artifact.dequant.dequantize -> a GPT
rebuilt from the header's model config, looping on whenever the config has loops (§7.1).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from golf.errors import GolfError


def load_artifact_model(path: Path, device: torch.device) -> tuple[torch.nn.Module, dict[str, Any]]:
    """(GPT on `device` in eval mode, artifact header); GolfError for anything the loaders refuse."""
    from golf.artifact.container import load_artifact
    from golf.artifact.model.load import model_from_header
    from golf.artifact.dequant import dequantize

    tensors, header = load_artifact(Path(path))
    if not isinstance(header.get("model"), dict):
        raise GolfError(f"{path}: artifact header has no 'model' section")
    return model_from_header(header, dequantize(tensors, header), device, source=str(path)), header


def recorded(header: Any, key: str) -> str:
    """The first value of `key` anywhere in a nested header ("" when it was not recorded)."""
    if isinstance(header, dict):
        if isinstance(header.get(key), str):
            return header[key]
        for v in header.values():
            if found := recorded(v, key):
                return found
    return ""


def check_data(path: Path, header: dict[str, Any], manifest: dict[str, Any], val_tokens: np.ndarray,
               vocab_size: int) -> None:
    """The val shards were made by the tokenizer the model was trained on and fit its vocabulary."""
    want = recorded(header, "tokenizer_sha256")
    have = manifest.get("tokenizer_sha256", "")
    if want and have and want != have:
        raise GolfError(f"{path}: the model was trained with tokenizer sha256 {want[:12]}..., but the val "
                        f"shards were made with {have[:12]}... (re-tokenize or use the matching data)")
    top = int(val_tokens.max(initial=0))
    if top >= vocab_size:
        raise GolfError(f"val shards hold token id {top}, but the model's vocabulary has {vocab_size} ids "
                        "(shards from another tokenizer?)")
