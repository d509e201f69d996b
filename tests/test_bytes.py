"""Byte accounting: the LUT rule, the sidecar, and the identity with the normalized text."""

import numpy as np
import pytest
import torch
from test_tokenize import cfg, make_corpus, tiny_docs

from golf.artifact.bpb import build_luts, sidecar, target_bytes
from golf.data.prepare import build_tokens
from golf.data.tokenizer import SPACE, load_processor, normalized_bytes, prepare_text
from golf.data.tokens import TokenData


@pytest.fixture(scope="module")
def tok(tmp_path_factory):
    root = tmp_path_factory.mktemp("bytes")
    build_tokens(cfg(vocab_size=380, val_percent=40), make_corpus(root / "corpus"), root / "tokens")
    t = TokenData(root / "tokens")
    return t, load_processor(t.tokenizer_path)


def test_luts(tok):
    t, sp = tok
    luts = t.luts
    assert luts.base_bytes.dtype == np.int16 and len(luts.base_bytes) == t.vocab_size
    assert luts.is_boundary[[0, 1, 2, 3]].all() and luts.base_bytes[[0, 1, 2, 3]].tolist() == [0] * 4
    assert (luts.base_bytes[4:260] == 1).all()  # byte-fallback pieces: 1 byte, not len("<0xXX>")
    space = sp.piece_to_id(SPACE)
    assert space != sp.unk_id() and luts.has_leading_space[space] and luts.base_bytes[space] == 0


def test_identity_per_doc(tok):
    """Σ LUT bytes of a doc == UTF-8 bytes of its normalized text == bytes of decode(encode(text))."""
    _, sp = tok
    luts = build_luts(sp)
    raw_total = norm_total = 0
    for d in tiny_docs():
        text = prepare_text(d["text"])
        ids = [1] + sp.encode(text)
        charged = int(sidecar(np.array(ids), luts, 1).astype(np.int64).sum())
        assert charged == normalized_bytes(sp, text) == len(sp.decode(ids[1:]).encode())
        raw_total += len(d["text"].encode())
        norm_total += charged
    assert norm_total < raw_total  # collapsed whitespace, NFKC: the normalized text is shorter


def test_sidecar_equals_lut_on_val(tok):
    t, _ = tok
    val = np.asarray(t.val, np.int64)
    prev = np.concatenate([[t.bos_id], val[:-1]])
    want = target_bytes(prev, val, t.luts)
    assert np.asarray(t.val_bytes).tolist() == want.tolist()
    assert int(np.asarray(t.val_bytes)[val == t.bos_id].sum()) == 0
    assert int(want.sum()) == t.manifest["splits"]["val"]["bytes"]


def test_multibyte_and_whitespace_counts(tok):
    _, sp = tok
    text = prepare_text("日本語   x\t\t½ 🎉 42")
    # NFKC maps ½ to 1⁄2 and runs of whitespace collapse to one space
    assert normalized_bytes(sp, text) == len("日本語 x 1⁄2 🎉 42".encode())
    assert normalized_bytes(sp, text) == int(sidecar(np.array([1] + sp.encode(text)), build_luts(sp), 1).sum())


def test_target_bytes_torch_matches_numpy(tok):
    t, _ = tok
    val = np.asarray(t.val[:500], np.int64)
    prev, tgt = val[:-1], val[1:]
    a = target_bytes(prev, tgt, t.luts)
    b = target_bytes(torch.from_numpy(prev), torch.from_numpy(tgt), t.luts)
    assert b.dtype == torch.int64 and b.tolist() == a.tolist()
