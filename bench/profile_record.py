"""Where the record script's training step goes, under the same profiler and bins as golf's
(bench/profile_train.py), so the two steps compare kernel by kernel.

    python bench/profile_record.py --record .record/train_gpt.py --tokens data/tokens   # both phases

The record script (see bench/bench_record.py: fetched into the ignored .record/, never committed)
is imported, not run: its model, optimizers and document-packing loader are built with its README's
settings (bench_record.RECORD_ENV), compiled as it compiles them (fullgraph, static shapes), and
stepped the way its train loop steps them (8 micro-batches of 98,304 tokens, gradient clipping, its
optimizers, its per-tensor EMA). Its own start (about 9.5 minutes of compiling: 4 document-count
buckets of its cu_seqlens, each with looping off and on) is skipped: here its loader pads every
batch's cu_seqlens to one bucket (--cu-bucket, 256 entries: golf's news-corpus batches need 88-211),
so each phase compiles one graph, in its warm-up steps, which are not profiled. The padding entries
are empty documents, which its attention kernel skips. Kernel time per profiled step is what this
measures; the step time printed is the median of the profiled steps (CUDA events).
"""

from __future__ import annotations

import argparse
import os
import runpy
import sys
import tempfile
import time
from pathlib import Path

import torch
from bench_record import RECORD_ENV, record_data
from profile_train import kernel_times, report, report_waits, waits
from trainrun import ROOT


def load_record(script: Path, tokens: Path, workdir: Path) -> dict:
    """The record script's globals, its env set as bench_record sets it (its data: golf's shards)."""
    ds, tok = record_data(tokens, workdir / "data")
    os.environ.update(RECORD_ENV, RUN_ID="profile", DATA_DIR=f"{workdir / 'data'}/", DATA_PATH=str(ds),
                      TOKENIZER_PATH=str(tok))
    sys.path.insert(0, str(ROOT / "bench" / "fa3_standin"))  # its FA3 calls -> golf's FA4 ops
    return runpy.run_path(str(script), run_name="record")


def build(rec: dict, device: torch.device, cu_bucket: int):
    """(hyperparameters, base model, compiled model, optimizers, loader), as its train_model builds them."""
    torch.backends.cuda.matmul.allow_tf32 = True  # as its main() sets them
    torch.set_float32_matmul_precision("high")
    h = rec["Hyperparameters"]()
    rec["set_logging_hparams"](h)
    torch.manual_seed(h.seed)
    base = rec["GPT"](h).to(device).bfloat16()
    rec["restore_fp32_params"](base)
    model = torch.compile(base, dynamic=False, fullgraph=True)
    opts = rec["Optimizers"](h, base)
    loader = rec["DocumentPackingLoader"](h, device, cu_bucket_size=cu_bucket)
    for blk in base.blocks:  # its rotary caches, filled before compiling as its loop does
        blk.attn.rotary(h.train_batch_tokens // h.grad_accum_steps, device, torch.bfloat16)
    return h, base, model, opts, loader


def make_step(h, base, model, opts, loader):
    """One optimizer step as the record's step_fn takes it (momentum warm-up and lr schedule aside),
    then its EMA update."""
    params = [p for p in base.parameters() if p.requires_grad]
    ema = {k: t.detach().float().clone() for k, t in base.state_dict().items()}
    pairs = [(ema[k], t) for k, t in base.state_dict().items()]

    def step() -> None:
        for _ in range(h.grad_accum_steps):
            x, y, cu, _ = loader.next_batch(h.train_batch_tokens, h.grad_accum_steps)
            with torch.autocast(device_type="cuda", dtype=torch.bfloat16):
                loss = model(x, y, cu_seqlens=cu, max_seqlen=h.train_seq_len)
            (loss / h.grad_accum_steps).backward()
        torch.nn.utils.clip_grad_norm_(params, h.grad_clip_norm)
        opts.step(distributed=False)
        with torch.no_grad():
            for e, t in pairs:
                e.mul_(h.ema_decay).add_(t.detach(), alpha=1.0 - h.ema_decay)
    return step


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--record", type=Path, required=True, help="the record's train_gpt.py")
    ap.add_argument("--tokens", type=Path, default=ROOT / "data/tokens", help="golf's token shards (h100 preset)")
    ap.add_argument("--phase", choices=("both", "before", "after"), default="both",
                    help="profile before depth recurrence switches on, after it, or both")
    ap.add_argument("--cu-bucket", type=int, default=256,
                    help="cu_seqlens padded to a multiple of this (one graph when no batch needs more)")
    ap.add_argument("--warmup", type=int, default=2, help="unprofiled steps first in each phase (compiling)")
    ap.add_argument("--steps", type=int, default=3, help="profiled steps")
    ap.add_argument("--top", type=int, default=40)
    a = ap.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("profile_record.py needs a CUDA GPU")
    if not a.record.is_file():
        raise SystemExit(f"--record {a.record}: not found (fetch openai/parameter-golf into an ignored folder)")
    device = torch.device("cuda")
    rec = load_record(a.record, a.tokens, Path(tempfile.mkdtemp(prefix="profile-record.")))
    h, base, model, opts, loader = build(rec, device, a.cu_bucket)
    step = make_step(h, base, model, opts, loader)
    for looping in {"both": (False, True), "before": (False,), "after": (True,)}[a.phase]:
        base.looping_active = looping
        profile_phase(step, looping, a.warmup, a.steps, h.train_batch_tokens, a.top)


def profile_phase(step, looping: bool, warmup: int, steps: int, tokens_per_step: int, top: int) -> None:
    from torch.profiler import ProfilerActivity, profile

    t0 = time.perf_counter()
    for _ in range(warmup):
        step()
    torch.cuda.synchronize()
    print(f"record: {warmup} warm-up steps (compiling included) in {time.perf_counter() - t0:.1f} s")
    events = [torch.cuda.Event(enable_timing=True) for _ in range(steps + 1)]
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        events[0].record()
        for i in range(steps):
            step()
            events[i + 1].record()
        torch.cuda.synchronize()
    times = sorted(e0.elapsed_time(e1) for e0, e1 in zip(events, events[1:]))
    step_ms = times[len(times) // 2]
    print("profiled steps, ms:", " ".join(f"{t:.1f}" for t in times))
    report(f"record {'after' if looping else 'before'} looping", kernel_times(prof, steps), step_ms,
           f"{tokens_per_step / step_ms / 1e3:.3f} M tok/s", top)
    report_waits(waits(prof), steps, top)


if __name__ == "__main__":
    main()
