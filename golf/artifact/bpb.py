"""Byte accounting for BPB: the canonical LUTs (docs/techniques.md §1.6) and the val byte sidecar.

bytes(t) = base_bytes[y_t] + (has_leading_space[y_t] and not is_boundary[x_t]) for target y_t
after x_t. BOS is a boundary with 0 bytes, so the first piece of a document never pays for a
space (add_dummy_prefix is off and the text is stripped, so there is none to pay for).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from golf.errors import GolfError

SPACE = "\u2581"  # ▁, SentencePiece's whitespace marker
CASEOPS_OPERATORS = "\ue001\ue002\ue003\ue004"  # golf/data/caseops.py OPERATORS (a test holds them equal)
RULES = ("lut", "caseops")  # data/tokens/manifest.json "val_bytes_rule" values with a per-token rule


@dataclass(frozen=True)
class Luts:
    base_bytes: np.ndarray         # int16[V]: UTF-8 bytes of the piece without its leading ▁
    has_leading_space: np.ndarray  # bool[V]: the piece starts with ▁
    is_boundary: np.ndarray        # bool[V]: control / unknown / unused ids, and ids past the tokenizer


def build_luts(sp: Any, size: int | None = None, zero_ids: Any = ()) -> Luts:
    """The three tables over ids 0..max(sp vocab, size)-1.

    `zero_ids`: pieces that stand for no original text (the CaseOps operators) cost 0 bytes;
    they are not boundaries, so the piece after one still pays for its leading space."""
    n = sp.get_piece_size()
    size = max(n, size or 0)
    base = np.zeros(size, np.int16)
    lead = np.zeros(size, bool)
    boundary = np.ones(size, bool)
    for t in range(n):
        if sp.is_control(t) or sp.is_unknown(t) or sp.is_unused(t):
            continue
        boundary[t] = False
        if sp.is_byte(t):
            base[t] = 1  # a byte-fallback piece stands for exactly one byte, not len("<0xXX>")
            continue
        piece = sp.id_to_piece(t)
        if piece.startswith(SPACE):
            lead[t] = True
            piece = piece[1:]
        base[t] = len(piece.encode("utf-8"))
    for t in zero_ids:
        base[t], lead[t] = 0, False
    return Luts(base, lead, boundary)


def rule_luts(sp: Any, rule: str, size: int | None = None) -> Luts:
    """The LUTs of a sidecar's per-token rule: lut = the canonical rule; caseops = the same with
    the four operator pieces at 0 bytes (the original text has no operators)."""
    if rule == "lut":
        return build_luts(sp, size)
    if rule == "caseops":
        ids = [sp.piece_to_id(c) for c in CASEOPS_OPERATORS]
        if sp.unk_id() in ids:
            raise GolfError("the tokenizer has no CaseOps operator pieces U+E001..U+E004, "
                            "but the val byte rule is caseops")
        return build_luts(sp, size, ids)
    raise GolfError(f"val byte rule {rule!r}: expected one of {RULES}")


def manifest_luts(sp: Any, manifest: dict) -> Luts | None:
    """The LUTs of the rule data/tokens/manifest.json says the sidecar follows token by token;
    None when it was proven per document only ("" : an imported raw-bytes sidecar). A manifest
    from before CaseOps has no rule: its sidecar is the LUT rule."""
    rule = manifest.get("val_bytes_rule", "lut")
    return rule_luts(sp, rule, manifest["vocab_size"]) if rule else None


def target_bytes(prev_ids: Any, target_ids: Any, luts: Luts) -> Any:
    """Bytes charged to each target (numpy in -> int64 numpy; torch in -> int64 torch, same device)."""
    if isinstance(target_ids, np.ndarray) or not hasattr(target_ids, "device"):
        prev, tgt = np.asarray(prev_ids, np.int64), np.asarray(target_ids, np.int64)
        return luts.base_bytes[tgt].astype(np.int64) + (luts.has_leading_space[tgt] & ~luts.is_boundary[prev])
    import torch

    dev = target_ids.device
    base = torch.as_tensor(luts.base_bytes, device=dev).long()
    lead = torch.as_tensor(luts.has_leading_space, device=dev)
    bound = torch.as_tensor(luts.is_boundary, device=dev)
    prev, tgt = prev_ids.long(), target_ids.long()
    return base[tgt] + (lead[tgt] & ~bound[prev]).long()


def sidecar(tokens: np.ndarray, luts: Luts, bos_id: int) -> np.ndarray:
    """uint16 bytes per position of a token stream that starts with BOS (position 0 gets 0)."""
    tokens = np.asarray(tokens, np.int64)
    prev = np.concatenate([[bos_id], tokens[:-1]])
    out = target_bytes(prev, tokens, luts)
    out[tokens == bos_id] = 0
    return out.astype(np.uint16)
