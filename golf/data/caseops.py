"""CaseOps: a lossless case transform applied before SentencePiece, as the top records do.

Capitals become lowercase letters plus reserved private-use operator characters, so the
tokenizer spends no pieces on "The"/"the"/"THE" variants:

    TITLE   U+E001  uppercase the first letter of the next word
    ALLCAPS U+E002  uppercase every letter of the next word (two or more capitals)
    CAPNEXT U+E003  uppercase the next letter (capitals inside a mixed-case word: "iPhone")
    ESC     U+E004  the next character is literal (an operator character in the input)

`decode(encode(text)) == text` for every string. A word is a maximal run of `_WORD` characters,
the same on both sides. A capital is lowered only when that is exactly invertible letter by letter
(`_lowerable`); anything else ("İ", "ß", "ǅ", Greek final sigma, a capital before a combining mark)
is left as it is, and the decoder, which only ever raises the lowercase half of a `_pair_of_lower` pair, leaves it
alone too. Lowering never changes a letter's UTF-8 length, so each transformed piece stands for
its own bytes minus its operators: the LUT byte rule with operators at 0 stays exact
(golf.data.bpb, docs/contracts.md).

`token_original_bytes` charges each token the original UTF-8 bytes it stands for (operators 0),
by aligning the transformed text back to the original: the BPB denominator never counts an operator.
"""

from __future__ import annotations

import re
import sys
import unicodedata
from collections.abc import Iterator, Sequence
from functools import lru_cache
from itertools import accumulate, pairwise

TITLE, ALLCAPS, CAPNEXT, ESC = "\ue001", "\ue002", "\ue003", "\ue004"
OPERATORS = (TITLE, ALLCAPS, CAPNEXT, ESC)

_WORD = re.compile(r"[^\W\d_]+")           # letters (and a few numeric signs like "²"): no digits, no "_"
_OPERATOR = re.compile("[\ue001-\ue004]")


@lru_cache(maxsize=4096)
def _pair_of_lower(low: str) -> bool:
    """`low` is the lowercase half of a one-to-one case pair that keeps its UTF-8 length."""
    up = low.upper()
    return (len(up) == 1 and up != low and up.lower() == low and up.isalpha() and low.isalpha()
            and len(up.encode("utf-8")) == len(low.encode("utf-8")))


@lru_cache(maxsize=4096)
def _lowerable_char(ch: str) -> bool:
    """`ch` is a capital whose lowercase raises back to it, and lowering keeps NFKC text NFKC."""
    low = ch.lower()
    return (len(low) == 1 and low != ch and _pair_of_lower(low) and low.upper() == ch
            and unicodedata.is_normalized("NFKC", low))


def _lowerable(text: str, i: int) -> bool:
    # before a combining mark a lowered letter could compose where the capital did not ("J̌" vs "ǰ")
    nxt = text[i + 1] if i + 1 < len(text) else ""
    return _lowerable_char(text[i]) and not (nxt and unicodedata.category(nxt).startswith("M"))


def _raise(ch: str) -> str:
    return ch.upper() if _pair_of_lower(ch) else ch


def _encode_word(text: str, start: int, end: int) -> Iterator[tuple[str, int]]:
    """Segments of one word: (operator, -1) or (lowered characters, index of the first in `text`)."""
    word = text[start:end]
    lowered = [k for k, c in enumerate(word) if c.lower() != c and _lowerable(text, start + k)]
    if not lowered:
        yield word, start
        return
    chars = list(word)
    for k in lowered:
        chars[k] = chars[k].lower()
    low = "".join(chars)
    if len(lowered) >= 2 and not any(c.upper() != c and _pair_of_lower(c) for c in word):
        yield ALLCAPS, -1
        yield low, start
        return
    pos = 0
    for k in lowered:
        if k > pos:
            yield low[pos:k], start + pos
        yield (TITLE if k == 0 else CAPNEXT), -1
        yield low[k], start + k
        pos = k + 1
    if pos < len(low):
        yield low[pos:], start + pos


