"""The trained model on disk: safetensors weights + header `golf.model` v1 with the model config.

The architecture travels with the weights: `load_model` rebuilds the GPT from the header alone,
never from params.yaml, and loads the weights strictly.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from golf.errors import GolfError
from golf.io.tensors import load_tensors, save_tensors
from golf.model.attention import select_backend
from golf.model.config import ModelConfig
from golf.model.gpt import GPT
from golf.params import build_section, section_dict

FORMAT, VERSION = "golf.model", 1


def save_model(path: Path, model: GPT, extra: dict[str, Any]) -> None:
    """Write `model`'s state_dict with header {format, version, model: config, **extra}."""
    if clash := sorted({"format", "version", "model"} & extra.keys()):
        raise ValueError(f"extra header keys {clash} would overwrite the model header")
    header = {"format": FORMAT, "version": VERSION, "model": section_dict(model.cfg), **extra}
    save_tensors(Path(path), model.state_dict(), header)


def load_model(path: Path, device: str = "cpu") -> tuple[GPT, dict[str, Any]]:
    """(GPT on `device` in eval mode, header). Looping is on whenever the config has loops."""
    tensors, header = load_tensors(Path(path), FORMAT, VERSION)
    if not isinstance(header.get("model"), dict):
        raise GolfError(f"{path}: header has no 'model' section")
    cfg = build_section(header["model"], "model", ModelConfig, source=str(path))
    model = GPT(cfg)
    try:
        model.load_state_dict(tensors, strict=True)
    except RuntimeError as e:
        raise GolfError(f"{path}: weights do not match the header's model config: "
                        f"{' '.join(str(e).split())[:500]}") from None
    model = model.to(device).eval()
    model.looping = cfg.num_loops > 0
    model.set_attention_backend(select_backend(device))
    return model, header
