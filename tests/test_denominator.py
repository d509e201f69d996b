"""CaseOps tokenization and the proven BPB denominator on every data path (imported shards too).

The 1.0066 record charged the bytes of the transformed text, operators included; golf must refuse
that count wherever it could come in: from an LUT over a CaseOps tokenizer, or from a sidecar.
"""

import json
from pathlib import Path

import numpy as np
import pytest
from test_tokenize import _one_line_error, cfg, make_corpus, tiny_docs

from golf.artifact.bpb import CASEOPS_OPERATORS, build_luts, rule_luts, sidecar
from golf.artifact.scoring import check_sidecar
from golf.artifact.shards import list_shards, load_split, read_header
from golf.data import caseops
from golf.data.imported import import_shards
from golf.data.pieces import (
    BYTE,
    CONTROL,
    UNKNOWN,
    USER_DEFINED,
    piece_types,
    surface_table,
)
from golf.data.prepare import build_tokens, read_split
from golf.data.shards import write_shard
from golf.data.tokenizer import (
    load_processor,
    normalize_text,
    normalized_bytes,
    train_tokenizer,
)
from golf.data.tokens import TokenData
from golf.errors import GolfError

SHOUTY = [  # capitals of every kind, so the operators are frequent in val
    "The NASA Launch of the ISS Module. McDonald's iPhone and eBay; ΟΔΟΣ Οδός, МОСКВА Москва. " * 4,
    "BREAKING NEWS: The Prime Minister Said TODAY That İstanbul And STRASSE Are Fine.  Really   Fine. " * 4,
]


@pytest.fixture(scope="module")
def caseops_tokens(tmp_path_factory):
    root = tmp_path_factory.mktemp("caseops")
    docs = tiny_docs() + [{"id": f"shout-{i}", "source": "extra", "text": t} for i, t in enumerate(SHOUTY)]
    c = cfg(text_transform="caseops", val_percent=30, vocab_size=420)
    path = make_corpus(root / "corpus", docs)
    metrics = build_tokens(c, path, root / "tokens")
    return root, c, metrics, read_split(path, c)["val"]


def test_the_operators_are_user_defined_pieces(caseops_tokens):
    root, *_ = caseops_tokens
    sp = load_processor(root / "tokens" / "tokenizer.model")
    types = piece_types(sp)
    assert [sp.piece_to_id(o) for o in caseops.OPERATORS] == [4, 5, 6, 7]
    assert types[4:8] == [USER_DEFINED] * 4 and types[3] == UNKNOWN and types[1] == CONTROL
    assert all((t == BYTE) == sp.is_byte(i) for i, t in enumerate(types))
    assert CASEOPS_OPERATORS == "".join(caseops.OPERATORS)
    # never merged: no other piece holds an operator
    assert not [p for i in range(8, sp.get_piece_size()) for p in [sp.id_to_piece(i)] if set(p) & set(CASEOPS_OPERATORS)]


def test_sidecar_identity_on_a_caseops_tokenizer(caseops_tokens):
    root, _, m, val_docs = caseops_tokens
    t = TokenData(root / "tokens")
    sp = load_processor(t.tokenizer_path)
    val, vb = np.asarray(t.val, np.int64), np.asarray(t.val_bytes, np.int64)
    starts = np.flatnonzero(val == 1).tolist() + [len(val)]
    surfaces = surface_table(sp)
    ops = [sp.piece_to_id(o) for o in caseops.OPERATORS]
    for doc, a, b in zip(val_docs, starts, starts[1:]):
        ids = val[a + 1:b].tolist()
        original = normalize_text(doc.text)
        assert caseops.decode(sp.decode(ids)) == original  # the tokens spell the original, losslessly
        assert vb[a] == 0 and vb[a + 1:b].tolist() == caseops.token_original_bytes(original, [surfaces[i] for i in ids])
        assert int(vb[a:b].sum()) == normalized_bytes(sp, doc.text) == len(original.encode())
    assert np.isin(val, ops).sum() > 50 and int(vb[np.isin(val, ops)].sum()) == 0
    assert m["bytes_val"] == int(vb.sum()) == t.manifest["splits"]["val"]["bytes"]
    assert (m["text_transform"], m["denominator"], m["val_bytes_rule"]) == ("caseops", "recomputed_from_docs", "caseops")


