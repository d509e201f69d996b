"""Codecs and byte shuffle: exact inverses; damaged streams fail as GolfError."""

import dataclasses
import os

import pytest

from golf.artifact.codecs import decode
from golf.artifact.shuffle import shuffle, unshuffle
from golf.artifact.typed import build_section
from golf.compress import codecs
from golf.compress.config import CompressConfig
from golf.errors import GolfError

CFG = CompressConfig(codec="auto", brotli_quality=11, brotli_lgwin=22, zstd_level=19, lzma_preset=6,
                     lzma_extreme=False, byte_shuffle_stride=2, transpose=True, per_group=True, workers=2, chunk_bytes=0)
DATA = bytes(range(256)) * 37 + os.urandom(1000) + b"golf" * 500


@pytest.mark.parametrize("name", ["store", "brotli", "zstd", "lzma"])
def test_codec_round_trip(name):
    for data in (DATA, b"", b"x"):
        out = codecs.encode(name, data, CFG)
        assert decode(name, out, len(data)) == data
    if name != "store":
        assert len(codecs.encode(name, DATA, CFG)) < len(DATA)


@pytest.mark.parametrize("name", ["brotli", "zstd", "lzma"])
def test_codec_damage_is_golf_error(name):
    out = codecs.encode(name, DATA, CFG)
    with pytest.raises(GolfError, match=name):
        decode(name, out[: len(out) // 2], len(DATA))
    with pytest.raises(GolfError, match=name):
        decode(name, out, len(DATA) + 1)  # the table's raw length disagrees


@pytest.mark.parametrize("stride", [1, 2, 3, 4, 7])
@pytest.mark.parametrize("n", [0, 1, 5, 6, 7, 100, 1001])
def test_shuffle_inverse_and_order(stride, n):
    data = os.urandom(n)
    s = shuffle(data, stride)
    assert len(s) == n and unshuffle(s, stride) == data
    if n > stride:
        assert s == b"".join(data[i::stride] for i in range(stride))


def test_config_rejects_bad_values():
    good = dataclasses.asdict(CFG)
    assert build_section(good, "compress", CompressConfig) == CFG
    for key, bad in [("brotli_quality", 12), ("brotli_lgwin", 25), ("zstd_level", 0), ("lzma_preset", 10),
                     ("byte_shuffle_stride", 0), ("workers", 0)]:
        with pytest.raises(GolfError, match=f"compress.{key}"):
            build_section({**good, key: bad}, "compress", CompressConfig)
    with pytest.raises(GolfError, match="compress.codec"):
        build_section({**good, "codec": "zlib"}, "compress", CompressConfig)
