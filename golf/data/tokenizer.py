"""SentencePiece BPE with exactly the challenge's settings (docs/techniques.md §1.4)."""

from __future__ import annotations

import io
import os
import re
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterable

from golf.artifact.bpb import SPACE
from golf.errors import GolfError

PAD_ID, BOS_ID, EOS_ID, UNK_ID = 0, 1, 2, 3

# Fixed settings of the challenge's build_sentencepiece_tokenizer (only vocab_size and
# character_coverage are ours to choose). SentencePiece's default remove_extra_whitespaces=True
# stays on, so whitespace runs collapse to one space: the BPB denominator counts that text.
SETTINGS: dict[str, Any] = dict(
    model_type="bpe", byte_fallback=True, split_digits=True, normalization_rule_name="nmt_nfkc",
    add_dummy_prefix=False, pad_id=PAD_ID, bos_id=BOS_ID, eos_id=EOS_ID, unk_id=UNK_ID,
    hard_vocab_limit=False,
)


def prepare_text(text: str) -> str:
    """What the challenge feeds SentencePiece: NUL -> space, stripped (empty docs are skipped)."""
    return text.replace("\x00", " ").strip()


def train_tokenizer(texts: Iterable[str], vocab_size: int, character_coverage: float,
                    user_symbols: tuple[str, ...] = ()) -> bytes:
    """Train on `texts` (already prepared, non-empty); return the serialized model.

    `user_symbols` become user-defined pieces (ids 4.., before the byte pieces): SentencePiece
    matches them whole and never merges them with text (the CaseOps operators).

    SentencePiece's own errors become one line; a vocabulary it cannot fill (hard_vocab_limit is
    off, so it silently stops short) is an error too, since the model size is the contract.
    """
    import sentencepiece as spm

    model = io.BytesIO()
    try:
        spm.SentencePieceTrainer.train(
            sentence_iterator=iter(texts), model_writer=model, vocab_size=vocab_size,
            character_coverage=character_coverage, num_threads=os.cpu_count() or 1, minloglevel=2,
            **SETTINGS, **({"user_defined_symbols": list(user_symbols)} if user_symbols else {}))
    except RuntimeError as e:
        msg = str(e)
        if m := re.search(r"Vocabulary size is smaller than required_chars\. (\d+) vs (\d+)", msg):
            raise GolfError(f"tokenize.vocab_size = {vocab_size}: the text needs at least {m.group(2)} "
                            "pieces (specials + byte pieces + covered characters); raise vocab_size "
                            "or lower character_coverage") from None
        raise GolfError(f"SentencePiece training failed: {msg.splitlines()[0] if msg else type(e).__name__}") from None
    blob = model.getvalue()
    sp = load_processor(blob)
    if sp.get_piece_size() != vocab_size:
        raise GolfError(f"tokenize.vocab_size = {vocab_size}: the training text supports only "
                        f"{sp.get_piece_size()} pieces; lower vocab_size or use more text")
    check_tokenizer(sp, "the trained tokenizer")
    return blob


def load_processor(model: bytes | Path) -> Any:
    """A SentencePieceProcessor from a serialized model or a .model file."""
    import sentencepiece as spm

    if isinstance(model, (bytes, bytearray)):
        return spm.SentencePieceProcessor(model_proto=bytes(model))
    path = Path(model)
    if not path.is_file():
        raise GolfError(f"{path}: tokenizer model not found")
    try:
        return spm.SentencePieceProcessor(model_file=str(path))
    except (RuntimeError, OSError) as e:
        raise GolfError(f"{path}: not a SentencePiece model ({str(e).splitlines()[0] if str(e) else e})") from None


def check_tokenizer(sp: Any, name: str) -> None:
    """The byte accounting needs BOS = 1 and a standalone ▁ piece (issue #897: without it every
    space becomes byte-fallback tokens and BPB is understated by ~20%)."""
    if sp.bos_id() != BOS_ID:
        raise GolfError(f"{name}: bos_id is {sp.bos_id()}, expected {BOS_ID}")
    if sp.piece_to_id(SPACE) == sp.unk_id():
        raise GolfError(f"{name}: no standalone '{SPACE}' piece; byte accounting would be wrong")
    if sp.get_piece_size() >= 1 << 16:
        raise GolfError(f"{name}: {sp.get_piece_size()} pieces do not fit uint16 shards")


@lru_cache(maxsize=1)
def _normalizer() -> Any:
    import sentencepiece as spm

    return spm.SentencePieceNormalizer(rule_name=SETTINGS["normalization_rule_name"], add_dummy_prefix=False,
                                       remove_extra_whitespaces=True, escape_whitespaces=True)


def normalize_text(text: str) -> str:
    """`text` as a tokenizer with SETTINGS normalizes it, before any tokenizer exists (▁ read as a
    space): what CaseOps transforms, so that the tokenizer's own normalizer leaves the result alone."""
    return _normalizer().normalize(text).replace(SPACE, " ")


def normalized_bytes(sp: Any, text: str) -> int:
    """UTF-8 bytes of `text` as the tokenizer normalizes it (NFKC, whitespace runs collapsed,
    ends stripped): the text the LUT byte rule charges, and the BPB denominator."""
    return len(sp.normalize(text).replace(SPACE, " ").encode("utf-8"))