def test_metrics_both_ways(caseops_tokens):
    _, _, m, _ = caseops_tokens
    assert m["transformed_bytes_val"] > m["bytes_val"]
    assert m["transformed_over_original_bytes_val"] == round(m["transformed_bytes_val"] / m["bytes_val"], 5)
    assert m["tokens_per_byte_val"] == round(m["tokens_val"] / m["bytes_val"], 5)
    assert m["tokens_per_transformed_byte_val"] < m["tokens_per_byte_val"]
    assert m["transformed_bytes_per_token_val"] > m["bytes_per_token_val"]


def _inflated(val: np.ndarray, sp) -> np.ndarray:
    """The 1.0066 record's count: every piece charged the UTF-8 bytes of its transformed text, 3 per operator."""
    return sidecar(val, build_luts(sp), 1).astype(np.int64)


def test_ttt_eval_check_uses_the_caseops_rule(caseops_tokens):
    root, *_ = caseops_tokens
    t = TokenData(root / "tokens")
    assert check_sidecar(t.val, t.val_bytes, t.luts) == int(np.asarray(t.val_bytes[1:], np.int64).sum())
    with pytest.raises(GolfError, match="does not match the tokenizer"):
        check_sidecar(t.val, t.val_bytes, build_luts(load_processor(t.tokenizer_path)))  # the plain LUT is not the truth


def _challenge_dir(root: Path, tokens: Path, side: np.ndarray | None = None) -> Path:
    """The tokens as the challenge names them (+ a sidecar if given, split like the val shards)."""
    src = root / "challenge"
    src.mkdir(parents=True)
    for split in ("train", "val"):
        for i, p in enumerate(list_shards(tokens, split)):
            (src / f"fineweb_{split}_{i:06d}.bin").write_bytes(p.read_bytes())
    if side is not None:
        _write_sidecar(src, tokens, side)
    return src


def _write_sidecar(src: Path, tokens: Path, side: np.ndarray) -> None:
    off = 0
    for i, p in enumerate(list_shards(tokens, "val")):
        n = read_header(p)
        write_shard(src / f"fineweb_val_bytes_{i:06d}.bin", side[off:off + n])
        off += n


def _val_jsonl(path: Path, val_docs) -> Path:
    path.write_text("".join(json.dumps({"text": d.text}) + "\n" for d in val_docs))
    return path


def _import_cfg(root, src, **kw):
    return cfg(source="shards", shards_dir=str(src), tokenizer_path=str(root / "tokens" / "tokenizer.model"),
               vocab_size=420, **kw)


def test_the_1_0066_inflated_count_is_refused(caseops_tokens, tmp_path):
    root, _, m, val_docs = caseops_tokens
    t = TokenData(root / "tokens")
    sp = load_processor(t.tokenizer_path)
    val = np.asarray(t.val, np.int64)
    bad = _inflated(val, sp)
    assert bad.sum() > m["bytes_val"] * 1.01  # the bug's denominator is larger: a lower, false BPB
    assert int(bad.sum()) == m["transformed_bytes_val"]  # ... exactly the transformed text's bytes
    src = _challenge_dir(tmp_path, root / "tokens", bad)
    out = tmp_path / "out"
    # 1. the inflated sidecar against the tokenizer: named, with the difference
    c = _import_cfg(root, src, text_transform="caseops")
    _one_line_error(lambda: import_shards(c, out), rf"fineweb_val_bytes_000000.bin: .*\+{int(bad.sum()) - m['bytes_val']:,} bytes", out)
    # 2. the same against the raw val docs
    c = _import_cfg(root, src, text_transform="caseops", val_docs_path=str(_val_jsonl(tmp_path / "val.jsonl", val_docs)))
    _one_line_error(lambda: import_shards(c, out), r"disagrees with .*val.jsonl: doc 0", out)
    # 3. no sidecar, no docs: the LUT count itself is refused, naming the operator pieces
    for f in src.glob("fineweb_val_bytes_*"):
        f.unlink()
    c = _import_cfg(root, src, text_transform="caseops")
    _one_line_error(lambda: import_shards(c, out), r"refusing an LUT byte count: id 4 U\+E001, id 5 U\+E002", out)


