"""data/corpus on disk: docs.jsonl ({"id", "source", "text"} per line) and manifest.json.

The one format between `corpus` (which writes it) and `tokenize` (which reads it).
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from pathlib import Path
from typing import Iterable, Iterator

from golf.errors import GolfError
from golf.io.atomic import atomic_write_text

FORMAT = "golf.corpus"
VERSION = 1


def read_docs(path: Path) -> Iterator[dict]:
    """Each document of a docs.jsonl; a bad line is a GolfError naming the file and line number."""
    path = Path(path)
    if not path.is_file():
        raise GolfError(f"{path}: corpus file not found (run `golf corpus`)")
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                doc = json.loads(line)
            except json.JSONDecodeError as e:
                raise GolfError(f"{path}:{lineno}: not valid JSON ({e.msg})") from None
            if not isinstance(doc, dict) or not isinstance(doc.get("text"), str):
                raise GolfError(f"{path}:{lineno}: expected an object with a string \"text\" field")
            yield doc


def write_corpus(out_dir: Path, docs: Iterable[dict], source: str) -> dict:
    """Write docs.jsonl + manifest.json into `out_dir` (a fresh folder); return the manifest."""
    path = Path(out_dir) / "docs.jsonl"
    sha, counts, nbytes = hashlib.sha256(), Counter(), Counter()
    with open(path, "wb") as f:
        for doc in docs:
            line = (json.dumps({"id": doc["id"], "source": doc["source"], "text": doc["text"]},
                               ensure_ascii=False) + "\n").encode("utf-8")
            f.write(line)
            sha.update(line)
            counts[doc["source"]] += 1
            nbytes[doc["source"]] += len(doc["text"].encode("utf-8"))
    if not counts:
        raise GolfError(f"corpus.source = {source}: no documents left (empty corpus)")
    manifest = {"format": FORMAT, "version": VERSION, "source": source,
                "docs": sum(counts.values()), "bytes": sum(nbytes.values()), "sha256": sha.hexdigest(),
                "sources": {k: {"docs": counts[k], "bytes": nbytes[k]} for k in sorted(counts)}}
    atomic_write_text(Path(out_dir) / "manifest.json", json.dumps(manifest, indent=2) + "\n")
    return manifest
