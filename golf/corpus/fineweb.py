"""The challenge's own document selection (FineWeb), read from the Hugging Face hub when possible.

Streams the first `n` lines of docs_selected.jsonl (the first 50,000 are the challenge's val set)
through huggingface_hub's file system, so nothing else is downloaded. Without huggingface_hub or
without network this is one clear GolfError, never a hang (the read runs under a timeout).
Not exercised offline: the hub is unreachable from this workbench.
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Iterator

from golf.errors import GolfError

REPO = "willdepueoai/parameter-golf"  # dataset repo of the challenge's sp1024 export
FILE = "datasets/docs_selected.jsonl"


def fineweb_docs(n: int, cache: Path, timeout_s: int) -> Iterator[dict]:
    """The first `n` documents, cached in `cache/docs_first_<n>.jsonl` after the first read."""
    cached = Path(cache) / f"docs_first_{n}.jsonl"
    if not cached.is_file():
        _download(n, cached, timeout_s)
    with open(cached, encoding="utf-8") as f:
        for i, line in enumerate(f):
            yield {"id": f"fineweb-{i:09d}", "source": "fineweb", "text": json.loads(line)["text"]}


def _download(n: int, dest: Path, timeout_s: int) -> None:
    try:
        from huggingface_hub import HfFileSystem
    except ImportError:
        raise GolfError("corpus.source = fineweb needs huggingface_hub (pip install huggingface_hub) "
                        "and network access; or download docs_selected.jsonl yourself and use "
                        "source = jsonl") from None
    os.environ.setdefault("HF_HUB_ETAG_TIMEOUT", str(timeout_s))
    os.environ.setdefault("HF_HUB_DOWNLOAD_TIMEOUT", str(timeout_s))

    def read() -> list[str]:
        lines = []
        with HfFileSystem().open(f"datasets/{REPO}/{FILE}", "r", encoding="utf-8") as f:
            for line in f:
                lines.append(line)
                if len(lines) == n:
                    break
        return lines

    # A daemon thread: a hung connection cannot keep the process alive after the timeout.
    result: dict = {}

    def target() -> None:
        try:
            result["lines"] = read()
        except Exception as e:  # network and hub errors come in many types
            result["error"] = e

    t = threading.Thread(target=target, daemon=True)
    t.start()
    t.join(timeout_s)
    if t.is_alive():
        raise GolfError(f"corpus fineweb: reading {REPO}/{FILE} took longer than {timeout_s} s (no network?)")
    if "error" in result:
        e = result["error"]
        first = str(e).splitlines()[0] if str(e) else ""
        raise GolfError(f"corpus fineweb: cannot read {REPO}/{FILE}: {type(e).__name__}: {first}")
    lines = result["lines"]
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_suffix(".tmp")
    tmp.write_text("".join(lines), encoding="utf-8")
    os.replace(tmp, dest)
