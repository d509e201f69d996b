"""Fuzzing the artifact loader (decode -> dequantize -> GPT), as an attacker would edit model.golf.

Three tiny real artifacts (GPTQ-free RTN codes with LQER and Hadamard; a k-means codebook; the
whole-blob layout), each attacked two ways, every case seeded:

- random damage: bit flips, truncations, byte runs, appended bytes, table edits;
- crafted files with every crc32 valid: the manifest, header, model config, plan or section
  table edited and the sections re-encoded (the writer's own helpers), once with the stale
  content digest and once with the digest recomputed (so the checks behind it run too), and
  decompression bombs in all three codecs (64 MiB of zeros behind a small declared length).

Outcomes: only GolfError (no other exception type), every case within a time and memory bound
(the bombs one by one, with flat memory), and no silent wrong load: a file whose digest was not
recomputed either fails or loads bit-identical tensors and header. A file whose digest was
recomputed is self-consistent (the digest is a checksum, not a signature): it may load, as what
it now says. The fuzzing runs in a fresh process so its peak RSS measures only the cases.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import lzma
import os
import random
import re
import subprocess
import sys
import time
import zlib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BOMB_BYTES = 64 << 20  # decoded size of each bomb: 64 MiB of zeros
CASE_S, CASE_MIB = 2.0, 24  # bounds per case (bombs included): seconds, peak-RSS growth in MiB
RANDOM_CASES, SEEDS = 200, 2  # per base artifact (3 bases): random cases, seeds of each crafted edit


# ---------------------------------------------------------------------------------- the bases

def _tiny_qmodel(**quant):
    import torch

    sys.path.insert(0, str(ROOT / "tests"))
    from conftest import tiny_model_values

    from golf.artifact.model.config import ModelConfig
    from golf.artifact.model.gpt import GPT
    from golf.params import load_section, section_dict
    from golf.quant import qmodel
    from golf.quant.config import QuantizeConfig

    torch.manual_seed(0)
    model = GPT(ModelConfig(**tiny_model_values()))
    state = {k: v.detach() for k, v in model.state_dict().items()}
    g = torch.Generator().manual_seed(1)
    sites = list(model.hessian_sites())
    H = {n: (lambda x: x.T @ x)(torch.randn(48, state[n].shape[1], generator=g)) for n in sites}
    cfg = load_section(ROOT / "params.yaml", "quantize", QuantizeConfig,
                       dict(device="cpu", method="rtn", block_size=8, **quant))
    tensors, header, _ = qmodel.quantize_state_dict(state, H, cfg, {"model": section_dict(model.cfg)}, names=sites)
    return tensors, header


def bases():
    from golf.compress.config import CompressConfig
    from golf.params import load_section

    ccfg = load_section(ROOT / "params.yaml", "compress", CompressConfig)
    small = dict(brotli_quality=5, zstd_level=3, lzma_preset=1, lzma_extreme=False, workers=1)
    a = _tiny_qmodel(lqer_enabled=True, lqer_top_k=3, hadamard=True)
    b = _tiny_qmodel(codebook_k=8, codebook_iters=3)
    return [(*a, dataclasses.replace(ccfg, codec="brotli", chunk_bytes=4096, **small)),
            (*b, dataclasses.replace(ccfg, codec="zstd", chunk_bytes=0, **small)),
            (*a, dataclasses.replace(ccfg, codec="lzma", per_group=False, transpose=False, chunk_bytes=0, **small))]


# ------------------------------------------------------------- crafting files with valid crcs

@dataclasses.dataclass
class Part:
    name: str
    codec: str
    flags: int
    stride: int
    raw: bytes
    payload: bytes | None = None  # None: encode `raw` with `codec` (a bomb sets its own)
    raw_len: int | None = None  # None: len(raw)


def parts(tensors, header, cfg) -> tuple[list[Part], dict]:
    """The writer's sections, unencoded, and its meta (golf/compress/container.py's steps)."""
    from golf.artifact.container import FLAG_TRANSPOSED, digest
    from golf.compress.container import _chunks, _stride
    from golf.compress.layout import split

    raw, manifest = split(tensors, cfg.per_group, cfg.transpose)
    meta = {"digest": digest(header, manifest, tensors), "header": header, "tensors": manifest}
    flagged = {e["section"] for e in manifest if e["transposed"]}
    out = [Part("meta", cfg.codec, 0, 1, b"")]
    for name, data in _chunks(raw, cfg.chunk_bytes):
        base = name.partition("@")[0]
        flags = FLAG_TRANSPOSED if base in flagged else 0
        out.append(Part(name, cfg.codec, flags, _stride(base, cfg.per_group, cfg), data))
    return out, meta


_CODED: dict = {}  # (codec, stride, raw) -> payload: most parts are unchanged from case to case


def build(ps: list[Part], meta, cfg, meta_bytes: bytes | None = None) -> bytes:
    from golf.artifact.container import Section
    from golf.artifact.shuffle import shuffle
    from golf.compress import codecs
    from golf.compress.container import pack

    if meta_bytes is None:
        meta_bytes = json.dumps(meta, sort_keys=True, separators=(",", ":")).encode()
    sections = []
    for p in ps:
        raw = meta_bytes if p.name == "meta" and not p.raw else p.raw
        key = (p.codec, p.stride, raw)
        if p.payload is None and key not in _CODED:
            _CODED[key] = codecs.encode(p.codec, shuffle(raw, p.stride), cfg)
        payload = p.payload if p.payload is not None else _CODED[key]
        sections.append(Section(p.name, p.codec, p.flags, p.stride, len(raw) if p.raw_len is None else p.raw_len,
                                zlib.crc32(raw), payload))
    return pack(sections)


def redigest(ps: list[Part], meta) -> None:
    """Recompute meta's digest for the edited manifest and header, where the edit still decodes."""
    from golf.artifact.container import _unchunk, digest
    from golf.artifact.layout import join

    try:
        tensors = join(_unchunk([(p.name, p.raw) for p in ps if p.name != "meta"]), meta["tensors"])
        meta["digest"] = digest(meta["header"], meta["tensors"], tensors)
    except Exception:  # the edit does not decode: the stale digest stays
        pass


