"""`golf tokenize`: corpus -> tokenizer, challenge-format shards, the val byte sidecar, a manifest.

Everything is written into a temp folder that replaces data/tokens only when all checks pass.
The proof of the BPB denominator: for every val document, the sidecar (the §1.6 LUT rule over
its tokens) must sum to the UTF-8 bytes of the document as the tokenizer normalizes it
(`sp.normalize`, ▁ read as a space), computed without the LUTs. Raw and normalized totals are both
reported: nmt_nfkc and the collapsed whitespace make the normalized text a little shorter.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from golf.artifact.bpb import Luts, build_luts, sidecar
from golf.data.config import TokenizeConfig
from golf.corpus.docs import read_docs
from golf.io.atomic import staged_dir
from golf.artifact.shards import load_split, read_header
from golf.data.shards import ShardWriter, shard_name, write_shard
from golf.data.split import ValSplit
from golf.data.tokenizer import BOS_ID, check_tokenizer, load_processor, normalized_bytes, prepare_text, train_tokenizer
from golf.data.tokens import FORMAT, VERSION
from golf.errors import GolfError
from golf.io.atomic import atomic_write_bytes, atomic_write_text

BATCH_DOCS = 512


def _bar(desc: str, total: int) -> tqdm:
    return tqdm(total=total, desc=desc, unit="doc", file=sys.stderr, leave=False, mininterval=1.0)


def read_split(docs_path: Path, cfg: TokenizeConfig) -> dict[str, list[tuple[str, str, int]]]:
    """{"train"|"val": [(id, prepared text, raw UTF-8 bytes)]}; empty documents are skipped."""
    is_val = ValSplit(cfg)
    out: dict[str, list[tuple[str, str, int]]] = {"train": [], "val": []}
    for doc in read_docs(docs_path):
        text = prepare_text(doc["text"])
        if text:
            split = "val" if is_val(str(doc.get("id", "")), str(doc.get("source", ""))) else "train"
            out[split].append((str(doc.get("id", "")), text, len(doc["text"].encode("utf-8"))))
    n = len(out["train"]) + len(out["val"])
    if n == 0:
        raise GolfError(f"{docs_path}: no non-empty documents (empty corpus)")
    for split in ("train", "val"):
        if not out[split]:
            raise GolfError(f"{docs_path}: the {split} split is empty ({n} documents; check tokenize.val_*)")
    return out


def encode_split(sp: Any, docs: list, out_dir: Path, split: str, shard_tokens: int,
                 luts: Luts | None) -> dict[str, Any]:
    """Write `[BOS] + ids` per document into shards; for val also the sidecar and the per-doc check."""
    tokens = ShardWriter(out_dir, split, shard_tokens)
    side = ShardWriter(out_dir, "val_bytes", shard_tokens) if luts is not None else None
    stats = {"docs": len(docs), "tokens": 0, "bytes": 0, "raw_bytes": 0}
    with _bar(f"encode {split}", len(docs)) as bar:
        for i in range(0, len(docs), BATCH_DOCS):
            batch = docs[i:i + BATCH_DOCS]
            ids = sp.encode([t for _, t, _ in batch])
            stream = np.fromiter((x for d in ids for x in (BOS_ID, *d)), np.uint16,
                                 count=sum(len(d) + 1 for d in ids))
            tokens.add(stream)
            norm = np.array([normalized_bytes(sp, t) for _, t, _ in batch], np.int64)
            stats["raw_bytes"] += sum(r for _, _, r in batch)
            stats["bytes"] += int(norm.sum())
            if side is not None:
                sc = sidecar(stream, luts, BOS_ID)
                starts = np.flatnonzero(stream == BOS_ID)
                per_doc = np.add.reduceat(sc.astype(np.int64), starts)
                if bad := np.flatnonzero(per_doc != norm).tolist():
                    j = bad[0]
                    raise GolfError(
                        f"val byte accounting: doc {batch[j][0]!r}: the LUT sidecar charges {per_doc[j]} bytes, "
                        f"its normalized text has {norm[j]} ({per_doc[j] - norm[j]:+d}); "
                        f"{len(bad)} of {len(batch)} docs in this batch differ")
                side.add(sc)
            bar.update(len(batch))
    stats["tokens"] = tokens.total
    stats["shards"] = len(tokens.close())
    if side is not None:
        side.close()
    return stats


def build_tokens(cfg: TokenizeConfig, docs_path: Path, out_dir: Path) -> dict[str, Any]:
    """Train the tokenizer on train docs, write every file of data/tokens; return the metrics."""
    splits = read_split(docs_path, cfg)
    train_docs = splits["train"][:cfg.tokenizer_train_docs or None]
    print(f"golf tokenize: training a {cfg.vocab_size}-piece BPE on {len(train_docs):,} train docs",
          file=sys.stderr)
    model = train_tokenizer((t for _, t, _ in train_docs), cfg.vocab_size, cfg.character_coverage)
    sp = load_processor(model)
    luts = build_luts(sp, cfg.vocab_size)
    with staged_dir(out_dir) as tmp:
        atomic_write_bytes(tmp / "tokenizer.model", model)
        stats = {"train": encode_split(sp, splits["train"], tmp, "train", cfg.shard_tokens, None),
                 "val": encode_split(sp, splits["val"], tmp, "val", cfg.shard_tokens, luts)}
        side_total = int(load_split(tmp, "val_bytes").astype(np.int64).sum())
        if side_total != stats["val"]["bytes"]:
            raise GolfError(f"val byte accounting: sidecar total {side_total} != normalized text "
                            f"{stats['val']['bytes']} ({side_total - stats['val']['bytes']:+d} bytes)")
        _write_manifest(tmp, cfg, model, stats, checked=True)
    return _metrics(stats, checked=True, tokenizer_train_docs=len(train_docs))


def import_shards(cfg: TokenizeConfig, out_dir: Path) -> dict[str, Any]:
    """tokenize.source = shards: the challenge's fineweb_{train,val}_*.bin + tokenizer, validated,
    linked (or copied) under our names, and a val sidecar from the LUTs. The raw val text is not
    available, so the denominator cannot be checked against it (metrics say so)."""
    src = Path(cfg.shards_dir)
    if not src.is_dir():
        raise GolfError(f"tokenize.shards_dir = {src}: folder not found")
    sp = load_processor(Path(cfg.tokenizer_path))
    check_tokenizer(sp, cfg.tokenizer_path)
    if sp.get_piece_size() != cfg.vocab_size:
        raise GolfError(f"{cfg.tokenizer_path}: {sp.get_piece_size()} pieces, but tokenize.vocab_size = {cfg.vocab_size}")
    luts = build_luts(sp, cfg.vocab_size)
    model = Path(cfg.tokenizer_path).read_bytes()
    stats: dict[str, Any] = {}
    with staged_dir(out_dir) as tmp:
        atomic_write_bytes(tmp / "tokenizer.model", model)
        for split in ("train", "val"):
            paths = sorted(p for p in src.glob(f"fineweb_{split}_*.bin") if "_bytes_" not in p.name)
            if not paths:
                raise GolfError(f"{src}: no fineweb_{split}_*.bin shards")
            for i, p in enumerate(tqdm(paths, desc=f"import {split}", file=sys.stderr, leave=False)):
                read_header(p)
                _link_or_copy(p, tmp / shard_name(split, i))
            toks = load_split(tmp, split)
            if int(toks.max(initial=0)) >= cfg.vocab_size:
                raise GolfError(f"{src}: {split} has token id {int(toks.max())} >= vocab_size {cfg.vocab_size}")
            stats[split] = {"docs": int(np.count_nonzero(toks == BOS_ID)), "tokens": len(toks), "shards": len(paths)}
            if split == "val":
                sc = sidecar(toks, luts, BOS_ID)
                off = 0
                for i, p in enumerate(paths):
                    n = read_header(tmp / shard_name("val", i))
                    write_shard(tmp / shard_name("val_bytes", i), sc[off:off + n])
                    off += n
                stats[split]["bytes"] = int(sc.astype(np.int64).sum())
            else:
                stats[split]["bytes"] = 0  # not computed for train (would need the LUT pass over billions of tokens)
            stats[split]["raw_bytes"] = 0
        _write_manifest(tmp, cfg, model, stats, checked=False)
    return _metrics(stats, checked=False, tokenizer_train_docs=0)


def _link_or_copy(src: Path, dst: Path) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)


def _write_manifest(tmp: Path, cfg: TokenizeConfig, model: bytes, stats: dict, checked: bool) -> None:
    manifest = {"format": FORMAT, "version": VERSION, "vocab_size": cfg.vocab_size, "bos_id": BOS_ID,
                "tokenizer_sha256": hashlib.sha256(model).hexdigest(), "source": cfg.source,
                "val_bytes_checked": checked,
                "splits": {s: {k: stats[s][k] for k in ("docs", "tokens", "bytes", "raw_bytes", "shards")}
                           for s in ("train", "val")}}
    atomic_write_text(tmp / "manifest.json", json.dumps(manifest, indent=2) + "\n")


def _metrics(stats: dict, checked: bool, tokenizer_train_docs: int) -> dict[str, Any]:
    m: dict[str, Any] = {}
    for s in ("train", "val"):
        m[f"docs_{s}"] = stats[s]["docs"]
        m[f"tokens_{s}"] = stats[s]["tokens"]
        m[f"bytes_{s}"] = stats[s]["bytes"]
        m[f"raw_bytes_{s}"] = stats[s]["raw_bytes"]
    # tokens include one BOS per document; bytes are the normalized text (the BPB denominator)
    m["bytes_per_token_val"] = round(stats["val"]["bytes"] / max(stats["val"]["tokens"], 1), 4)
    if stats["train"]["bytes"]:
        m["bytes_per_token_train"] = round(stats["train"]["bytes"] / max(stats["train"]["tokens"], 1), 4)
    m["tokenizer_train_docs"] = tokenizer_train_docs
    m["val_bytes_checked"] = int(checked)  # 0: imported shards, no raw text to check the sidecar against
    return m
