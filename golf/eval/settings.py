"""EvalConfig (the `eval` section): the check evals after training, in quantize and prune_to_budget.

Both stages score a plain (non-sliding) val BPB with these settings, so their numbers compare with
each other and, when they equal the eval train recorded in the checkpoint header, with the float
model's own val_bpb without scoring it again. Each value has one meaning; the score itself (sliding
windows, TTT) has its own settings in the `ttt_eval` section.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, kw_only=True)
class EvalConfig:
    seq_len: int
    """Tokens per eval window."""
    batch_seqs: int
    """Windows per forward batch."""
    max_tokens: int
    """Val tokens scored (a prefix of the val split); 0 = the whole val split."""

    def __post_init__(self) -> None:
        for key in ("seq_len", "batch_seqs"):
            if getattr(self, key) < 1:
                raise ValueError(f"eval.{key} = {getattr(self, key)}: must be >= 1")
        if self.max_tokens < 0:
            raise ValueError(f"eval.max_tokens = {self.max_tokens}: must be >= 0 (0 = the whole val split)")


def same_as_checkpoint(ev: EvalConfig, header: dict[str, Any]) -> bool:
    """Whether the checkpoint's recorded val_bpb was scored with these settings (its header's "eval")."""
    rec = header.get("eval")
    return (isinstance(rec, dict) and isinstance(header.get("val_bpb"), (int, float))
            and rec.get("seq_len") == ev.seq_len and rec.get("max_tokens") == ev.max_tokens)
