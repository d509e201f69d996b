"""Where a training step's GPU time goes: golf's own train loop under the CUDA profiler (kernels only,
so the CPU side runs at full speed), before and after depth recurrence switches on.

    python bench/profile_train.py                    # the h100 preset, 8 steps per phase
    python bench/profile_train.py --quick            # 3 steps per phase
    python bench/profile_train.py --flags "compile_scope=blocks cuda_graphs=false attention_backend=cudnn"
    python bench/profile_train.py --phase after --no-mix-order-cap   # looped only, without golf's cap

Each phase is one call of golf.train.loop.train (no warm-up steps, no evals) with looping off,
then on: step 1 compiles (and autotunes), step 2 warms the profiler, the next --steps are
recorded. Kernel times are binned: matmul (cuBLAS/CUTLASS), attention (flash/cuDNN/efficient), fused
(inductor's Triton kernels: norms, softcap + cross-entropy, rotary, gates...; golf/kernels' golf_*),
optimizer (foreach / fused Adam, Newton-Schulz's pointwise parts), copy (memcpy/memset) and other
(eager ATen).
Each phase also prints the SM clock and power over the recorded steps (bench/gpu_clocks.py, NVML through
torch.cuda): kernel times from two runs are comparable only at like clocks.
`busy` is the kernel time over the wall time of those steps; 1 - busy is the GPU left idle, and the
last tables charge each idle gap to the kernel that ended it (a host-bound stretch shows up as the
kernels it launched too late).
bench/profile_record.py prints the record script's step in the same tables.

--host-ops also records the CPU side and lists the ops with the most host time a step. --host runs
the phases again without the profiler and prints, per step, how long Python took to queue
the step's work (until the step's closing device sync) against the step's wall time: near 1 the GPU
waits for the host (launch-bound), well below 1 the host waits for the GPU.
"""

from __future__ import annotations

import argparse
import collections
import cProfile
import dataclasses
import pstats
import re
import time
from pathlib import Path

import torch
from gpu_clocks import ClockSampler
from trainrun import ROOT, h100_params, host_line, host_probe

BINS = [("attention", r"flash|fmha|cudnn|attention|sdpa"),
        ("matmul", r"gemm|nvjet|cutlass|xmma|wgmma|sm90_|ampere_|cublas"),
        ("optimizer", r"multi_tensor|foreach|adam"),
        ("fused", r"^triton_|^golf_"),
        ("copy", r"memcpy|memset|copy_kernel|Memcpy|Memset")]


def bin_of(name: str) -> str:
    for label, pattern in BINS:
        if re.search(pattern, name, re.IGNORECASE):
            return label
    return "other"


def scalar(text: str):
    """A flag value as params.yaml would hold it (int, float, true/false, else the string: `off` stays)."""
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return {"true": True, "false": False}.get(text, text)


class NoEval:
    loss, bpb = float("nan"), float("nan")


def run_phase(params: Path, tokens: Path, flags: dict, looping: bool, steps: int,
              on_step=None) -> tuple[torch.nn.Module, object, object]:
    """golf's own train loop (golf.train.loop.train) for `steps` steps with looping on from the start or
    never, no warm-up steps and no evals: (model, train config, TrainResult). Shared with compile_parts.py."""
    from golf.artifact.model import GPT, ModelConfig
    from golf.artifact.runtime import init_dist, resolve_device
    from golf.data.tokens import TokenData
    from golf.params import load_section
    from golf.train.backend import set_backend
    from golf.train.config import TrainConfig
    from golf.train.loop import seed_everything, train

    cfg = load_section(params, "train", TrainConfig, flags)
    cfg = dataclasses.replace(cfg, iterations=steps, max_wallclock_s=0.0, warmup_steps=0, val_every=0,
                              enable_looping_at=0.0 if looping else 1.0)
    data = TokenData(tokens)
    device = resolve_device(cfg.device, "train.device")
    seed_everything(cfg.seed)
    model = GPT(load_section(params, "model", ModelConfig))
    print("attention:", set_backend(model, cfg.attention_backend, device))
    res = train(model, cfg, data.train, data.val, data.val_bytes, device, init_dist(device)[0], progress=False,
                evaluate=lambda *a, **k: NoEval(), on_step=on_step)
    return model, cfg, res


