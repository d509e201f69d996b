"""`tokenize.source = shards`: existing fineweb_{train,val}_*.bin + their tokenizer, with a proven
val byte count (the BPB denominator). The manifest and metrics say which proof was made:

- recomputed_from_docs: the raw val documents are given (tokenize.val_docs_path); each document's
  bytes are recomputed from its text and must equal the sidecar's sum over its tokens (all docs
  normalized as the tokenizer does, or all raw: a CaseOps sidecar may charge either);
- sidecar_checked: fineweb_val_bytes_*.bin is given; it must equal the tokenizer's per-token rule
  (the LUT rule; CaseOps: with the operator pieces at 0), token by token;
- lut_plain_text: neither; the LUT rule makes the sidecar, allowed only when every piece is
  original text. A tokenizer with user-defined or extra control pieces (CaseOps operators) is
  refused, naming them: charging an operator its 3 bytes is the 1.0066 record's inflated denominator.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from golf.artifact.bpb import rule_luts, sidecar
from golf.artifact.shards import load_split, read_header
from golf.corpus.docs import read_docs
from golf.data.config import TokenizeConfig
from golf.data.pieces import byte_rule, caseops_ids, describe, non_text_pieces
from golf.data.prepare import metrics_of, write_manifest
from golf.data.shards import shard_name, write_shard
from golf.data.tokenizer import (
    BOS_ID,
    check_tokenizer,
    load_processor,
    normalized_bytes,
    prepare_text,
)
from golf.errors import GolfError
from golf.io.atomic import atomic_write_bytes, staged_dir


def _link_or_copy(src: Path, dst: Path) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)


def _link_split(src: Path, tmp: Path, pattern: str, split: str) -> list[Path]:
    paths = sorted(p for p in src.glob(pattern) if split == "val_bytes" or "_bytes_" not in p.name)
    for i, p in enumerate(tqdm(paths, desc=f"import {split}", file=sys.stderr, leave=False)):
        read_header(p)
        _link_or_copy(p, tmp / shard_name(split, i))
    return paths


def _given_sidecar(src: Path, tmp: Path, val_paths: list[Path]) -> tuple[np.ndarray | None, list[Path]]:
    """fineweb_val_bytes_*.bin, one per val shard and as long as it, or None when there is none."""
    paths = _link_split(src, tmp, "fineweb_val_bytes_*.bin", "val_bytes")
    if not paths:
        return None, []
    if len(paths) != len(val_paths):
        raise GolfError(f"{src}: {len(paths)} fineweb_val_bytes_*.bin files for {len(val_paths)} val shards")
    for side, val in zip(paths, val_paths):
        if (n := read_header(side)) != (m := read_header(val)):
            raise GolfError(f"{side}: {n:,} entries for the {m:,} tokens of {val.name} ({n - m:+,})")
    return load_split(tmp, "val_bytes").astype(np.int64), paths


def _val_docs(path: Path) -> list[str]:
    return [t for t in (prepare_text(d["text"]) for d in read_docs(path)) if t]


def _check_docs(sp: Any, docs_path: Path, val: np.ndarray, side: np.ndarray, what: str) -> str:
    """Per val doc, Σ sidecar == the doc's bytes, all normalized or all raw; returns which."""
    docs = _val_docs(docs_path)
    starts = np.flatnonzero(val == BOS_ID)
    if len(starts) != len(docs) or starts[0] != 0:
        raise GolfError(f"{docs_path}: {len(docs):,} non-empty docs, but the val shards hold {len(starts):,} "
                        f"documents (BOS tokens){'' if starts[0] == 0 else ' and do not start with BOS'}")
    per_doc = np.add.reduceat(side, starts)
    norm = np.array([normalized_bytes(sp, t) for t in docs], np.int64)
    if (per_doc == norm).all():
        return "normalized"
    raw = np.array([len(t.encode("utf-8")) for t in docs], np.int64)
    if (per_doc == raw).all():
        return "raw"
    j = int(np.flatnonzero(per_doc != norm)[0])
    d = int(per_doc.sum() - norm.sum())
    raise GolfError(f"{what} disagrees with {docs_path}: doc {j} is charged {per_doc[j]} bytes, its text has "
                    f"{norm[j]} normalized ({raw[j]} raw); in all {int(per_doc.sum()):,} vs {int(norm.sum()):,} "
                    f"({d:+,} bytes, {100 * d / max(int(norm.sum()), 1):+.2f}%)")


def _check_rule(sp: Any, rule: str, size: int, val: np.ndarray, side: np.ndarray, paths: list[Path]) -> None:
    """The given sidecar == the tokenizer's per-token rule; else name the file and the difference."""
    want = sidecar(val, rule_luts(sp, rule, size), BOS_ID).astype(np.int64)
    if bad := np.flatnonzero(side != want).tolist():
        j, d = bad[0], int(side.sum() - want.sum())
        ends = np.cumsum([read_header(p) for p in paths])
        k = int(np.searchsorted(ends, j, side="right"))
        what = "LUT rule with the operators at 0" if rule == "caseops" else "LUT rule"
        raise GolfError(f"{paths[k]}: the sidecar charges {int(side.sum()):,} bytes, the tokenizer's {what} "
                        f"{int(want.sum()):,} ({d:+,} bytes, {100 * d / max(int(want.sum()), 1):+.2f}%); first "
                        f"difference at val token {j:,} (id {int(val[j])}: {side[j]} vs {want[j]})")