def bomb(codec: str) -> bytes:
    """A bare stream of BOMB_BYTES zeros, made in 1 MiB steps (flat memory here too)."""
    import brotli
    import zstandard

    chunk, steps = bytes(1 << 20), BOMB_BYTES >> 20
    if codec == "brotli":
        c = brotli.Compressor(quality=1)
        return b"".join(c.process(chunk) for _ in range(steps)) + c.finish()
    if codec == "zstd":
        c = zstandard.ZstdCompressor(level=1, write_checksum=False, write_content_size=True)
        return _zstd_stream(c, chunk, steps)
    c = lzma.LZMACompressor(format=lzma.FORMAT_RAW, filters=[{"id": lzma.FILTER_LZMA2, "preset": 0}])
    return b"".join(c.compress(chunk) for _ in range(steps)) + c.flush()


def _zstd_stream(c, chunk: bytes, steps: int) -> bytes:
    o = c.compressobj(size=len(chunk) * steps)
    return b"".join(o.compress(chunk) for _ in range(steps)) + o.flush()


# -------------------------------------------------------------------------------- the edits
# Each edit changes a deep copy in place; `r` is the case's seeded random.Random.

ENTRY_EDITS = {  # on one manifest entry `e`, picked at random; `m` is the whole meta
    "transposed flipped": lambda r, e, m: e.update(transposed=not e["transposed"]),
    "offset shifted": lambda r, e, m: e.update(offset=e["offset"] + r.choice([-8, -1, 1, 2, 8, 10**6])),
    "nbytes changed": lambda r, e, m: e.update(nbytes=e["nbytes"] + r.choice([-2, -1, 1, 4])),
    "shape negative": lambda r, e, m: e.update(shape=[-3, -5]),
    "shape product overflows int64": lambda r, e, m: e.update(shape=[2**32, 2**32], nbytes=0),
    "shape zero times huge": lambda r, e, m: e.update(shape=[0, 2**63], nbytes=0),
    "shape huge": lambda r, e, m: e.update(shape=[10**30]),
    "shape reversed": lambda r, e, m: e.update(shape=e["shape"][::-1]),
    "shape of floats": lambda r, e, m: e.update(shape=[float(x) for x in e["shape"]]),
    "shape of bools": lambda r, e, m: e.update(shape=[True, True]),
    "shape not a list": lambda r, e, m: e.update(shape=r.choice([5, "3x4", None, {"a": 1}])),
    "shape nested": lambda r, e, m: e.update(shape=[e["shape"]]),
    "shape 9-D": lambda r, e, m: e.update(shape=[1] * 9),
    "dtype other": lambda r, e, m: e.update(dtype=r.choice(["int8", "uint8", "float16", "bfloat16", "bool"])),
    "dtype unknown": lambda r, e, m: e.update(dtype=r.choice(["complex64", "float8", "", 5, None, ["int8"]])),
    "section other": lambda r, e, m: e.update(section=r.choice(m["tensors"])["section"]),
    "section missing": lambda r, e, m: e.update(section=r.choice(["nope", "meta", 3, None])),
    "name duplicated": lambda r, e, m: e.update(name=r.choice(m["tensors"])["name"]),
    "name not a string": lambda r, e, m: e.update(name=r.choice([1, None, ["a"]])),
    "key removed": lambda r, e, m: e.pop(r.choice(sorted(e))),
    "key added": lambda r, e, m: e.update(extra=1),
}