def profile_phase(params: Path, tokens: Path, flags: dict, looping: bool, steps: int, top: int,
                  shapes: bool = False, bandwidth: bool = False, host_ops: bool = False) -> None:
    from torch.profiler import ProfilerActivity, profile, schedule

    from golf.train.loop import model_flops_per_token

    activities = [ProfilerActivity.CUDA] + ([ProfilerActivity.CPU] if shapes or host_ops else [])

    def on_step(step: int) -> None:
        prof.step()
        if step == 2:  # the recorded steps begin
            clocks.mark()

    with ClockSampler() as clocks, \
            profile(activities=activities, schedule=schedule(wait=1, warmup=1, active=steps),
                    record_shapes=shapes) as prof:
        model, cfg, res = run_phase(params, tokens, flags, looping, steps + 2, on_step=on_step)
    timed = res.rows[2:]
    n = len(timed)
    step_ms = sum(cfg.train_batch_tokens / float(r["tokens_per_s"]) for r in timed) * 1e3 / n
    fpt = model_flops_per_token(model, cfg.train_seq_len)
    tps = cfg.train_batch_tokens / (step_ms / 1e3)
    kernels = kernel_times(prof, n)
    report(f"golf {'after' if looping else 'before'} looping", kernels, step_ms,
           f"{tps / 1e6:.3f} M tok/s, MFU {fpt * tps / cfg.peak_flops:.1%} (of train.peak_flops)", top)
    print(f"\n{clocks.summary()} (the recorded steps; compare two runs' kernel times at like clocks)")
    report_waits(waits(prof), n, top)
    if shapes:
        report_matmuls(prof, n)
    if host_ops:
        report_host_ops(prof, n, top)
        report_launchers(prof, n, top)
    if bandwidth:
        report_bandwidth(kernels, top)


def host_phase(params: Path, tokens: Path, flags: dict, looping: bool, steps: int, cprofile_top: int = 0) -> None:
    """The host's share of each step (see the module's docstring), after the compiling step and one more,
    and how far the GPU trailed the host at each micro-batch: a CUDA event recorded once its backward is
    queued, timed from one recorded at the step's start (the GPU idle then, after the last step's sync).
    A trail near 0 is a GPU waiting for Python; a trail of tens of ms is a host ahead (and blocked by a full
    launch queue, which also makes the host share look high). cprofile_top: also cProfile the last step's
    main thread (not autograd's backward thread) and print its functions with the most own time."""
    from golf.train import loop

    call, backward, tolist = loop.Stepper.__call__, loop.backward_into_grads, torch.Tensor.tolist
    rows, marks = [], []

    def queued(*args, **kwargs):
        backward(*args, **kwargs)
        event = torch.cuda.Event(enable_timing=True)
        event.record()
        marks.append((time.perf_counter(), event))

    def timed(self, *args):
        start = torch.cuda.Event(enable_timing=True)
        start.record()
        t0, syncs = time.perf_counter(), []
        marks.clear()

        def sync(t):  # Stepper.__call__ ends with one .tolist(), its only device sync
            syncs.append(time.perf_counter())
            return tolist(t)

        torch.Tensor.tolist = sync
        cprof = cProfile.Profile() if cprofile_top and len(rows) == steps + 1 else None
        try:
            if cprof:
                cprof.enable()
            return call(self, *args)
        finally:
            if cprof:
                cprof.disable()
                pstats.Stats(cprof).sort_stats("tottime").print_stats(cprofile_top)
            torch.Tensor.tolist = tolist
            end = time.perf_counter()
            torch.cuda.synchronize()
            trail = [start.elapsed_time(e) - (h - t0) * 1e3 for h, e in marks]
            rows.append(((syncs[-1] if syncs else end) - t0, end - t0, len(syncs), trail))

    loop.Stepper.__call__, loop.backward_into_grads = timed, queued
    try:
        run_phase(params, tokens, flags, looping, steps + 2)
    finally:
        loop.Stepper.__call__, loop.backward_into_grads = call, backward
    report_host(rows[2:], looping)


