"""CaseOps: exact round trip on adversarial and random Unicode text; original bytes per token."""

import random
import unicodedata
from itertools import pairwise

import pytest

from golf.data.caseops import (
    ALLCAPS,
    CAPNEXT,
    ESC,
    OPERATORS,
    TITLE,
    byte_costs,
    decode,
    encode,
    operator_positions,
    token_original_bytes,
)

ADVERSARIAL = [
    "", " ", "   \t\n  \u3000 ", "a", "A", "I", "The NASA Launch", "iPhone", "McDonald", "eBay's CEO",
    "HELLO world", "Hello WORLD again", "ALL CAPS SENTENCE.", "mIxEd CaSe", "ABCdef", "abcDEF", "AbC",
    "İstanbul İ i̇", "ß STRASSE Straße ẞ", "ΟΔΟΣ Οδός σς Σ ΣΑΣ", "Москва МОСКВА мОСКВА Ёлка ЁЖ",
    "ǅemal ǄEMAL ǆ ǈ Ǉ", "ﬁ ﬀ Ⅻ ⅻ Ⓐ ⓐ ½ ² ㎏", "J\u030cohn A\u0301B ÁB", "Kelvin \u212a Ohm \u2126 Å",
    "0123 4567 89 3.14 1,000,000 COVID19 U2", "emoji 🎉 THE 🎉 𝐀𝐁𝐂 𝒜", "日本語 テキスト 한국어 ÀÉÎÕÜ àéîõü",
    "ⱥ Ⱥ ɐ Ɐ ſ ı", "tab\tSEP\u00a0nbsp", TITLE, ALLCAPS + "word", CAPNEXT + ESC, ESC, ESC + ESC + TITLE,
    "x" + TITLE + "Y" + ESC + "z", "Ends with op" + ALLCAPS, "\ue000\ue005 private use nearby",
    "A" * 50 + "b", "_Under_Score_ snake_CASE", "\U0001d400BC", "ǰ J̌ ǰ", "ᾈ ᾀ ῼ",
]


def test_round_trip_adversarial():
    for text in ADVERSARIAL:
        assert decode(encode(text)) == text, repr(text)


def test_examples_match_the_reference_transform():
    assert encode("The NASA Launch") == f"{TITLE}the {ALLCAPS}nasa {TITLE}launch"
    assert encode("iPhone") == f"i{CAPNEXT}phone"
    assert encode("McDonald") == f"{TITLE}mc{CAPNEXT}donald"
    assert encode("lower case stays") == "lower case stays"
    assert encode("ΟΔΟΣ Москва") == f"{ALLCAPS}οδοσ {TITLE}москва"
    # ς has no capital of its own (it raises to Σ, which lowers to σ), so the word is still all caps
    assert encode("ΟΔΟς") == f"{ALLCAPS}οδος"


def test_not_invertible_letters_are_left_as_they_are():
    for text in ("İ", "ß", "ǅ", "ς", "ẞ", "\u212a", "Ⱥ", "J\u030c", "Ǆ"):
        # İ lowers to 2 code points, ß/ς/ǅ raise to something else, K (Kelvin) lowers to k,
        # Ⱥ changes UTF-8 length, J before a combining mark could compose once lowered,
        # Ǆ lowers to ǆ, which NFKC rewrites to "dž"
        assert encode(text) == text, repr(text)


def test_operator_characters_are_escaped_never_lost():
    text = f"a{TITLE}b{ESC}{ESC}c{ALLCAPS}"
    enc = encode(text)
    assert enc.count(ESC) == 2 * text.count(ESC) + sum(text.count(o) for o in OPERATORS if o != ESC)
    assert decode(enc) == text
    assert operator_positions(text) == [1, 3, 4, 6]


def _random_text(rng: random.Random, n: int) -> str:
    pools = [
        lambda: rng.choice("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"),
        lambda: rng.choice(" \t\n  .,;'-_0123456789"),
        lambda: rng.choice(OPERATORS),
        lambda: rng.choice("İıßẞΣσςǄǅǆǇǈǉÀàÉéΩωЁёЖжⱥȺſ\u212a\u0301\u0308\u030c\u0345"),
        lambda: chr(rng.randrange(0x80, 0x3000)),
        lambda: chr(rng.randrange(0x3000, 0xD800)),
        lambda: chr(rng.choice([rng.randrange(0xE000, 0x10000), rng.randrange(0x10000, 0x110000)])),
    ]
    weights = [30, 15, 3, 10, 20, 5, 5]
    return "".join(rng.choices(pools, weights)[0]() for _ in range(n))


