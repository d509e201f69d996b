"""The compress stage's work: a golf.qmodel -> model.golf + train_gpt.py, checked and written as one unit.

The container must decode back bit for bit (with the same reader train_gpt.py carries), and code
+ model bytes must fit CAP_BYTES (golf/compliance.py, the one cap constant). Both files are written
into a staged folder that replaces the output folder in one rename, after the stale metrics are
removed: a kill at any point leaves either the old outputs or the new artifact without metrics,
never a new model.golf beside an old train_gpt.py or old metrics (golf/io/atomic.py: staged_dir).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Iterable

import torch

from golf.artifact.container import decode, describe
from golf.compliance import CAP_BYTES
from golf.compress import bundle, container
from golf.compress.config import CompressConfig
from golf.errors import GolfError
from golf.io.atomic import staged_dir

ARTIFACT, SCRIPT = "model.golf", "train_gpt.py"


def same_bits(a: dict, b: dict) -> bool:
    """Same names, dtypes, shapes and bytes."""
    return a.keys() == b.keys() and all(
        x.dtype == b[k].dtype and x.shape == b[k].shape
        and torch.equal(x.contiguous().reshape(-1).view(torch.uint8), b[k].contiguous().reshape(-1).view(torch.uint8))
        for k, x in a.items())


def check_cap(model_bytes: int, code_bytes: int) -> None:
    total = model_bytes + code_bytes
    if total > CAP_BYTES:
        raise GolfError(f"artifact is {total:,} bytes (model {model_bytes:,} + code {code_bytes:,}), "
                        f"{total - CAP_BYTES:,} over the {CAP_BYTES:,} cap; lower the budget in prune_to_budget")


def write_unit(out_dir: Path, files: dict[str, bytes], replaces: Iterable[Path] = ()) -> None:
    """`files` become the whole of `out_dir` in one rename; `replaces` (stale metrics) go just before it."""
    out_dir = Path(out_dir)
    if out_dir.is_dir() and (other := sorted(p.name for p in out_dir.iterdir() if p.name not in files)):
        raise GolfError(f"{out_dir}: holds {other[0]!r} ({len(other)} files besides the outputs); compress "
                        "replaces the whole folder, so give it a folder of its own")
    with staged_dir(out_dir) as tmp:
        for name, data in files.items():
            (tmp / name).write_bytes(data)
        for path in replaces:  # last before the rename: a failed write above leaves them as they were
            Path(path).unlink(missing_ok=True)


def compress_qmodel(qmodel: Path, out_dir: Path, cfg: CompressConfig, replaces: Iterable[Path] = ()) -> dict[str, Any]:
    """Encode, check the round trip and the cap, write out_dir/{model.golf, train_gpt.py}; the metrics."""
    from golf.quant.qmodel import load_qmodel

    tensors, header = load_qmodel(qmodel)
    t0 = time.perf_counter()
    blob = container.encode(tensors, header, cfg)
    t1 = time.perf_counter()
    back, back_header = decode(blob, cfg.workers)
    t2 = time.perf_counter()
    if back_header != header or not same_bits(back, tensors):
        raise GolfError(f"{qmodel}: the container round trip is not bit-exact (a golf.compress bug)")
    code = bundle.build_script().encode("utf-8")
    check_cap(len(blob), len(code))
    write_unit(out_dir, {ARTIFACT: blob, SCRIPT: code}, replaces)
    sections = describe(blob)
    return {"model_bytes": len(blob), "code_bytes": len(code), "total_bytes": len(blob) + len(code),
            "margin_bytes": CAP_BYTES - len(blob) - len(code),
            "codec": cfg.codec if cfg.codec != "auto" else ",".join(f"{s['name']}={s['codec']}" for s in sections),
            **{f"section_bytes.{s['name']}": s["bytes"] for s in sections},
            "encode_s": round(t1 - t0, 3), "decode_s": round(t2 - t1, 3)}
