"""The attention kernel training runs, and the record of how it was chosen.

FA4's custom ops (golf/kernels/fa4.py) are registered as the "fa4" backend whenever flash-attn-4
imports; `train.attention_backend = auto` then takes the first usable backend of
attention.backend_order (fa4 > fa3 > fa2 > sdpa on Hopper; only fa4 > sdpa can mask documents).
The train metrics keep the order tried and the pick, so a run without FA4 says so; so does one
line on stderr, as a silent fallback on a lent GPU passed for a much slower golf (BENCHMARKS.md,
sixth session).
"""

from __future__ import annotations

import sys

import torch

from golf.artifact.model.attention import backend_order, select_backend
from golf.errors import GolfError
from golf.kernels import fa4


def set_backend(model: torch.nn.Module, requested: str, device: torch.device) -> dict[str, str]:
    """Give `model` its attention backend; {"attention_backend", "attention_order"} for the metrics."""
    fa4.register()
    doc_masked = model.cfg.doc_masked_attention
    backend = select_backend(device, doc_masked) if requested == "auto" else requested
    try:
        model.set_attention_backend(backend)
    except (RuntimeError, ValueError) as e:  # not importable here, or cannot mask documents
        raise GolfError(f"train.attention_backend = {backend!r}: {e}") from None
    order = backend_order(device, doc_masked) if requested == "auto" else [backend]
    if order[0] == "fa4" and backend != "fa4":
        print(f"train: attention_backend auto took {backend}, not fa4: {fa4.unavailable_reason()}", file=sys.stderr)
    return {"attention_backend": backend, "attention_order": " > ".join(order)}
