"""`golf tokenize`: corpus -> tokenizer, challenge-format shards, the val byte sidecar, a manifest.

Everything is written into a temp folder that replaces data/tokens only when all checks pass.
The proof of the BPB denominator: for every val document, the sidecar must sum to the UTF-8 bytes
of the original document as the tokenizer normalizes it (`sp.normalize`, ▁ read as a space),
computed without the sidecar's own method. Raw and normalized totals are both reported: nmt_nfkc
and the collapsed whitespace make the normalized text a little shorter.

Plain text: the sidecar is the LUT rule over the tokens (golf/artifact/bpb.py). CaseOps
(text_transform = caseops, golf/data/caseops.py): the normalized text is transformed, the operators
are user-defined pieces, and each val token is charged the original bytes it stands for by aligning
its piece back to the original text (operators 0); that sidecar must also equal the LUT rule with
the operators at 0, token by token, which is what ttt-eval and train_gpt.py check it against.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
from tqdm import tqdm

from golf.artifact.bpb import Luts, rule_luts, sidecar
from golf.artifact.shards import load_split
from golf.corpus.docs import read_docs
from golf.data import caseops
from golf.data.config import TokenizeConfig
from golf.data.pieces import byte_rule, surface_table
from golf.data.shards import ShardWriter
from golf.data.split import ValSplit
from golf.data.tokenizer import (
    BOS_ID,
    load_processor,
    normalize_text,
    normalized_bytes,
    prepare_text,
    train_tokenizer,
)
from golf.data.tokens import FORMAT, VERSION
from golf.errors import GolfError
from golf.io.atomic import atomic_write_bytes, atomic_write_text, staged_dir

BATCH_DOCS = 512


class Doc(NamedTuple):
    id: str
    text: str       # prepared (NUL -> space, stripped)
    raw_bytes: int  # UTF-8 bytes of the document as the corpus holds it


class Inputs(NamedTuple):
    """What SentencePiece reads for each doc of a split, and (CaseOps) the original text behind it."""
    model: list[str]          # the plain prepared text, or caseops.encode(normalize_text(text))
    original: list[str] | None  # CaseOps: normalize_text(text), the text the tokens must stand for


def _bar(desc: str, total: int) -> tqdm:
    return tqdm(total=total, desc=desc, unit="doc", file=sys.stderr, leave=False, mininterval=1.0)


def read_split(docs_path: Path, cfg: TokenizeConfig) -> dict[str, list[Doc]]:
    """{"train"|"val": [Doc]}; empty documents are skipped, operator characters refused."""
    is_val = ValSplit(cfg)
    out: dict[str, list[Doc]] = {"train": [], "val": []}
    for doc in read_docs(docs_path):
        text = prepare_text(doc["text"])
        if not text:
            continue
        if ops := caseops.operator_positions(text):
            raise GolfError(f"{docs_path}: doc {doc.get('id', '')!r} holds {len(ops)} CaseOps operator characters "
                            f"(U+E001..U+E004; the first at character {ops[0]}): already-transformed text? "
                            "They would be charged as original bytes; give the original text")
        split = "val" if is_val(str(doc.get("id", "")), str(doc.get("source", ""))) else "train"
        out[split].append(Doc(str(doc.get("id", "")), text, len(doc["text"].encode("utf-8"))))
    n = len(out["train"]) + len(out["val"])
    if n == 0:
        raise GolfError(f"{docs_path}: no non-empty documents (empty corpus)")
    for split in ("train", "val"):
        if not out[split]:
            raise GolfError(f"{docs_path}: the {split} split is empty ({n} documents; check tokenize.val_*)")
    return out


def model_inputs(docs: list[Doc], transform: str) -> Inputs:
    if transform == "none":
        return Inputs([d.text for d in docs], None)
    original = [normalize_text(d.text) for d in docs]
    with _bar("caseops", len(docs)) as bar:
        model = []
        for text in original:
            model.append(caseops.encode(text))
            bar.update()
    return Inputs(model, original)


def caseops_sidecar(docs: list[Doc], original: list[str], ids: list[list[int]], surfaces: list[bytes]) -> np.ndarray:
    """[0 (BOS)] + the original bytes of each token, per doc, by alignment (golf/data/caseops.py)."""
    out: list[int] = []
    for doc, text, d in zip(docs, original, ids):
        try:
            charged = caseops.token_original_bytes(text, [surfaces[t] for t in d])
        except ValueError:
            raise GolfError(f"val doc {doc.id!r}: its tokens do not spell its CaseOps text (the tokenizer's "
                            "normalizer rewrote it), so their original bytes are unknown") from None
        out += [0, *charged]
    return np.array(out, np.int64)


def _check_tokens(docs: list[Doc], stream: np.ndarray, got: np.ndarray, want: np.ndarray) -> None:
    """The aligned sidecar == the tokenizer's LUT rule with the operators at 0, token by token."""
    if bad := np.flatnonzero(got != want).tolist():
        j = bad[0]
        starts = np.flatnonzero(stream[:j + 1] == BOS_ID)
        raise GolfError(f"val byte accounting: doc {docs[len(starts) - 1].id!r}, token {j - starts[-1]} "
                        f"(id {int(stream[j])}): aligned to the original text it is {got[j]} bytes, the LUT "
                        f"rule says {want[j]}; {len(bad)} tokens differ")


