"""A GPT rebuilt from a file's header: the model config travels with the weights (never params.yaml)."""

from __future__ import annotations

from typing import Any

from golf.artifact.model.attention import select_backend
from golf.artifact.model.config import ModelConfig
from golf.artifact.model.gpt import GPT
from golf.artifact.typed import build_section
from golf.errors import GolfError


def model_from_header(header: dict[str, Any], state: dict[str, Any], device: Any = "cpu",
                      source: str = "header") -> GPT:
    """The GPT the header's model config describes, with `state` loaded strictly, on `device` in
    eval mode, looping on whenever the config has loops (the graph every later stage runs), on the
    fastest attention backend here that can run it (document masking: a registered fa4, else SDPA)."""
    if not isinstance(header.get("model"), dict):
        raise GolfError(f"{source}: header has no 'model' section")
    cfg = build_section(header["model"], "model", ModelConfig, source=source)
    held = sum(int(t.numel()) for t in state.values())
    if cfg.weights_floor() > held:  # refused before GPT(cfg) allocates what a crafted header asks for
        raise GolfError(f"{source}: the header's model config needs at least {cfg.weights_floor():,} weights, "
                        f"the file holds {held:,}")
    model = GPT(cfg)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise GolfError(f"{source}: weights do not match the header's model config: "
                        f"{' '.join(str(e).split())[:500]}") from None
    model = model.to(device).eval()
    model.looping = cfg.num_loops > 0
    model.set_attention_backend(select_backend(device, cfg.doc_masked_attention))
    return model