PLAN_EDITS = {  # on one plan entry `p` of the header, picked at random
    "plan field removed": lambda r, p: p.pop(r.choice(sorted(p))),
    "plan dtype changed": lambda r, p: p.update(dtype=r.choice(["int8", "float16", "bfloat16", "bogus", 5, "Tensor"])),
    "plan kind changed": lambda r, p: p.update(kind=r.choice(["rtn", "codebook", "passthrough", "float", None])),
    "plan hadamard changed": lambda r, p: p.update(hadamard=r.choice([2**30, 3, 0, -4, "x", 2, 64, 1 << 20])),
    "plan lqer changed": lambda r, p: p.update(lqer=r.choice(["asym", "sym", "bogus", 1])),
    "plan shape changed": lambda r, p: p.update(shape=r.choice([p["shape"][::-1], [10**12], [-1], "x"])),
}

MODEL_EDITS = {  # the header's model config: each a config that asks for far more than the file holds
    "model_dim 2**20": {"model_dim": 2**20},
    "vocab_size 2**40": {"vocab_size": 2**40},
    "num_layers 10**9": {"num_layers": 10**9, "parallel_start_layer": -1},
    "num_loops 10**9": {"num_loops": 10**9},
    "mlp_mult 1e9": {"mlp_mult": 1e9},
    "bigram table 10**12": {"bigram_vocab_size": 10**9, "bigram_dim": 1000},
    "ve_dim 10**9": {"ve_dim": 10**9, "ve_layers": [0]},
    "num_heads 8": {"num_heads": 8},
    "softcap 3": {"logit_softcap": 3.0},  # loads: same weights, another model (only the digest tells)
}

META_EDITS = {  # on the whole meta {"digest", "header", "tensors"}
    "entry not a mapping": lambda r, m: m["tensors"].__setitem__(r.randrange(len(m["tensors"])), r.choice([[], 5])),
    "manifest not a list": lambda r, m: m.update(tensors=r.choice([{}, None, "x", 7])),
    "entry dropped": lambda r, m: m["tensors"].pop(r.randrange(len(m["tensors"]))),
    "entry duplicated": lambda r, m: m["tensors"].append(copy.deepcopy(r.choice(m["tensors"]))),
    "entries swapped": lambda r, m: _swap(m["tensors"], r.randrange(len(m["tensors"])), r.randrange(len(m["tensors"]))),
    "manifest reversed": lambda r, m: m["tensors"].reverse(),
    "header not a mapping": lambda r, m: m.update(header=r.choice([[], 5, "x", None])),
    "plan removed": lambda r, m: m["header"].pop("plan"),
    "plan not a mapping": lambda r, m: m["header"].update(plan=r.choice([[], "x", 3])),
    "plan entry not a mapping": lambda r, m: m["header"]["plan"].update({r.choice(sorted(m["header"]["plan"])): []}),
    "plan entry added": lambda r, m: m["header"]["plan"].update(ghost={"kind": "float", "dtype": "int8", "shape": [3]}),
    "model field mistyped": lambda r, m: m["header"]["model"].update({r.choice(sorted(m["header"]["model"])): "x"}),
    "model field removed": lambda r, m: m["header"]["model"].pop(r.choice(sorted(m["header"]["model"]))),
    "model not a mapping": lambda r, m: m["header"].update(model=r.choice([[], None, "gpt"])),
    "digest removed": lambda r, m: m.pop("digest"),
    "digest garbage": lambda r, m: m.update(digest=r.choice(["0" * 64, "", 5, None])),
    "meta key added": lambda r, m: m.update(more=1),
}

