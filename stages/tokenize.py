"""golf tokenize: data/corpus -> data/tokens (tokenizer, challenge-format shards, val byte sidecar)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from golf.data.config import TokenizeConfig
from stages.common import Timer, finish, stage_command


@stage_command(cfg="tokenize")
def tokenize(
    cfg: TokenizeConfig,
    corpus: Annotated[Path, typer.Option(help="Corpus folder from `golf corpus` (docs.jsonl).")] = Path("data/corpus"),
    out: Annotated[Path, typer.Option(help="Output folder, replaced whole on success.")] = Path("data/tokens"),
    metrics: Annotated[Path, typer.Option(help="Metrics JSON.")] = Path("metrics/tokenize.json"),
) -> None:
    """SentencePiece BPE on the train docs (optionally CaseOps text), document-level val split, shards +
    a val byte sidecar whose total is proven (or imported shards with a proven sidecar)."""
    from golf.data.imported import import_shards
    from golf.data.prepare import build_tokens

    timer = Timer()
    if cfg.source == "shards":
        values = import_shards(cfg, out)
    else:
        values = build_tokens(cfg, corpus / "docs.jsonl", out)
    finish("tokenize", metrics, {**values, "wall_s": timer.s})


command = tokenize
