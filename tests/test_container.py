"""The artifact container: bit-exact round trips, clear errors for every kind of damage, and it
beats plain brotli-11 over the same serialized bytes on a realistic quantized model."""

import dataclasses
import io
import struct

import brotli
import pytest
import torch

from golf.artifact.container import decode, describe, load_artifact, read_table
from golf.compress import container
from golf.compress.config import CompressConfig
from golf.errors import GolfError

BASE = CompressConfig(codec="brotli", brotli_quality=11, brotli_lgwin=22, zstd_level=19, lzma_preset=6,
                      lzma_extreme=False, byte_shuffle_stride=2, transpose=True, per_group=True, workers=2, chunk_bytes=0)
HEADER = {"format": "golf.qmodel", "version": 1, "model": {"dim": 48, "layers": 2}, "plan": {"a": {"bits": 6}}}


def quantize(w: torch.Tensor, k: float, r: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-row std clipping, as the records' SDClip: s = k*std/R in fp16, q = clamp(round(w/s))."""
    s = (k * w.std(dim=1) / r).clamp_min(1e-10).half()
    return torch.clamp(torch.round(w / s.float()[:, None]), -r, r).to(torch.int8), s


def synthetic_model(layers=2, dim=48, vocab=96, seed=0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    t = {}
    q, s = quantize(torch.randn(vocab, dim, generator=g), 14.0, 63)
    t["tok_emb.weight.q"], t["tok_emb.weight.scale"] = q, s
    shapes = {"attn.c_q": (dim, dim), "attn.c_k": (dim // 2, dim), "attn.c_v": (dim // 2, dim),
              "attn.proj": (dim, dim), "mlp.fc": (3 * dim, dim), "mlp.proj": (dim, 3 * dim)}
    for layer in range(layers):
        for name, shape in shapes.items():
            w = torch.randn(*shape, generator=g) * (0.5 + torch.rand(shape[0], 1, generator=g))
            q, s = quantize(w, 12.85, 31)
            t[f"blocks.{layer}.{name}.weight.q"], t[f"blocks.{layer}.{name}.weight.scale"] = q, s
        t[f"blocks.{layer}.attn_scale"] = torch.rand(dim, generator=g).half()
        t[f"blocks.{layer}.resid_mix"] = torch.rand(2, dim, generator=g)
    t["gate.gq"] = torch.randint(-127, 128, (8, 12), generator=g, dtype=torch.int8)
    return t


def odd_tensors() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return {"zero_d_f32": torch.tensor(1.5), "zero_d_i8.q": torch.tensor(-3, dtype=torch.int8),
            "empty_f16": torch.empty(0, 5, dtype=torch.float16), "empty.q": torch.empty(3, 0, dtype=torch.int8),
            "bf16": torch.randn(7, 3, generator=g).bfloat16(), "f32_3d": torch.randn(2, 3, 4, generator=g),
            "nan_inf": torch.tensor([float("nan"), float("inf"), -0.0], dtype=torch.float16),
            "i64": torch.arange(5), "flag": torch.tensor([True, False, True])}


def same_bits(a: dict, b: dict) -> None:
    assert list(a) == list(b) or set(a) == set(b)
    for k in a:
        x, y = a[k], b[k]
        assert x.dtype == y.dtype and x.shape == y.shape, k
        xb = x.contiguous().reshape(-1).view(torch.uint8) if x.dtype != torch.bool else x
        yb = y.contiguous().reshape(-1).view(torch.uint8) if y.dtype != torch.bool else y
        assert torch.equal(xb, yb), k


@pytest.mark.parametrize("codec", ["brotli", "zstd", "lzma", "auto"])
@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("transpose", [False, True])
@pytest.mark.parametrize("per_group", [False, True])
def test_round_trip_bit_exact(codec, stride, transpose, per_group):
    cfg = dataclasses.replace(BASE, codec=codec, byte_shuffle_stride=stride, transpose=transpose,
                              per_group=per_group, brotli_quality=5, zstd_level=3, lzma_preset=1)
    tensors = {**synthetic_model(layers=1, dim=16, vocab=24), **odd_tensors()}
    blob = container.encode(tensors, HEADER, cfg)
    got, header = decode(blob)
    assert header == HEADER
    same_bits(tensors, got)
    assert container.encode(got, header, cfg) == blob  # deterministic


def test_per_group_sections_and_transpose():
    tensors = synthetic_model()
    blob = container.encode(tensors, HEADER, BASE)
    names = [s["name"] for s in describe(blob)]
    assert names[:8] == ["meta", "q.tok_emb", "q.attn.c_q", "q.attn.c_k", "q.attn.c_v", "q.attn.proj",
                         "q.mlp.fc", "q.mlp.proj"]
    assert {"scale.float16", "q.other", "t.float16", "t.float32"} <= set(names)
    same_bits(tensors, decode(blob)[0])


def test_workers_do_not_change_bytes():
    tensors = synthetic_model(layers=1)
    assert (container.encode(tensors, HEADER, dataclasses.replace(BASE, workers=1))
            == container.encode(tensors, HEADER, dataclasses.replace(BASE, workers=4)))


def test_cache_reuses_and_stays_exact():
    tensors = synthetic_model(layers=1)
    cache: dict = {}
    a = container.encode(tensors, HEADER, BASE, cache)
    assert cache and container.encode(tensors, HEADER, BASE, cache) == a
    tensors["blocks.0.mlp.fc.weight.q"][0, 0] += 1
    b = container.encode(tensors, HEADER, BASE, cache)
    assert b == container.encode(tensors, HEADER, BASE) and b != a


@pytest.fixture(scope="module")
def blob() -> bytes:
    return container.encode(synthetic_model(layers=1), HEADER, dataclasses.replace(BASE, codec="auto"))


def table_end(blob: bytes) -> int:
    return read_table(blob)[1]


def test_wrong_magic(blob):
    with pytest.raises(GolfError, match="magic"):
        decode(b"PK\x03\x04" + blob[4:])


def test_unknown_version(blob):
    with pytest.raises(GolfError, match="version 7"):
        decode(blob[:4] + struct.pack("<H", 7) + blob[6:])


@pytest.mark.parametrize("frac", [0.0, 0.001, 0.01, 0.1, 0.5, 0.9, 0.999])
def test_truncated(blob, frac):
    cut = blob[: int(len(blob) * frac)]
    with pytest.raises(GolfError, match="truncated|shorter"):
        decode(cut)


def test_trailing_bytes(blob):
    with pytest.raises(GolfError, match="after the last section"):
        decode(blob + b"\0")


def test_flip_a_byte_in_every_region(blob):
    """Magic, version, table, table crc, and each section's payload (start, middle, end)."""
    end = table_end(blob)
    spots = {"magic": 0, "version": 4, "count": 6, "table": 12, "table_end": end - 5, "table_crc": end - 2}
    pos = end
    for s in describe(blob):
        for where, off in (("start", 0), ("mid", s["bytes"] // 2), ("end", s["bytes"] - 1)):
            spots[f"{s['name']}:{where}"] = pos + off
        pos += s["bytes"]
    for region, i in spots.items():
        bad = bytearray(blob)
        bad[i] ^= 0x40
        with pytest.raises(GolfError) as e:
            decode(bytes(bad))
        msg = str(e.value)
        assert any(w in msg for w in ("magic", "version", "corrupted", "truncated")), (region, msg)


def test_load_artifact_names_the_file(tmp_path, blob):
    p = tmp_path / "model.golf"
    p.write_bytes(blob[:-3])
    with pytest.raises(GolfError, match="model.golf.*truncated"):
        load_artifact(p)
    p.write_bytes(blob)
    assert load_artifact(p)[1] == HEADER


def test_beats_plain_brotli_on_int6_model():
    """Same tensors: our container (per-group, transposed, auto) vs brotli-11 over torch.save's bytes."""
    tensors = synthetic_model(layers=3, dim=128, vocab=512)
    buf = io.BytesIO()
    torch.save({"w": tensors, "m": HEADER}, buf)
    plain = len(brotli.compress(buf.getvalue(), quality=11, lgwin=24))
    ours = len(container.encode(tensors, HEADER, dataclasses.replace(BASE, codec="auto", brotli_lgwin=24)))
    assert ours < plain, (ours, plain)


def test_bundle_carries_the_artifact_package_and_nothing_else():
    """train_gpt.py carries golf/artifact (decode, model, scorer) only: no GPTQ, params loader or writers.
    golf/__init__.py runs as the parent package and golf/errors.py is the one shared exception type."""
    from golf.compress import bundle

    outside = {m for m in bundle.closure() if not m.startswith("golf.artifact")} - {"golf", "golf.errors"}
    assert not outside, f"the bundle reaches outside golf/artifact: {sorted(outside)}"


def test_bundle_carries_every_module_the_runner_imports():
    from golf.compress import bundle

    src = bundle.build_source()
    compile(src, "train_gpt.py", "exec")
    modules = bundle.closure()
    assert {"golf.artifact.container", "golf.artifact.dequant", "golf.artifact.model.gpt", "golf.artifact.sliding"} <= modules.keys()
    assert '"""' not in src.split("S=", 1)[1]  # docstrings stripped
    script = bundle.build_script()
    assert script.startswith("import lzma,base64;exec(") and script.count("\n") == 1
    assert bundle.code_bytes(script) < len(src) // 2


@pytest.mark.parametrize("codec", ["brotli", "zstd", "lzma", "auto"])
def test_chunked_round_trip_bit_exact(codec):
    tensors = synthetic_model(layers=2)
    cfg = dataclasses.replace(BASE, codec=codec, chunk_bytes=5000)
    blob = container.encode(tensors, HEADER, cfg)
    names = [s["name"] for s in describe(blob)]
    assert any(n.endswith("@1") for n in names) and all(len(n.encode()) < 256 for n in names)
    got, header = decode(blob)
    assert header == HEADER
    same_bits(tensors, got)


def test_a_missing_or_reordered_chunk_is_corruption():
    tensors = synthetic_model(layers=2)
    sections = container.encode_sections(tensors, HEADER, dataclasses.replace(BASE, codec="zstd", chunk_bytes=5000))
    i = next(i for i, s in enumerate(sections) if s.name.endswith("@1"))
    with pytest.raises(GolfError, match="streams"):
        decode(container.pack(sections[:i] + sections[i + 1:]))
    swapped = sections[:i - 1] + [sections[i], sections[i - 1]] + sections[i + 1:]
    with pytest.raises(GolfError, match="streams"):
        decode(container.pack(swapped))