META_BYTES = {  # the meta section replaced wholesale (its crc recomputed)
    "meta not JSON": b"{not json",
    "meta nested 10**5 deep": b"[" * 100_000 + b"]" * 100_000,
    "meta huge integer": b'{"header": ' + b"9" * 10_000 + b"}",
    "meta not UTF-8": b'{"header": "\xff\xfe"}',
    "meta a list": b"[1, 2, 3]",
    "meta empty": b"",
}


def _swap(items: list, i: int, j: int) -> None:
    items[i], items[j] = items[j], items[i]


def _swap_equal_payloads(r, ps: list[Part]) -> None:
    """Two data sections of the same size trade contents (c_k and c_v of a layer, say): every size fits."""
    data = [i for i, p in enumerate(ps) if p.name != "meta"]
    i, j = next(((i, j) for i in data for j in data if i < j and len(ps[i].raw) == len(ps[j].raw)), (data[0], data[-1]))
    ps[i].raw, ps[j].raw = ps[j].raw, ps[i].raw


def _lie_codec(r, p: Part) -> None:
    p.payload, p.codec = _encoded(p), r.choice(["store", "brotli", "zstd", "lzma"])


def _data(r, ps: list[Part]) -> Part:
    return ps[r.randrange(1, len(ps))]


TABLE_EDITS = {  # on the parts (sections) themselves; each re-encoded with a valid crc32
    "payloads of equal-size sections swapped": _swap_equal_payloads,
    "two sections swapped in the table": lambda r, ps: _swap(ps, r.randrange(1, len(ps)), r.randrange(1, len(ps))),
    "meta not first": lambda r, ps: _swap(ps, 0, r.randrange(1, len(ps))),
    "section duplicated": lambda r, ps: ps.insert(r.randrange(1, len(ps)), copy.copy(_data(r, ps))),
    "section dropped": lambda r, ps: ps.pop(r.randrange(1, len(ps))),
    "section renamed": lambda r, ps: setattr(_data(r, ps), "name", r.choice(["meta", "q.other", "x y", "a@01", "a@1",
                                                                             "", "q.tok_emb@0", "a/b"])),
    "all but meta dropped": lambda r, ps: ps.__delitem__(slice(1, None)),
    "zero sections": lambda r, ps: ps.clear(),
    "flags changed": lambda r, ps: setattr(r.choice(ps), "flags", r.choice([0, 1, 2, 255])),
    "stride changed": lambda r, ps: setattr(r.choice(ps), "stride", r.choice([0, 2, 7, 255])),
    "codec id lies": lambda r, ps: _lie_codec(r, _data(r, ps)),
    "raw_len lies": lambda r, ps: setattr(r.choice(ps), "raw_len", r.choice([0, 1, 2**40, 2**64 - 1])),
    "raw_len off by one": lambda r, ps: setattr(p := _data(r, ps), "raw_len", max(len(p.raw) + r.choice([-1, 1]), 0)),
    "payload with trailing bytes": lambda r, ps: setattr(p := _data(r, ps), "payload", _encoded(p) + bytes(4)),
    # a legitimate re-encoding: another codec, same content (must load, bit-identical)
    "codec changed and re-encoded": lambda r, ps: setattr(r.choice(ps), "codec", r.choice(["store", "brotli", "zstd"])),
}


def _encoded(p: Part) -> bytes:
    from golf.artifact.shuffle import shuffle
    from golf.compress import codecs
    from golf.compress.config import CompressConfig

    cfg = CompressConfig(codec="zstd", brotli_quality=1, brotli_lgwin=22, zstd_level=1, lzma_preset=0,
                         lzma_extreme=False, byte_shuffle_stride=p.stride, transpose=False, per_group=False,
                         workers=1, chunk_bytes=0)
    return codecs.encode(p.codec, shuffle(p.raw, p.stride), cfg)


