"""The bar a trained model must beat: `xz -9e` bits per byte of the val documents' text.

    python bench/xz_baseline.py [--params params.yaml] [--corpus data/corpus/docs.jsonl]

Selects val exactly as `golf tokenize` does (golf.data.split), joins the val documents with a
newline and compresses with LZMA preset 9 | EXTREME (what `xz -9e` runs). Prints bits/byte over
the raw UTF-8 bytes (corpus.md: ~2.05 on the whole news text).
"""

from __future__ import annotations

import argparse
import lzma
from pathlib import Path

from golf.corpus.docs import read_docs
from golf.data.config import TokenizeConfig
from golf.data.split import ValSplit
from golf.params import load_section


def xz_bits_per_byte(data: bytes) -> float:
    return 8 * len(lzma.compress(data, preset=9 | lzma.PRESET_EXTREME)) / len(data)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--params", type=Path, default=Path("params.yaml"))
    ap.add_argument("--corpus", type=Path, default=Path("data/corpus/docs.jsonl"))
    args = ap.parse_args()
    cfg = load_section(args.params, "tokenize", TokenizeConfig)
    is_val = ValSplit(cfg)
    val, train = [], []
    for d in read_docs(args.corpus):
        (val if is_val(d["id"], d["source"]) else train).append(d["text"])
    for name, docs in (("val", val), ("all", train + val)):
        data = "\n".join(docs).encode("utf-8")
        print(f"xz -9e {name}: {len(docs)} docs, {len(data):,} bytes -> {xz_bits_per_byte(data):.4f} bits/byte")


if __name__ == "__main__":
    main()
