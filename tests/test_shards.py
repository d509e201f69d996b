"""The challenge shard format: round trip, every bad-header case, split loading."""

import numpy as np
import pytest

from golf.artifact.shards import HEADER_BYTES, MAGIC, list_shards, load_split, read_shard
from golf.data.shards import ShardWriter, write_shard
from golf.errors import GolfError


def test_round_trip(tmp_path):
    toks = np.array([1, 0, 65535, 7, 300, 2], np.uint16)
    write_shard(tmp_path / "train_000000.bin", toks)
    raw = (tmp_path / "train_000000.bin").read_bytes()
    header = np.frombuffer(raw[:HEADER_BYTES], "<i4")
    assert header[:3].tolist() == [MAGIC, 1, 6] and not header[3:].any()
    assert len(raw) == HEADER_BYTES + 2 * 6
    got = read_shard(tmp_path / "train_000000.bin")
    assert got.dtype == np.uint16 and got.tolist() == toks.tolist()


def test_empty_shard(tmp_path):
    write_shard(tmp_path / "val_000000.bin", np.zeros(0, np.uint16))
    assert len(read_shard(tmp_path / "val_000000.bin")) == 0


def _corrupt(tmp_path, slot=None, value=None, cut=0):
    p = tmp_path / "train_000000.bin"
    write_shard(p, np.arange(10, dtype=np.uint16))
    raw = bytearray(p.read_bytes())
    if slot is not None:
        raw[4 * slot:4 * slot + 4] = np.array([value], "<i4").tobytes()
    p.write_bytes(bytes(raw[:len(raw) - cut]))
    return p


@pytest.mark.parametrize("kwargs, words", [
    (dict(slot=0, value=12345), ["magic 12345", "20240520"]),
    (dict(slot=1, value=2), ["version 2"]),
    (dict(slot=2, value=11), ["11 tokens", "truncated"]),
    (dict(cut=3), ["10 tokens", "1041 bytes"]),
    (dict(cut=1030), ["shorter than"]),
])
def test_bad_headers(tmp_path, kwargs, words):
    p = _corrupt(tmp_path, **kwargs)
    with pytest.raises(GolfError) as e:
        read_shard(p)
    msg = str(e.value)
    assert str(p) in msg and "\n" not in msg
    for w in words:
        assert w in msg


def test_missing_shard(tmp_path):
    with pytest.raises(GolfError, match="not found"):
        read_shard(tmp_path / "nope.bin")


def test_write_rejects_out_of_range(tmp_path):
    with pytest.raises(ValueError):
        write_shard(tmp_path / "x.bin", np.array([70000]))


def test_writer_straddles_and_load_split(tmp_path):
    w = ShardWriter(tmp_path, "val", shard_tokens=4)
    w.add(np.array([1, 5, 6], np.uint16))
    w.add(np.array([1, 7, 8, 9, 10], np.uint16))
    paths = w.close()
    assert [p.name for p in paths] == ["val_000000.bin", "val_000001.bin"]
    assert [len(read_shard(p)) for p in paths] == [4, 4]
    ShardWriter(tmp_path, "val_bytes", 4).close()  # an empty sidecar shard must not match "val"
    assert [p.name for p in list_shards(tmp_path, "val")] == ["val_000000.bin", "val_000001.bin"]
    assert load_split(tmp_path, "val").tolist() == [1, 5, 6, 1, 7, 8, 9, 10]
    with pytest.raises(GolfError, match="no train_NNNNNN.bin"):
        load_split(tmp_path, "train")
