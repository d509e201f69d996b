"""The `tokenize` section of params.yaml."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True, kw_only=True)
class TokenizeConfig:
    source: Literal["sentencepiece", "shards"]
    """sentencepiece = train a BPE tokenizer on data/corpus and write shards; shards = take the
    challenge's existing fineweb_{train,val}_*.bin and tokenizer as they are."""
    vocab_size: int
    """Tokenizer vocabulary size in pieces (< 65,536: tokens are stored as uint16)."""
    val_rule: Literal["hash", "first"]
    """How val documents are chosen, by document never by byte: hash = int(sha1(id), 16) % 100 <
    val_percent; first = the first val_docs eligible documents in file order (the challenge's rule)."""
    val_percent: int
    """Percent of eligible documents in val (val_rule = hash only)."""
    val_docs: int
    """Number of val documents (val_rule = first only)."""
    val_sources: tuple[str, ...]
    """Corpus `source` values a val document may have (empty = any); mix keeps val to the news."""
    tokenizer_train_docs: int
    """Train documents (in file order) the tokenizer is trained on (0 = all train documents; val
    documents never)."""
    character_coverage: float
    """SentencePiece character_coverage (fraction of characters covered by pieces; rest byte-fallback)."""
    shard_tokens: int
    """Tokens per shard file (documents may straddle shards)."""
    shards_dir: str
    """Folder with fineweb_train_*.bin / fineweb_val_*.bin (source = shards only; "" otherwise)."""
    tokenizer_path: str
    """SentencePiece .model that made those shards (source = shards only; "" otherwise)."""

    def __post_init__(self) -> None:
        if not 260 < self.vocab_size < 65536:
            raise ValueError(f"tokenize.vocab_size = {self.vocab_size}: must be in 261..65535 "
                             "(4 specials + 256 byte pieces + merges; uint16 storage)")
        if self.val_rule == "hash" and not 0 < self.val_percent < 100:
            raise ValueError(f"tokenize.val_percent = {self.val_percent}: val_rule = hash needs 1..99")
        if self.val_rule == "first" and self.val_docs <= 0:
            raise ValueError(f"tokenize.val_docs = {self.val_docs}: val_rule = first needs > 0")
        if self.tokenizer_train_docs < 0:
            raise ValueError(f"tokenize.tokenizer_train_docs = {self.tokenizer_train_docs}: must be >= 0")
        if not 0.0 < self.character_coverage <= 1.0:
            raise ValueError(f"tokenize.character_coverage = {self.character_coverage}: must be in (0, 1]")
        if self.shard_tokens <= 0:
            raise ValueError(f"tokenize.shard_tokens = {self.shard_tokens}: must be > 0")
        if self.source == "shards" and not (self.shards_dir and self.tokenizer_path):
            raise ValueError("tokenize.source = shards needs tokenize.shards_dir and tokenize.tokenizer_path")
