"""What a tokenizer's pieces stand for: which byte rule may charge them, and their surface bytes.

The canonical LUT rule (golf/artifact/bpb.py) charges every piece the UTF-8 bytes of its text.
That is only true when every piece is original text. A user-defined piece (the CaseOps operators
U+E001..U+E004, or anything a tokenizer's maker reserved) and a control piece beyond pad/BOS/EOS
are not: charging an operator its 3 bytes is the bug that gave one record a 1.0066 BPB whose honest
value was about 1.077. `byte_rule` names the rule a tokenizer allows and refuses the rest, naming
the pieces. The Python API of sentencepiece cannot tell a user-defined piece from a learned one,
so `piece_types` reads the types from the serialized model (ModelProto, a protobuf).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from golf.artifact.bpb import CASEOPS_OPERATORS, SPACE
from golf.errors import GolfError

NORMAL, UNKNOWN, CONTROL, USER_DEFINED, UNUSED, BYTE = 1, 2, 3, 4, 5, 6  # ModelProto.SentencePiece.Type


def _varint(blob: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = blob[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if byte < 0x80:
            return value, pos


def _fields(blob: bytes) -> Iterator[tuple[int, Any]]:
    """(field number, value) of one protobuf message: ints for varints, bytes otherwise."""
    pos = 0
    while pos < len(blob):
        key, pos = _varint(blob, pos)
        wire = key & 7
        if wire == 0:
            value, pos = _varint(blob, pos)
        elif wire in (1, 5):
            width = 8 if wire == 1 else 4
            value, pos = blob[pos:pos + width], pos + width
        elif wire == 2:
            n, pos = _varint(blob, pos)
            value, pos = blob[pos:pos + n], pos + n
        else:
            raise GolfError(f"tokenizer model: protobuf wire type {wire} is not one SentencePiece writes")
        yield key >> 3, value


def piece_types(sp: Any) -> list[int]:
    """The type of every piece, by id (field 1 of ModelProto is the pieces; a piece's field 3 its type)."""
    types = [dict(_fields(msg)).get(3, NORMAL) for field, msg in _fields(sp.serialized_model_proto()) if field == 1]
    if len(types) != sp.get_piece_size():
        raise GolfError(f"tokenizer model: read {len(types)} piece types for {sp.get_piece_size()} pieces")
    return types


def describe(sp: Any, ids: list[int]) -> str:
    def one(t: int) -> str:
        piece = sp.id_to_piece(t)
        return f"id {t} " + (" ".join(f"U+{ord(c):04X}" for c in piece) if not piece.isprintable() else repr(piece))

    return ", ".join(one(t) for t in ids[:8]) + (f" and {len(ids) - 8} more" if len(ids) > 8 else "")


def caseops_ids(sp: Any, name: str) -> list[int]:
    """Ids of the four operator pieces, which must be user-defined (SentencePiece then never
    merges them with text), else a GolfError naming what is missing."""
    types = piece_types(sp)
    ids = [sp.piece_to_id(c) for c in CASEOPS_OPERATORS]
    bad = [f"U+{ord(c):04X}" for c, t in zip(CASEOPS_OPERATORS, ids)
           if t == sp.unk_id() or types[t] != USER_DEFINED]
    if bad:
        raise GolfError(f"{name}: no reserved CaseOps pieces for {', '.join(bad)} (text_transform = caseops needs "
                        "U+E001..U+E004 as user-defined pieces)")
    return ids


def non_text_pieces(sp: Any, allowed: tuple[int, ...] = ()) -> list[int]:
    """Ids of user-defined pieces and of control pieces other than pad/BOS/EOS, less `allowed`."""
    specials = {sp.pad_id(), sp.bos_id(), sp.eos_id()}
    return [t for t, kind in enumerate(piece_types(sp))
            if t not in allowed and (kind == USER_DEFINED or (kind == CONTROL and t not in specials))]


def byte_rule(sp: Any, transform: str, name: str) -> str:
    """The per-token byte rule this tokenizer allows under `transform` ("lut" or "caseops"), or a
    GolfError naming the pieces no LUT may charge."""
    allowed = tuple(caseops_ids(sp, name)) if transform == "caseops" else ()
    if bad := non_text_pieces(sp, allowed):
        ops = {sp.piece_to_id(c) for c in CASEOPS_OPERATORS} - {sp.unk_id()}
        hint = " (the CaseOps operators: set tokenize.text_transform = caseops)" if ops and ops <= set(bad) else ""
        raise GolfError(f"{name}: pieces that are not original text: {describe(sp, bad)}; an LUT byte count "
                        f"would charge them as text{hint}")
    return "caseops" if transform == "caseops" else "lut"


def surface_table(sp: Any) -> list[bytes]:
    """The text bytes each id decodes to: ▁ as a space, a byte piece as its byte, control and
    unknown pieces as nothing."""
    out = []
    for t in range(sp.get_piece_size()):
        if sp.is_control(t) or sp.is_unknown(t) or sp.is_unused(t):
            out.append(b"")
        elif sp.is_byte(t):
            out.append(bytes([int(sp.id_to_piece(t)[3:5], 16)]))
        else:
            out.append(sp.id_to_piece(t).replace(SPACE, " ").encode("utf-8"))
    return out
