"""golf tokenize: split by document, determinism, one-line errors with no partial output, the CLI."""

import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from golf.artifact.shards import list_shards, load_split
from golf.corpus.docs import write_corpus
from golf.data.config import TokenizeConfig
from golf.data.imported import import_shards
from golf.data.prepare import build_tokens
from golf.data.shards import write_shard
from golf.data.tokens import TokenData
from golf.errors import GolfError

EXTRA = [
    "Ünïcödé café — naïve résumé; 日本語のテキスト and emoji 🎉🎉 in 2024, 3.14159 and 1,000,000.",
    "Whitespace   runs\t\tand tabs\n\n\nand   blank lines   \u00a0 nbsp \u3000 ideographic ½ ﬁ ①.",
    "Digits 0123456789 9876543210 and Ωmega ∑ ∫ ≤ ≥ ≠ ∞ ‘quotes’ “double” — dashes – ok.",
]

TOK = dict(source="sentencepiece", vocab_size=400, val_rule="hash", val_percent=20, val_docs=0,
           val_sources=(), tokenizer_train_docs=0, character_coverage=0.999, shard_tokens=20000,
           shards_dir="", tokenizer_path="", text_transform="none", val_docs_path="")


def tiny_docs() -> list[dict]:
    from pydoc_data.topics import topics

    docs = [{"id": f"topic-{k}", "source": "pydoc", "text": topics[k]} for k in sorted(topics)[:40]]
    docs += [{"id": f"extra-{i}", "source": "extra", "text": t * 3} for i, t in enumerate(EXTRA)]
    return docs


def make_corpus(path: Path, docs=None) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    write_corpus(path, docs or tiny_docs(), "test")
    return path / "docs.jsonl"


def cfg(**kw) -> TokenizeConfig:
    return TokenizeConfig(**{**TOK, **kw})


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("tok")
    docs = make_corpus(root / "corpus")
    metrics = build_tokens(cfg(), docs, root / "tokens")
    return root, metrics


def test_outputs_and_manifest(built):
    root, m = built
    t = TokenData(root / "tokens")
    assert t.vocab_size == 400 and t.bos_id == 1
    assert len(list_shards(root / "tokens", "train")) >= 2  # shard_tokens forces straddling
    assert t.manifest["splits"]["val"]["tokens"] == len(t.val) == len(t.val_bytes) == m["tokens_val"]
    assert t.manifest["splits"]["train"]["docs"] == int((t.train == 1).sum()) == m["docs_train"]
    assert t.val[0] == 1 and int((t.val == 1).sum()) == m["docs_val"] > 0
    assert int(t.val.max()) < 400 and int(t.val_bytes.astype(np.int64).sum()) == m["bytes_val"]
    assert m["denominator"] == "recomputed_from_docs" and m["val_bytes_rule"] == "lut" and 1 < m["bytes_per_token_val"] < 8
    assert m["transformed_bytes_val"] == m["bytes_val"] and m["text_transform"] == "none"


def test_val_docs_never_in_train(built):
    root, _ = built
    t = TokenData(root / "tokens")
    from golf.data.tokenizer import load_processor

    sp = load_processor(t.tokenizer_path)

    def docs_of(stream):
        cuts = np.flatnonzero(stream == 1).tolist() + [len(stream)]
        return {sp.decode(stream[a + 1:b].tolist()) for a, b in zip(cuts, cuts[1:])}

    val, train = docs_of(np.asarray(t.val)), docs_of(np.asarray(t.train))
    assert val and not (val & train)


def test_deterministic(built, tmp_path):
    root, _ = built
    build_tokens(cfg(), root / "corpus" / "docs.jsonl", tmp_path / "again")
    names = sorted(p.name for p in (root / "tokens").iterdir())
    assert names == sorted(p.name for p in (tmp_path / "again").iterdir())
    for n in names:
        assert (root / "tokens" / n).read_bytes() == (tmp_path / "again" / n).read_bytes(), n


def test_first_rule_and_val_sources(tmp_path):
    docs = make_corpus(tmp_path / "c")
    m = build_tokens(cfg(val_rule="first", val_docs=2, val_sources=("extra",)), docs, tmp_path / "t")
    assert m["docs_val"] == 2