@lru_cache(maxsize=1)
def _capital_or_operator() -> re.Pattern:
    """A character class of every character that lowercasing changes, plus the operators: the
    only places encode has work to do (built once: about 0.2 s)."""
    changed = [cp for cp in range(sys.maxunicode + 1) if not 0xD800 <= cp < 0xE000 and chr(cp).lower() != chr(cp)]
    runs: list[list[int]] = []
    for cp in changed:
        if runs and cp == runs[-1][1] + 1:
            runs[-1][1] = cp
        else:
            runs.append([cp, cp])
    body = "".join(re.escape(chr(a)) + ("-" + re.escape(chr(b)) if b > a else "") for a, b in runs)
    return re.compile(f"[{body}\ue001-\ue004]")


def _segments(text: str) -> Iterator[tuple[str, int]]:
    """The transformed text as segments: (operator, -1) or (characters, index of the first in `text`).

    Non-operator segments have exactly as many characters as the original span they replace."""
    pos = 0
    for m in _capital_or_operator().finditer(text):
        i = m.start()
        if i < pos:
            continue  # a later capital of a word already done
        if m.group() in OPERATORS:
            start, end = i, i + 1
        elif not (w := _WORD.match(text, i)):
            continue  # a cased symbol outside words ("Ⓐ"): stays as it is
        else:
            start, end = i, w.end()
            while start > pos and _WORD.match(text[start - 1]):
                start -= 1
        if start > pos:
            yield text[pos:start], pos
        if m.group() in OPERATORS:
            yield ESC, -1
            yield m.group(), i
        else:
            yield from _encode_word(text, start, end)
        pos = end
    if pos < len(text):
        yield text[pos:], pos


def encode(text: str) -> str:
    """The transformed text (lowercase letters + operators)."""
    return "".join(s for s, _ in _segments(text))


def decode(text: str) -> str:
    """The inverse of `encode`. Total on any string: an operator with nothing to act on is dropped."""
    if not _OPERATOR.search(text):
        return text
    out: list[str] = []
    pos = 0
    while (m := _OPERATOR.search(text, pos)) is not None:
        out.append(text[pos:m.start()])
        op, pos = m.group(), m.end()
        if pos >= len(text):
            break
        if op == ESC:
            out.append(text[pos])
            pos += 1
        elif op == ALLCAPS and (w := _WORD.match(text, pos)):
            out.append("".join(map(_raise, w.group())))
            pos = w.end()
        elif op in (TITLE, CAPNEXT):
            out.append(_raise(text[pos]))
            pos += 1
    out.append(text[pos:])
    return "".join(out)


def byte_costs(text: str) -> tuple[bytes, list[int]]:
    """(UTF-8 of encode(text), per byte of it: original bytes charged there).

    A transformed character's original bytes go one per byte (lowering keeps the length, so a
    byte-fallback token is charged its one byte, as the LUT rule does); operators cost 0."""
    out, costs = [], []
    for seg, origin in _segments(text):
        for k, ch in enumerate(seg):
            raw = ch.encode("utf-8")
            out.append(raw)
            charged = 0 if origin < 0 else len(text[origin + k].encode("utf-8"))
            spread = [1 if i < charged else 0 for i in range(len(raw))]
            spread[-1] += charged - sum(spread)  # (never: a length-changing character)
            costs.extend(spread)
    return b"".join(out), costs


def token_original_bytes(text: str, pieces: Sequence[bytes | str]) -> list[int]:
    """Original UTF-8 bytes each token stands for, given the transformed text cut into `pieces`
    (UTF-8 slices of encode(text), in order, covering it exactly). Sums to len(text.encode())."""
    transformed, costs = byte_costs(text)
    raw = [p.encode("utf-8") if isinstance(p, str) else bytes(p) for p in pieces]
    if b"".join(raw) != transformed:
        raise ValueError("the pieces do not concatenate to the transformed text")
    cum = [0, *accumulate(costs)]
    ends = [0, *accumulate(len(p) for p in raw)]
    return [cum[b] - cum[a] for a, b in pairwise(ends)]


def operator_positions(text: str) -> list[int]:
    """Indices of characters in `text` that are CaseOps operator characters."""
    return [m.start() for m in _OPERATOR.finditer(text)]