def prove_denominator(sp: Any, cfg: TokenizeConfig, val: np.ndarray, given: np.ndarray | None,
                      paths: list[Path]) -> tuple[np.ndarray, dict[str, str]]:
    """The val sidecar to use and the proof made for it (module docstring)."""
    name, docs = cfg.tokenizer_path, Path(cfg.val_docs_path) if cfg.val_docs_path else None
    proof = {"text_transform": cfg.text_transform}
    if given is None and docs is None:
        if bad := non_text_pieces(sp):
            raise GolfError(f"{name}: refusing an LUT byte count: {describe(sp, bad)} are not original text (the "
                            "LUT would charge each its UTF-8 bytes); give the val byte sidecar "
                            "(fineweb_val_bytes_*.bin) or the raw val docs (tokenize.val_docs_path)")
        return sidecar(val, rule_luts(sp, "lut", cfg.vocab_size), BOS_ID).astype(np.int64), {
            **proof, "denominator": "lut_plain_text", "val_bytes_rule": "lut", "val_bytes_text": "normalized"}
    try:
        rule = byte_rule(sp, cfg.text_transform, name)
    except GolfError:
        if docs is None or given is None:
            raise  # no sidecar to prove, and no rule to make one with
        rule = ""  # unknown pieces: only the per-document proof applies
    if given is None:
        side = sidecar(val, rule_luts(sp, rule, cfg.vocab_size), BOS_ID).astype(np.int64)
        text = _check_docs(sp, docs, val, side, f"the {rule} byte count")
        return side, {**proof, "denominator": "recomputed_from_docs", "val_bytes_rule": rule, "val_bytes_text": text}
    if docs is None:
        _check_rule(sp, rule, cfg.vocab_size, val, given, paths)
        return given, {**proof, "denominator": "sidecar_checked", "val_bytes_rule": rule, "val_bytes_text": "normalized"}
    text = _check_docs(sp, docs, val, given, f"{paths[0].parent}/fineweb_val_bytes_*.bin")
    if rule:  # record the per-token rule only where it holds (a raw-bytes sidecar follows none)
        want = sidecar(val, rule_luts(sp, rule, cfg.vocab_size), BOS_ID).astype(np.int64)
        rule = rule if np.array_equal(want, given) else ""
    return given, {**proof, "denominator": "recomputed_from_docs", "val_bytes_rule": rule, "val_bytes_text": text}


def import_shards(cfg: TokenizeConfig, out_dir: Path) -> dict[str, Any]:
    """Validate, link (or copy) the shards under our names, prove the val byte count; the metrics."""
    src = Path(cfg.shards_dir)
    if not src.is_dir():
        raise GolfError(f"tokenize.shards_dir = {src}: folder not found")
    sp = load_processor(Path(cfg.tokenizer_path))
    check_tokenizer(sp, cfg.tokenizer_path)
    if sp.get_piece_size() != cfg.vocab_size:
        raise GolfError(f"{cfg.tokenizer_path}: {sp.get_piece_size()} pieces, but tokenize.vocab_size = {cfg.vocab_size}")
    if cfg.text_transform == "caseops":
        caseops_ids(sp, cfg.tokenizer_path)
    model = Path(cfg.tokenizer_path).read_bytes()
    stats: dict[str, Any] = {}
    with staged_dir(out_dir) as tmp:
        atomic_write_bytes(tmp / "tokenizer.model", model)
        for split in ("train", "val"):
            paths = _link_split(src, tmp, f"fineweb_{split}_*.bin", split)
            if not paths:
                raise GolfError(f"{src}: no fineweb_{split}_*.bin shards")
            toks = load_split(tmp, split)
            if int(toks.max(initial=0)) >= cfg.vocab_size:
                raise GolfError(f"{src}: {split} has token id {int(toks.max())} >= vocab_size {cfg.vocab_size}")
            # train bytes are not counted (the LUT pass over billions of tokens); val's below
            stats[split] = {"docs": int(np.count_nonzero(toks == BOS_ID)), "tokens": len(toks), "shards": len(paths),
                            "bytes": 0, "raw_bytes": 0, "transformed_bytes": 0, "paths": paths}
        val = np.asarray(load_split(tmp, "val"))
        given, side_paths = _given_sidecar(src, tmp, stats["val"]["paths"])
        side, proof = prove_denominator(sp, cfg, val, given, side_paths)
        if given is None:
            off = 0
            for i, p in enumerate(stats["val"]["paths"]):
                n = read_header(p)
                write_shard(tmp / shard_name("val_bytes", i), side[off:off + n])
                off += n
        stats["val"]["bytes"] = int(side.sum())
        write_manifest(tmp, cfg, model, stats, proof)
    return metrics_of(stats, proof, tokenizer_train_docs=0)