def report_host(rows: list[tuple], looping: bool) -> None:
    """host_phase's rows (seconds to queue, seconds of wall, device syncs, GPU trail ms per micro-batch) of
    the timed steps, steps 3 on."""
    queued_ms = sum(r[0] for r in rows) / len(rows) * 1e3
    wall = sum(r[1] for r in rows) / len(rows) * 1e3
    print(f"\n## host, {'after' if looping else 'before'} looping, no profiler: {queued_ms:.1f} ms to queue a step "
          f"of {wall:.1f} ms wall (host share {queued_ms / wall:.2f}; device syncs a step: {max(r[2] for r in rows)})")
    for i, r in enumerate(rows):
        print(f"GPU trailing the host after each micro-batch's backward, step {i + 3}, ms: "
              + " ".join(f"{t:.1f}" for t in r[3]))


def report_bandwidth(kernels: dict[str, tuple[float, float]], top: int) -> None:
    """Markdown: inductor's kernels (those with static sizes in this compile's generated code, read from
    TORCHINDUCTOR_CACHE_DIR) with an estimate of the bytes each moves (golf/train/inductor_code.py
    `kernel_bytes`) and so the TB/s each reaches: near the HBM's, only moving fewer bytes saves time."""
    from torch._inductor.runtime.cache_dir_utils import cache_dir

    from golf.train.inductor_code import kernel_bytes

    sizes = kernel_bytes("\n".join(f.read_text(errors="replace") for f in Path(cache_dir()).rglob("*.py")))
    rows = sorted(((ms, calls, name, sizes[name]) for name, (ms, calls) in kernels.items() if name in sizes),
                  reverse=True)
    if not rows:
        print(f"\n--bandwidth: none of the step's kernels is in {cache_dir()}'s generated code "
              "(a warm cache from another compile? set TORCHINDUCTOR_CACHE_DIR to a fresh folder)")
        return
    ms_all = sum(r[0] for r in rows)
    gb_all = sum(calls * size for _, calls, _, size in rows) / 1e9
    print(f"\n{len(rows)} inductor kernels: {ms_all:.1f} ms a step for {gb_all:.1f} GB (estimated), "
          f"{gb_all / ms_all:.2f} TB/s on average")
    print("\n| inductor kernel | ms/step | launches/step | MB a launch | TB/s |\n|---|---:|---:|---:|---:|")
    for ms, calls, name, size in rows[:top]:
        print(f"| `{name[:90]}` | {ms:.2f} | {calls:.0f} | {size / 1e6:.0f} | {calls * size / ms / 1e9:.2f} |")


MATMUL_OPS = r"^aten::(mm|addmm|bmm|_scaled_mm)$|gemm|quack|^golf::"


def matmul_flops(op: str, shapes: list) -> float:
    """2*M*N*K of an aten mm / addmm / bmm call from its recorded input shapes (0 when they do not say)."""
    dims = [s for s in shapes if len(s) in (2, 3)][:2]
    if op not in ("aten::mm", "aten::addmm", "aten::bmm") or len(dims) != 2:
        return 0.0
    (*batch, m, k), (*_, k2, n) = dims
    return 2.0 * m * n * k * (batch[0] if batch else 1) if k == k2 else 0.0


def report_matmuls(prof, steps: int) -> None:
    """Markdown: the matmul ops and golf's custom ops by input shapes (CPU ops with their kernels' device
    time), with TFLOP/s for the aten GEMMs, so a slow shape stands out against the bin's total."""
    print("\n| matmul op | input shapes | ms/step | calls/step | TFLOP/s |\n|---|---|---:|---:|---:|")
    rows = [e for e in prof.key_averages(group_by_input_shape=True)
            if re.search(MATMUL_OPS, e.key) and e.device_time_total > 0]
    for e in sorted(rows, key=lambda e: -e.device_time_total):
        shapes = [list(s) for s in e.input_shapes if s]
        flops = matmul_flops(e.key, shapes) * e.count
        tflops = f"{flops / (e.device_time_total * 1e-6) / 1e12:.0f}" if flops else ""
        print(f"| `{e.key}` | {shapes} | {e.device_time_total / 1e3 / steps:.2f} | {e.count / steps:.0f} | {tflops} |")