def edited(label: str, r, meta: dict) -> None:
    """Apply the meta-level edit named `label` (entry, plan, model or meta edit) to `meta`."""
    if label in ENTRY_EDITS:
        ENTRY_EDITS[label](r, r.choice(meta["tensors"]), meta)
    elif label in PLAN_EDITS:
        PLAN_EDITS[label](r, meta["header"]["plan"][r.choice(sorted(meta["header"]["plan"]))])
    elif label in MODEL_EDITS:
        meta["header"]["model"].update(MODEL_EDITS[label])
    else:
        META_EDITS[label](r, meta)


# --------------------------------------------------------------------------------- the cases

def random_damage(rng: random.Random, blob: bytes) -> bytes:
    b = bytearray(blob)
    kind = rng.randrange(6)
    if kind == 0:
        for _ in range(rng.randint(1, 8)):
            b[rng.randrange(len(b))] ^= 1 << rng.randrange(8)
    elif kind == 1:
        del b[rng.randrange(len(b)):]
    elif kind == 2:
        i = rng.randrange(len(b))
        b[i:i + rng.randint(1, 64)] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 64)))
    elif kind == 3:
        b += bytes(rng.randrange(256) for _ in range(rng.randint(1, 32)))
    elif kind == 4:
        b[rng.randrange(min(len(b), 64))] = rng.randrange(256)  # preamble and section table
    else:
        i = rng.randrange(len(b))
        b[i:i] = bytes(rng.randint(1, 16))
    return bytes(b)


def cases(base_id: int, tensors, header, cfg):
    """(label, blob, digest_recomputed) for one base artifact, seeded."""
    from golf.compress import container

    blob = container.encode(tensors, header, cfg)
    ps0, meta0 = parts(tensors, header, cfg)
    assert build(ps0, meta0, cfg) == blob  # the crafting reproduces the writer byte for byte
    rng = random.Random(1000 + base_id)
    for _ in range(RANDOM_CASES):
        yield "random damage", random_damage(rng, blob), False
    for seed in range(SEEDS):
        for label in [*ENTRY_EDITS, *PLAN_EDITS, *MODEL_EDITS, *META_EDITS]:
            for redo in (False, True):
                ps, meta = copy.deepcopy(ps0), copy.deepcopy(meta0)
                edited(label, random.Random(f"{base_id}/{seed}/{label}"), meta)
                if redo:
                    redigest(ps, meta)
                yield label, build(ps, meta, cfg), redo
        for label, edit in TABLE_EDITS.items():
            ps = copy.deepcopy(ps0)
            edit(random.Random(f"{base_id}/{seed}/{label}"), ps)
            yield label, build(ps, meta0, cfg), False
    for label, raw in META_BYTES.items():
        yield label, build(copy.deepcopy(ps0), meta0, cfg, meta_bytes=raw), False


def bomb_cases(tensors, header, cfg):
    """Each codec's bomb as the meta section and as a data section (declaring that section's true
    length), and declaring its real 64 MiB (refused before decoding: more than the file can hold)."""
    ps0, meta0 = parts(tensors, header, cfg)
    meta_len = len(json.dumps(meta0, sort_keys=True, separators=(",", ":")))
    for codec in ("brotli", "zstd", "lzma"):
        stream = bomb(codec)
        for where in (0, 1):
            ps = copy.deepcopy(ps0)
            ps[where] = dataclasses.replace(ps[where], codec=codec, payload=stream, stride=1)
            yield f"{codec} bomb in section {ps[where].name}", build(ps, meta0, cfg)
        ps = copy.deepcopy(ps0)
        ps[1] = dataclasses.replace(ps[1], codec=codec, payload=stream, stride=1, raw_len=BOMB_BYTES)
        yield f"{codec} bomb declaring its size", build(ps, meta0, cfg)
    assert meta_len < BOMB_BYTES


def load(blob: bytes):
    """What ttt-eval and train_gpt.py do with a file: decode, dequantize, rebuild the GPT."""
    from golf.artifact.container import decode
    from golf.artifact.dequant import dequantize
    from golf.artifact.model.load import model_from_header

    tensors, header = decode(blob, workers=1)
    model_from_header(header, dequantize(tensors, header), "cpu")
    return tensors, header