def encode_split(sp: Any, docs: list[Doc], inputs: Inputs, out_dir: Path, split: str, shard_tokens: int,
                 luts: Luts | None) -> dict[str, Any]:
    """Write `[BOS] + ids` per document into shards; for val also the sidecar and the per-doc check."""
    tokens = ShardWriter(out_dir, split, shard_tokens)
    side = ShardWriter(out_dir, "val_bytes", shard_tokens) if luts is not None else None
    surfaces = surface_table(sp) if luts is not None and inputs.original is not None else []
    stats = {"docs": len(docs), "tokens": 0, "bytes": 0, "raw_bytes": 0, "transformed_bytes": 0}
    with _bar(f"encode {split}", len(docs)) as bar:
        for i in range(0, len(docs), BATCH_DOCS):
            batch, model = docs[i:i + BATCH_DOCS], inputs.model[i:i + BATCH_DOCS]
            ids = sp.encode(model)
            stream = np.fromiter((x for d in ids for x in (BOS_ID, *d)), np.uint16,
                                 count=sum(len(d) + 1 for d in ids))
            tokens.add(stream)
            # the denominator: the tokenizer's own normalizer on the original text (never the transform's)
            norm = np.array([normalized_bytes(sp, d.text) for d in batch], np.int64)
            stats["raw_bytes"] += sum(d.raw_bytes for d in batch)
            stats["bytes"] += int(norm.sum())
            stats["transformed_bytes"] += (int(norm.sum()) if inputs.original is None
                                           else sum(len(t.encode("utf-8")) for t in model))
            if side is not None:
                sc = sidecar(stream, luts, BOS_ID).astype(np.int64)
                if inputs.original is not None:
                    aligned = caseops_sidecar(batch, inputs.original[i:i + BATCH_DOCS], ids, surfaces)
                    _check_tokens(batch, stream, aligned, sc)
                    sc = aligned
                per_doc = np.add.reduceat(sc, np.flatnonzero(stream == BOS_ID))
                if bad := np.flatnonzero(per_doc != norm).tolist():
                    j = bad[0]
                    raise GolfError(
                        f"val byte accounting: doc {batch[j].id!r}: the sidecar charges {per_doc[j]} bytes, "
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
    inputs = {s: model_inputs(splits[s], cfg.text_transform) for s in ("train", "val")}
    n_train = len(splits["train"][:cfg.tokenizer_train_docs or None])
    print(f"golf tokenize: training a {cfg.vocab_size}-piece BPE on {n_train:,} train docs "
          f"(text_transform {cfg.text_transform})", file=sys.stderr)
    model = train_tokenizer(inputs["train"].model[:n_train], cfg.vocab_size, cfg.character_coverage,
                            caseops.OPERATORS if cfg.text_transform == "caseops" else ())
    sp = load_processor(model)
    rule = byte_rule(sp, cfg.text_transform, "the trained tokenizer")
    luts = rule_luts(sp, rule, cfg.vocab_size)
    with staged_dir(out_dir) as tmp:
        atomic_write_bytes(tmp / "tokenizer.model", model)
        stats = {s: encode_split(sp, splits[s], inputs[s], tmp, s, cfg.shard_tokens, luts if s == "val" else None)
                 for s in ("train", "val")}
        side_total = int(load_split(tmp, "val_bytes").astype(np.int64).sum())
        if side_total != stats["val"]["bytes"]:
            raise GolfError(f"val byte accounting: sidecar total {side_total} != normalized text "
                            f"{stats['val']['bytes']} ({side_total - stats['val']['bytes']:+d} bytes)")
        proof = {"text_transform": cfg.text_transform, "denominator": "recomputed_from_docs", "val_bytes_rule": rule,
                 "val_bytes_text": "normalized"}
        write_manifest(tmp, cfg, model, stats, proof)
    return metrics_of(stats, proof, tokenizer_train_docs=n_train)


def write_manifest(tmp: Path, cfg: TokenizeConfig, model: bytes, stats: dict, proof: dict[str, str]) -> None:
    """data/tokens/manifest.json; `proof`: text_transform, denominator (which proof of the val byte
    count was made) and val_bytes_rule (the per-token rule the sidecar follows, "" = none)."""
    keys = ("docs", "tokens", "bytes", "raw_bytes", "transformed_bytes", "shards")
    manifest = {"format": FORMAT, "version": VERSION, "vocab_size": cfg.vocab_size, "bos_id": BOS_ID,
                "tokenizer_sha256": hashlib.sha256(model).hexdigest(), "source": cfg.source, **proof,
                "splits": {s: {k: stats[s][k] for k in keys} for s in ("train", "val")}}
    atomic_write_text(tmp / "manifest.json", json.dumps(manifest, indent=2) + "\n")


def metrics_of(stats: dict, proof: dict[str, str], tokenizer_train_docs: int) -> dict[str, Any]:
    m: dict[str, Any] = {}
    for s in ("train", "val"):
        for k in ("docs", "tokens", "bytes", "raw_bytes", "transformed_bytes"):
            m[f"{k}_{s}"] = stats[s][k]
    # tokens include one BOS per document; bytes are the original normalized text (the BPB
    # denominator), transformed_bytes what the tokenizer read (CaseOps: with operators)
    val = stats["val"]
    for kind in ("bytes", "transformed_bytes"):
        if val[kind]:
            m[f"{kind}_per_token_val"] = round(val[kind] / max(val["tokens"], 1), 4)
            m[f"tokens_per_{kind.replace('bytes', 'byte')}_val"] = round(val["tokens"] / val[kind], 5)
    if val["bytes"] and val["transformed_bytes"]:
        # a BPB over transformed bytes would be lower by this factor (the 1.0066 record's error)
        m["transformed_over_original_bytes_val"] = round(val["transformed_bytes"] / val["bytes"], 5)
    if stats["train"]["bytes"]:
        m["bytes_per_token_train"] = round(stats["train"]["bytes"] / max(stats["train"]["tokens"], 1), 4)
    m["tokenizer_train_docs"] = tokenizer_train_docs
    m.update(proof)
    return m