def report_host_ops(prof, steps: int, top: int) -> None:
    """Markdown: the ops with the most host time a step (the CPU side of each call, the Python inside a
    custom op included, its child ops too in "total"), so what keeps a launch-bound step's GPU waiting shows."""
    print("\n| op | calls/step | host ms/step, total | self | us/call |\n|---|---:|---:|---:|---:|")
    rows = [e for e in prof.key_averages() if e.count and e.cpu_time_total > 0]
    for e in sorted(rows, key=lambda e: -e.cpu_time_total)[:top]:
        print(f"| `{e.key[:90]}` | {e.count / steps:.0f} | {e.cpu_time_total / 1e3 / steps:.1f} | "
              f"{e.self_cpu_time_total / 1e3 / steps:.1f} | {e.cpu_time_total / e.count:.0f} |")


SMALL_KERNELS = r"Memset|Memcpy|FillFunctor|copy_kernel"  # short kernels whose count, not time, costs


def caller(event) -> str:
    """The nearest op above `event` that is not an ATen op: a golf:: custom op, a compiled graph's call, the
    autograd node of a backward, or "" at the top."""
    event = event.cpu_parent
    while event is not None and event.name.startswith("aten::"):
        event = event.cpu_parent
    return "" if event is None else event.name


def report_launchers(prof, steps: int, top: int) -> None:
    """Markdown: what launches the step's fills, memsets and copies, by the launching op and its nearest
    non-ATen caller. Each is a short kernel, but each launch leaves the GPU a gap of 1-3 us even when the
    host is ahead (after looping: 1,696 memsets a step, 3.2 ms of gaps; BENCHMARKS.md, sixteenth session)."""
    counts = collections.Counter()
    for e in prof.events():
        for k in e.kernels:
            if re.search(SMALL_KERNELS, k.name):
                counts[(k.name[:50], e.name, caller(e)[:70])] += 1
    print("\n| small kernel | launched by | under | launches/step |\n|---|---|---|---:|")
    for (kernel, op, under), count in counts.most_common(top):
        print(f"| `{kernel}` | `{op}` | `{under}` | {count / steps:.0f} |")


def device_events(prof) -> list:
    """The GPU's kernels, copies and fills of the profile's last active cycle (no CPU ops, which with
    --shapes carry their kernels' time too, and no user annotations: with CPU activity on, each step's
    `ProfilerStep#N` and each compiled graph's call also show on the GPU's timeline, spanning its kernels)."""
    return [e for e in prof.profiler.kineto_results.events()
            if e.device_type() == torch.autograd.DeviceType.CUDA and e.duration_ns() > 0
            and not e.is_user_annotation()]


def waits(prof) -> dict[str, tuple[float, int]]:
    """{kernel name: (ms, count)}: the GPU's idle gaps, each charged to the kernel that ended it (the
    next one to start), so a host-bound region shows up as the kernels it launches too slowly."""
    spans = sorted((e.start_ns(), e.end_ns(), e.name()) for e in device_events(prof))
    out: dict[str, tuple[float, int]] = {}
    busy_until = None
    for start, end, name in spans:
        if busy_until is not None and start > busy_until:
            ms, count = out.get(name, (0.0, 0))
            out[name] = (ms + (start - busy_until) / 1e6, count + 1)
        busy_until = end if busy_until is None else max(busy_until, end)
    return out


def report_waits(gaps: dict[str, tuple[float, int]], steps: int, top: int) -> None:
    """Markdown: the idle time per step by the bin, and the `top` kernels, that waited for it."""
    bins: dict[str, float] = {}
    for k, (ms, _) in gaps.items():
        bins[bin_of(k)] = bins.get(bin_of(k), 0.0) + ms / steps
    print("\n| idle before a kernel of bin | ms/step |\n|---|---:|")
    for label, ms in sorted(bins.items(), key=lambda kv: -kv[1]):
        print(f"| {label} | {ms:.1f} |")
    print("\n| idle before kernel | ms/step | gaps/step |\n|---|---:|---:|")
    for k, (ms, count) in sorted(gaps.items(), key=lambda kv: -kv[1][0])[:top]:
        print(f"| `{k[:90]}` | {ms / steps:.2f} | {count / steps:.0f} |")