def test_honest_caseops_imports(caseops_tokens, tmp_path):
    root, _, m, val_docs = caseops_tokens
    honest = np.asarray(TokenData(root / "tokens").val_bytes, np.int64)
    src = _challenge_dir(tmp_path, root / "tokens", honest)
    docs = str(_val_jsonl(tmp_path / "val.jsonl", val_docs))
    got = import_shards(_import_cfg(root, src, text_transform="caseops"), tmp_path / "a")
    assert (got["denominator"], got["val_bytes_rule"], got["bytes_val"]) == ("sidecar_checked", "caseops", m["bytes_val"])
    got = import_shards(_import_cfg(root, src, text_transform="caseops", val_docs_path=docs), tmp_path / "b")
    assert (got["denominator"], got["val_bytes_rule"], got["val_bytes_text"]) == ("recomputed_from_docs", "caseops", "normalized")
    for f in src.glob("fineweb_val_bytes_*"):
        f.unlink()
    got = import_shards(_import_cfg(root, src, text_transform="caseops", val_docs_path=docs), tmp_path / "c")
    assert got["denominator"] == "recomputed_from_docs" and got["bytes_val"] == m["bytes_val"]
    assert load_split(tmp_path / "c", "val_bytes").tolist() == honest.tolist()
    # the transform must be named: a CaseOps tokenizer read as plain text is refused, with the hint
    c = _import_cfg(root, _challenge_dir(tmp_path / "x", root / "tokens", honest), text_transform="none")
    _one_line_error(lambda: import_shards(c, tmp_path / "d"), "set tokenize.text_transform = caseops", tmp_path / "d")


def test_raw_bytes_sidecar_with_docs(caseops_tokens, tmp_path):
    """A sidecar charging the raw text (whitespace runs uncollapsed, as a record's may) is proven per
    document; it follows no per-token rule, so ttt-eval checks it against the proven total."""
    root, _, m, val_docs = caseops_tokens
    t = TokenData(root / "tokens")
    side = np.asarray(t.val_bytes, np.int64).copy()
    val = np.asarray(t.val)
    ends = (np.flatnonzero(val == 1).tolist() + [len(val)])[1:]
    for doc, end in zip(val_docs, ends):
        side[end - 1] += len(doc.text.encode()) - normalized_bytes(load_processor(t.tokenizer_path), doc.text)
    assert side.sum() > m["bytes_val"]  # the SHOUTY docs hold double spaces
    src = _challenge_dir(tmp_path, root / "tokens", side)
    docs = str(_val_jsonl(tmp_path / "val.jsonl", val_docs))
    got = import_shards(_import_cfg(root, src, text_transform="caseops", val_docs_path=docs), tmp_path / "a")
    assert (got["denominator"], got["val_bytes_rule"], got["val_bytes_text"]) == ("recomputed_from_docs", "", "raw")
    imported = TokenData(tmp_path / "a")
    assert imported.luts is None and int(np.asarray(imported.val_bytes, np.int64).sum()) == int(side.sum())