def test_round_trip_random_unicode():
    rng = random.Random(18)
    for _ in range(3000):
        text = _random_text(rng, rng.randrange(0, 40))
        enc = encode(text)
        assert decode(enc) == text, repr(text)
        assert not set(enc) - set(text) - set(OPERATORS) - {c.lower() for c in text}, repr(text)


def test_nfkc_text_stays_nfkc():
    """Lowering never creates text the tokenizer's NFKC normalizer would rewrite (docs in
    golf/data/caseops.py): the tokens of normalized text decode to exactly that text."""
    rng = random.Random(7)
    checked = 0
    for _ in range(3000):
        text = unicodedata.normalize("NFKC", _random_text(rng, rng.randrange(1, 30)))
        if unicodedata.is_normalized("NFKC", text):
            assert unicodedata.is_normalized("NFKC", encode(text)), repr(text)
            checked += 1
    assert checked > 2000


def _cuts(rng: random.Random, data: bytes, on_chars: bool) -> list[bytes]:
    if on_chars:
        text = data.decode("utf-8")
        points = sorted(rng.sample(range(1, len(text)), min(len(text) - 1, rng.randrange(0, 12)))) if len(text) > 1 else []
        bounds = [0, *points, len(text)]
        return [text[a:b].encode("utf-8") for a, b in pairwise(bounds)]
    points = sorted(rng.sample(range(1, len(data)), min(len(data) - 1, rng.randrange(0, 12)))) if len(data) > 1 else []
    bounds = [0, *points, len(data)]
    return [data[a:b] for a, b in pairwise(bounds)]


def test_token_original_bytes_sum_to_the_original():
    rng = random.Random(3)
    for _ in range(2000):
        text = _random_text(rng, rng.randrange(0, 40))
        transformed = encode(text).encode("utf-8")
        for on_chars in (True, False):  # byte cuts: a byte-fallback token may hold part of a character
            pieces = _cuts(rng, transformed, on_chars)
            charged = token_original_bytes(text, pieces)
            assert len(charged) == len(pieces) and min(charged, default=0) >= 0
            assert sum(charged) == len(text.encode("utf-8")), repr(text)


def test_operators_cost_zero_and_other_pieces_their_own_bytes():
    """Without literal operators in the input, a piece cut on character boundaries is charged its
    UTF-8 length minus 3 per operator: the LUT rule with operators at 0 is exact."""
    rng = random.Random(5)
    for _ in range(2000):
        text = "".join(c for c in _random_text(rng, rng.randrange(1, 40)) if c not in OPERATORS)
        pieces = _cuts(rng, encode(text).encode("utf-8"), on_chars=True)
        for piece, charged in zip(pieces, token_original_bytes(text, pieces)):
            ops = sum(piece.decode("utf-8").count(o) for o in OPERATORS)
            assert charged == len(piece) - 3 * ops, (text, piece)


def test_escaped_literal_is_charged_its_bytes():
    text = f"x{TITLE}"
    pieces = [p.encode() for p in ("x", ESC, TITLE)]
    assert b"".join(pieces) == encode(text).encode()
    assert token_original_bytes(text, pieces) == [1, 0, 3]
    assert token_original_bytes("The", [TITLE, "the"]) == [0, 3]


def test_byte_costs_one_per_byte_operators_zero():
    data, costs = byte_costs("Ж")
    assert data == f"{TITLE}ж".encode() and costs == [0, 0, 0, 1, 1]
    pieces = [TITLE.encode(), "ж".encode()[:1], "ж".encode()[1:]]  # byte fallback: one byte per token
    assert token_original_bytes("Ж", pieces) == [0, 1, 1]


def test_pieces_that_do_not_cover_the_text():
    with pytest.raises(ValueError, match="do not concatenate"):
        token_original_bytes("The", ["the"])


def test_decode_is_total():
    for text in (TITLE, ALLCAPS + " x", CAPNEXT + "1", ESC, "a" + ALLCAPS):
        decode(text)
    assert decode(f"{TITLE}1") == "1" and decode(f"{ALLCAPS} x") == " x"