def same(a: dict, b: dict) -> bool:
    import torch

    return a.keys() == b.keys() and all(
        x.dtype == b[k].dtype and x.shape == b[k].shape
        and torch.equal(x.reshape(-1).view(torch.uint8), b[k].contiguous().reshape(-1).view(torch.uint8))
        for k, x in a.items())


def peak_mib(reset: bool = False) -> float:
    """This process's peak RSS, MiB; reset=True first lowers the peak to the current RSS (Linux
    /proc/self/clear_refs), so each case's own peak is measured, not an earlier case's."""
    if reset:
        Path("/proc/self/clear_refs").write_text("5")
    return int(re.search(r"VmHWM:\s+(\d+)", Path("/proc/self/status").read_text()).group(1)) / 1024


def run_case(label: str, blob: bytes, original, bounds: tuple[float, float], stats: dict, redo: bool) -> None:
    from golf.errors import GolfError

    t0, m0 = time.perf_counter(), peak_mib(reset=True)
    try:
        tensors, header = load(blob)
        outcome = "loaded"
        if not redo and not (header == original[1] and same(tensors, original[0])):
            stats["wrong_loads"].append(label)
    except GolfError:
        outcome = "GolfError"
    except BaseException as e:  # noqa: BLE001 - the point is to count them
        outcome = "unexpected"
        stats["unexpected"].append(f"{label}: {type(e).__name__}: {str(e)[:120]}")
    dt, dm = time.perf_counter() - t0, peak_mib() - m0
    stats["last_mib"] = dm
    stats["counts"][outcome] = stats["counts"].get(outcome, 0) + 1
    stats["max_s"], stats["max_mib"] = max(stats["max_s"], dt), max(stats["max_mib"], dm)
    if dt > bounds[0] or dm > bounds[1]:
        stats["over_bound"].append(f"{label}: {dt:.2f} s, +{dm:.0f} MiB")


def fuzz() -> dict:
    stats = {"counts": {}, "unexpected": [], "wrong_loads": [], "over_bound": [], "bombs": [],
             "max_s": 0.0, "max_mib": 0.0, "crafted": 0, "random": 0}
    all_bases = bases()
    tensors, header, cfg = all_bases[0]
    load(build(*parts(tensors, header, cfg), cfg))  # warm-up: first-call allocations are not a case's
    for label, blob in bomb_cases(tensors, header, cfg):
        before, t0 = len(stats["over_bound"]), time.perf_counter()
        run_case(label, blob, (tensors, header), (CASE_S, CASE_MIB), stats, False)
        stats["crafted"] += 1
        stats["bombs"].append({"case": label, "s": round(time.perf_counter() - t0, 4), "rss_growth_mib":
                               round(stats["last_mib"], 1), "within_bound": len(stats["over_bound"]) == before})
    for i, (tensors, header, cfg) in enumerate(all_bases):
        for label, blob, redo in cases(i, tensors, header, cfg):
            stats["random" if label == "random damage" else "crafted"] += 1
            run_case(label, blob, (tensors, header), (CASE_S, CASE_MIB), stats, redo)
    stats.pop("last_mib")
    return stats


def test_fuzz_artifact_loader():
    """>= 1,000 seeded cases: only GolfError, none over the bounds, no silent wrong load, bombs flat."""
    t0 = time.perf_counter()
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # tiny tensors: threads only add contention
    r = subprocess.run([sys.executable, __file__], capture_output=True, text=True, cwd=ROOT, timeout=600, env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    s = json.loads(r.stdout.splitlines()[-1])
    print(json.dumps(s | {"wall_s": round(time.perf_counter() - t0, 1)}, indent=1))
    assert s["random"] + s["crafted"] >= 1000 and s["crafted"] >= 400, s
    assert s["unexpected"] == [], s["unexpected"][:10]
    assert s["wrong_loads"] == [], s["wrong_loads"][:10]
    assert s["over_bound"] == [], s["over_bound"][:10]
    assert len(s["bombs"]) == 9 and all(b["within_bound"] for b in s["bombs"]), s["bombs"]
    assert s["counts"].get("loaded", 0) > 0 and s["counts"].get("GolfError", 0) > 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    print(json.dumps(fuzz()))