def test_plain_shards_still_import_and_a_wrong_sidecar_is_named(tmp_path):
    root = tmp_path / "plain"
    path = make_corpus(root / "corpus")
    c = cfg(val_percent=30)
    m = build_tokens(c, path, root / "tokens")
    side = np.asarray(TokenData(root / "tokens").val_bytes, np.int64).copy()
    src = _challenge_dir(tmp_path, root / "tokens")
    plain = {"source": "shards", "shards_dir": str(src), "tokenizer_path": str(root / "tokens" / "tokenizer.model")}
    assert import_shards(cfg(**plain), tmp_path / "a")["denominator"] == "lut_plain_text"
    docs = str(_val_jsonl(tmp_path / "val.jsonl", read_split(path, c)["val"]))
    got = import_shards(cfg(**plain, val_docs_path=docs), tmp_path / "b")
    assert (got["denominator"], got["val_bytes_rule"], got["bytes_val"]) == ("recomputed_from_docs", "lut", m["bytes_val"])
    side[17] += 2
    _write_sidecar(src, root / "tokens", side)
    _one_line_error(lambda: import_shards(cfg(**plain), tmp_path / "c"),
                    r"fineweb_val_bytes_000000.bin: the sidecar charges .* \(\+2 bytes, .*first difference at val token 17 ",
                    tmp_path / "c")


def test_sidecar_length_differs_from_its_shard(caseops_tokens, tmp_path):
    root, *_ = caseops_tokens
    honest = np.asarray(TokenData(root / "tokens").val_bytes)
    src = _challenge_dir(tmp_path, root / "tokens", honest)
    n = read_header(src / "fineweb_val_000000.bin")
    write_shard(src / "fineweb_val_bytes_000000.bin", honest[:n - 3])
    out = tmp_path / "out"
    _one_line_error(lambda: import_shards(_import_cfg(root, src, text_transform="caseops"), out),
                    rf"fineweb_val_bytes_000000.bin: {n - 3:,} entries for the {n:,} tokens of "
                    r"fineweb_val_000000.bin \(-3\)", out)
    # and in data/tokens, for ttt-eval and train_gpt.py
    tokens = tmp_path / "tokens"
    tokens.mkdir()
    for p in (root / "tokens").iterdir():
        (tokens / p.name).write_bytes(p.read_bytes())
    write_shard(tokens / "val_bytes_000000.bin", honest[:n - 1])
    with pytest.raises(GolfError, match=r"val_bytes_000000.bin: .* entries for the .* tokens of val_000000.bin \(-1\)"):
        _ = TokenData(tokens).val_bytes


def test_train_gpt_check_on_caseops_tokens(caseops_tokens, tmp_path):
    from golf.artifact.runner import check_val_bytes

    root, *_ = caseops_tokens
    tokens = tmp_path / "tokens"
    tokens.mkdir()
    for p in (root / "tokens").iterdir():
        (tokens / p.name).write_bytes(p.read_bytes())
    val, vb = check_val_bytes(tokens)
    assert len(val) == len(vb)
    moved = np.asarray(vb, np.int64).copy()
    j = int(np.flatnonzero(moved > 1)[0])
    moved[j] -= 1
    moved[j + 1] += 1  # same total, wrong tokens
    n = read_header(tokens / "val_000000.bin")
    write_shard(tokens / "val_bytes_000000.bin", moved[:n])
    with pytest.raises(GolfError, match=rf"first at token {j:,}"):
        check_val_bytes(tokens)
    moved[j] += 5
    write_shard(tokens / "val_bytes_000000.bin", moved[:n])
    with pytest.raises(GolfError, match=r"tokenize proved .* \(\+5\): the sidecar was changed"):
        check_val_bytes(tokens)


def test_docs_holding_operator_characters_are_refused(tmp_path):
    docs = tiny_docs() + [{"id": "pre", "source": "extra", "text": f"already {caseops.TITLE}transformed {caseops.ALLCAPS}text"}]
    path = make_corpus(tmp_path / "c", docs)
    out = tmp_path / "tokens"
    for transform in ("caseops", "none"):
        _one_line_error(lambda t=transform: build_tokens(cfg(text_transform=t), path, out),
                        r"doc 'pre' holds 2 CaseOps operator characters .* first at character 8", out)