def _one_line_error(fn, match, out: Path):
    with pytest.raises(GolfError, match=match) as e:
        fn()
    assert "\n" not in str(e.value)
    assert not out.exists() and not [p for p in out.parent.iterdir() if p.name.startswith(f".{out.name}")]


def test_missing_corpus(tmp_path):
    out = tmp_path / "tokens"
    _one_line_error(lambda: build_tokens(cfg(), tmp_path / "none.jsonl", out), "not found", out)


def test_empty_corpus(tmp_path):
    (tmp_path / "docs.jsonl").write_text(json.dumps({"id": "a", "source": "x", "text": " \x00 "}) + "\n")
    out = tmp_path / "tokens"
    _one_line_error(lambda: build_tokens(cfg(), tmp_path / "docs.jsonl", out), "empty corpus", out)


def test_vocab_too_large(tmp_path):
    docs = make_corpus(tmp_path / "c", [{"id": f"d{i}", "source": "x", "text": "abc def ghi " * 20}
                                        for i in range(12)])
    out = tmp_path / "tokens"
    _one_line_error(lambda: build_tokens(cfg(vocab_size=5000), docs, out), "supports only", out)


def test_vocab_too_small(tmp_path):
    docs = make_corpus(tmp_path / "c")
    out = tmp_path / "tokens"
    _one_line_error(lambda: build_tokens(cfg(vocab_size=262), docs, out), "needs at least", out)


def test_import_shards(built, tmp_path):
    root, m = built
    src = tmp_path / "challenge"
    src.mkdir()
    for split in ("train", "val"):
        for i, p in enumerate(list_shards(root / "tokens", split)):
            (src / f"fineweb_{split}_{i:06d}.bin").write_bytes(p.read_bytes())
    c = cfg(source="shards", shards_dir=str(src), tokenizer_path=str(root / "tokens" / "tokenizer.model"))
    got = import_shards(c, tmp_path / "tokens")
    assert got["denominator"] == "lut_plain_text" and got["bytes_val"] == m["bytes_val"]
    assert load_split(tmp_path / "tokens", "val_bytes").tolist() == load_split(root / "tokens", "val_bytes").tolist()
    # a truncated shard: one line, no partial output
    bad = src / "fineweb_val_000000.bin"
    bad.write_bytes(bad.read_bytes()[:-5])
    out = tmp_path / "tokens2"
    _one_line_error(lambda: import_shards(c, out), "truncated", out)


def test_cli_smoke(tmp_path, monkeypatch):
    from stages.cli import app

    monkeypatch.chdir(tmp_path)
    (tmp_path / "in.jsonl").write_text("".join(json.dumps({"text": d["text"]}) + "\n" for d in tiny_docs()))
    corpus = dict(source="jsonl", jsonl_path="", fineweb_docs=0, min_chars=10, fetch_timeout_s=5)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({"corpus": corpus, "tokenize": {**TOK, "val_sources": []}}))
    runner = CliRunner()
    r = runner.invoke(app, ["corpus", "--source", "jsonl", "--jsonl-path", "in.jsonl"])
    assert r.exit_code == 0, r.output
    assert json.loads(Path("metrics/corpus.json").read_text())["corpus"]["docs"] == len(tiny_docs())
    r = runner.invoke(app, ["tokenize", "--vocab-size", "420"])
    assert r.exit_code == 0, r.output
    assert TokenData(Path("data/tokens")).vocab_size == 420
    assert "wall_s" in json.loads(Path("metrics/timings/tokenize.json").read_text())["tokenize"]
    assert json.loads(Path("metrics/tokenize.json").read_text())["tokenize"]["denominator"] == "recomputed_from_docs"
    r = runner.invoke(app, ["tokenize", "--vocab-size", "9", "--corpus", "nowhere"])
    assert r.exit_code == 1 and "tokenize.vocab_size = 9" in r.output


def test_bad_shard_tokenizer_in_shards_mode(tmp_path):
    src = tmp_path / "s"
    src.mkdir()
    write_shard(src / "fineweb_val_000000.bin", np.array([1, 5], np.uint16))
    (tmp_path / "bad.model").write_bytes(b"not a model")
    c = cfg(source="shards", shards_dir=str(src), tokenizer_path=str(tmp_path / "bad.model"))
    with pytest.raises(GolfError, match="not a SentencePiece model"):
        import_shards(c, tmp_path / "out")