def kernel_times(prof, steps: int) -> dict[str, tuple[float, float]]:
    """{kernel name: (GPU ms per step, launches per step)} of a finished profile of `steps` steps."""
    out: dict[str, tuple[float, float]] = {}
    for e in device_events(prof):
        ms, calls = out.get(e.name(), (0.0, 0.0))
        out[e.name()] = (ms + e.duration_ns() / 1e6 / steps, calls + 1 / steps)
    return out


def report(title: str, kernels: dict[str, tuple[float, float]], step_ms: float, rate: str, top: int) -> None:
    """Markdown: the step, the bins (with launches per step), the `top` kernels."""
    busy = sum(ms for ms, _ in kernels.values())
    bins: dict[str, list[float]] = {}
    for k, (ms, calls) in kernels.items():
        acc = bins.setdefault(bin_of(k), [0.0, 0.0])
        acc[0] += ms
        acc[1] += calls
    print(f"\n## {title}: {step_ms:.1f} ms/step, {rate}, kernels {busy:.1f} ms/step (busy {busy / step_ms:.1%})\n")
    print("| bin | ms/step | share of step | launches/step |\n|---|---:|---:|---:|")
    for label, (ms, calls) in sorted(bins.items(), key=lambda kv: -kv[1][0]):
        print(f"| {label} | {ms:.1f} | {ms / step_ms:.1%} | {calls:.0f} |")
    print(f"| idle | {max(step_ms - busy, 0):.1f} | {max(step_ms - busy, 0) / step_ms:.1%} | |")
    print("\n| top kernels | bin | ms/step | share | launches/step |\n|---|---|---:|---:|---:|")
    for k, (ms, calls) in sorted(kernels.items(), key=lambda kv: -kv[1][0])[:top]:
        print(f"| `{k[:90]}` | {bin_of(k)} | {ms:.2f} | {ms / step_ms:.1%} | {calls:.0f} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--params", type=Path, default=None, help="full params file (default: the h100 preset)")
    ap.add_argument("--tokens", type=Path, default=ROOT / "data/tokens")
    ap.add_argument("--steps", type=int, default=8, help="timed steps per phase (one more compiles)")
    ap.add_argument("--quick", action="store_true", help="3 timed steps per phase")
    ap.add_argument("--flags", default="", help='train keys as KEY=VALUE, e.g. "compile_scope=blocks"')
    ap.add_argument("--top", type=int, default=25)
    ap.add_argument("--phase", choices=("both", "before", "after"), default="both",
                    help="profile before looping, after it, or both")
    ap.add_argument("--shapes", action="store_true",
                    help="also record op input shapes: a table of the matmuls by shape with TFLOP/s")
    ap.add_argument("--bandwidth", action="store_true",
                    help="also inductor's kernels with the bytes each moves (an estimate from the generated code "
                         "in TORCHINDUCTOR_CACHE_DIR: use a fresh one) and the TB/s each reaches")
    ap.add_argument("--host", action="store_true",
                    help="also time each phase without the profiler: the host's time to queue a step against "
                         "the step's wall time")
    ap.add_argument("--host-ops", action="store_true",
                    help="also record the CPU side: the ops with the most host time a step")
    ap.add_argument("--host-cprofile", type=int, default=0, metavar="N",
                    help="with --host: cProfile the last step's main thread, its N functions with the most own time")
    ap.add_argument("--no-mix-order-cap", action="store_true",
                    help="compile without golf's cap on mix-order reductions (golf/train/inductor.py)")
    a = ap.parse_args()
    a.params = a.params or h100_params()
    if not torch.cuda.is_available():
        raise SystemExit("profile_train.py needs a CUDA GPU")
    if a.no_mix_order_cap:
        import golf.train.inductor

        golf.train.inductor.MAX_READS = 0
    flags = {k: scalar(v) for k, v in (kv.split("=", 1) for kv in a.flags.split())}
    t0 = time.perf_counter()
    for looping in {"both": (False, True), "before": (False,), "after": (True,)}[a.phase]:
        profile_phase(a.params, a.tokens, flags, looping, 3 if a.quick else a.steps, a.top, a.shapes, a.bandwidth,
                      a.host_ops)
        if a.host:
            host_phase(a.params, a.tokens, flags, looping, 3 if a.quick else a.steps, a.host_cprofile)
    print(f"\n(profile run {time.perf_counter() - t0:.0f} s; {host_line(host_probe())})")


if __name__ == "__main__":
    main()
