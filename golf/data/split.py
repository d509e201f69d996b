"""The val split: by whole document, deterministic, never by byte (a byte split leaks topic into val)."""

from __future__ import annotations

import hashlib

from golf.data.config import TokenizeConfig


class ValSplit:
    """Call once per document in file order; True means val.

    hash:  int(sha1(id), 16) % 100 < val_percent (stable under reordering and additions;
           corpus.md: 5% of the news gives 298 docs);
    first: the first val_docs eligible documents (the challenge's rule for docs_selected.jsonl).
    Only documents whose source is in val_sources (empty = any) are eligible.
    """

    def __init__(self, cfg: TokenizeConfig) -> None:
        self.cfg = cfg
        self.taken = 0

    def __call__(self, doc_id: str, source: str) -> bool:
        cfg = self.cfg
        if cfg.val_sources and source not in cfg.val_sources:
            return False
        if cfg.val_rule == "hash":
            return int(hashlib.sha1(doc_id.encode("utf-8")).hexdigest(), 16) % 100 < cfg.val_percent
        if self.taken < cfg.val_docs:
            self.taken += 1
            return True
        return False