def test_a_tokenizer_without_the_reserved_pieces(tmp_path):
    from test_tokenize import tiny_docs as docs

    model = train_tokenizer([d["text"] for d in docs()], 420, 0.999)  # plain: no operator pieces
    (tmp_path / "plain.model").write_bytes(model)
    src = tmp_path / "s"
    src.mkdir()
    for split in ("train", "val"):
        write_shard(src / f"fineweb_{split}_000000.bin", np.array([1, 300, 301], np.uint16))
    c = cfg(source="shards", shards_dir=str(src), tokenizer_path=str(tmp_path / "plain.model"), vocab_size=420,
            text_transform="caseops")
    out = tmp_path / "out"
    _one_line_error(lambda: import_shards(c, out), r"plain.model: no reserved CaseOps pieces for U\+E001, U\+E002, "
                    r"U\+E003, U\+E004", out)
    with pytest.raises(GolfError, match="no CaseOps operator pieces"):
        rule_luts(load_processor(model), "caseops")


def test_caseops_needs_room_for_the_operators():
    with pytest.raises(ValueError, match="caseops needs > 264"):
        cfg(text_transform="caseops", vocab_size=262)
    with pytest.raises(ValueError, match="only for source = shards"):
        cfg(val_docs_path="val.jsonl")


def test_the_two_caseops_derivations_must_agree(tmp_path, monkeypatch):
    """The aligned sidecar is checked against the LUT rule with the operators at 0: an alignment
    that charged operators (the 1.0066 record's error) stops tokenize, naming doc and token."""
    from golf.data import prepare

    honest = caseops.token_original_bytes

    def charging_operators(text, pieces):
        return [c + 3 * sum(bytes(p).decode("utf-8", "replace").count(o) for o in caseops.OPERATORS)
                for c, p in zip(honest(text, pieces), pieces)]

    monkeypatch.setattr(prepare.caseops, "token_original_bytes", charging_operators)
    docs = tiny_docs() + [{"id": f"shout-{i}", "source": "extra", "text": t} for i, t in enumerate(SHOUTY)]
    path, out = make_corpus(tmp_path / "c", docs), tmp_path / "tokens"
    _one_line_error(lambda: build_tokens(cfg(text_transform="caseops", val_percent=30, vocab_size=420), path, out),
                    r"doc '.*', token \d+ \(id [4-7]\): aligned to the original text it is 3 bytes, the LUT rule says 0", out)


def test_other_user_defined_pieces_need_the_docs_and_a_sidecar(tmp_path):
    """Any user-defined piece stops the LUT rule (it could stand for anything); with a sidecar and
    the raw docs the count is still proven, per document."""
    from golf.artifact.bpb import build_luts

    texts = [d["text"] for d in tiny_docs()]
    model = train_tokenizer(texts[8:], 420, 0.999, ("<sep>",))
    (tmp_path / "sep.model").write_bytes(model)
    sp = load_processor(model)
    val = np.array([x for t in texts[:8] for x in (1, *sp.encode(t.strip()))], np.uint16)
    src = tmp_path / "s"
    src.mkdir()
    write_shard(src / "fineweb_train_000000.bin", val)
    write_shard(src / "fineweb_val_000000.bin", val)
    docs = tmp_path / "val.jsonl"
    docs.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts[:8]))
    c = {"source": "shards", "shards_dir": str(src), "tokenizer_path": str(tmp_path / "sep.model"), "vocab_size": 420}
    for kw in ({}, {"val_docs_path": str(docs)}):
        out = tmp_path / f"out{len(kw)}"
        _one_line_error(lambda kw=kw, out=out: import_shards(cfg(**c, **kw), out), r"id 4 '<sep>'", out)
    write_shard(src / "fineweb_val_bytes_000000.bin", sidecar(val, build_luts(sp), 1))
    _one_line_error(lambda: import_shards(cfg(**c), tmp_path / "d"), r"id 4 '<sep>'", tmp_path / "d")
    got = import_shards(cfg(**c, val_docs_path=str(docs)), tmp_path / "e")
    assert (got["denominator"], got["val_bytes_rule"], got["val_bytes_text"]) == ("recomputed_from_docs", "", "normalized")
