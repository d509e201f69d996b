"""The fused training kernels (golf/kernels) against the eager PyTorch code and its torch.compile,
forward + backward, at a preset's shapes, on one GPU.

    python bench/bench_kernels.py                  # the record preset's shapes, median of 20 timed runs
    python bench/bench_kernels.py --quick          # median of 5
    python bench/bench_kernels.py --preset h100 --iters 50
    python bench/bench_kernels.py --params my-params.yaml    # a full params file instead of a preset
    python bench/bench_kernels.py --mlp-tiles 128x256x64s3w8,128x128x64s4w8   # fused GEMM tile shapes
    python bench/bench_kernels.py --quack          # also quack's CuTe GEMMs with the activation (golf/kernels/quack_gemm.py)

Shapes from params.yaml with the preset's overlay applied (golf/presets.py): N = train_batch_tokens / (nproc_per_node x grad_accum_steps) tokens
per forward (the record: 98,304 = 48 x 2048), V = model.vocab_size, d = model.model_dim, MLP
hidden = model.mlp_hidden. Three benches, each under bf16 autocast with fp32 master weights as
training runs them:

  head:  mean softcapped CE of h (N, d) through the tied W (V, d): eager = the model's chunked
         head (golf/artifact/model/gpt.py `_chunked_nll`), fused = golf.kernels.softcap_ce;
  act:   leaky_relu(u, slope)^2 of u (N, hidden) bf16 alone;
  mlp:   fc -> act -> proj of x (N, d), matmuls included: eager, the fused activation between
         cuBLAS matmuls (train.fused_mlp = pair) and the fused GEMM (gemm: golf.kernels.mlp_gemm;
         quack with --quack);
  gemm:  the up-projection GEMMs alone (forward x W1ᵀ, backward dout W2), cuBLAS with and without
         the activation kernel against the fused GEMM, in TFLOP/s; --mlp-tiles compares tile shapes;
         --quack adds quack's gemm_act / gemm_dact with golf's activation registered (untuned, as golf
         runs them, and with --quack-tune autotuned too; the first call's seconds, and their outputs
         against cuBLAS + golf's pair), golf's backward GEMM (gemm_dact's epilogue without post), and
         golf's MLP op through them (train.fused_mlp = quack) to the mlp bench.

Each row: ms = the median of CUDA events around one forward + backward (for a step under about 1 ms
that includes the host's dispatch, which training hides: BENCHMARKS.md, eighth session), GPU ms = the
step's kernel time from torch.profiler (the mean of as many steps), the peak CUDA memory the run
allocates above its inputs, the GPU-ms ratio against eager and against compiled eager, and the largest
gradient difference from eager relative to the largest gradient (a parity check, bf16 level ~1e-2).
A variant that fails prints its error and the others go on.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import re
import tempfile
import time
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
from profile_train import kernel_times

from golf.artifact.model.gpt import NLL_CHUNK_ELEMENTS
from golf.kernels import mlp_gemm
from golf.kernels.leaky_relu2 import _leaky_relu2_backward, leaky_relu2, leaky_relu2_reference
from golf.kernels.softcap_ce import softcap_ce_sum

ROOT = Path(__file__).resolve().parents[1]


def shapes(params: Path) -> dict[str, float]:
    from golf.artifact.model import ModelConfig
    from golf.params import load_section
    from golf.train.config import TrainConfig

    m = load_section(params, "model", ModelConfig)
    t = load_section(params, "train", TrainConfig)
    return {"N": t.micro_batch_seqs(t.nproc_per_node) * t.train_seq_len, "V": m.vocab_size, "d": m.model_dim,
            "hidden": m.mlp_hidden, "softcap": m.logit_softcap, "slope": m.leaky_slope if m.activation == "leaky_relu2" else 0.0}


def eager_head(h, w, y, softcap):
    """The model's training head: bf16 logits per chunk of rows, fp32 softcap and CE, mean."""
    rows = max(1, NLL_CHUNK_ELEMENTS // w.shape[0])
    parts = [F.cross_entropy(softcap * torch.tanh(F.linear(h[s:s + rows], w).float() / softcap), y[s:s + rows],
                             reduction="none") for s in range(0, h.shape[0], rows)]
    return torch.cat(parts).mean()


def fused_head(h, w, y, softcap):
    return softcap_ce_sum(h, w, y, softcap) / y.numel()


def eager_act(u, slope):
    return leaky_relu2_reference(u, slope)


def fused_act(u, slope):
    return leaky_relu2(u, slope)


def mlp(act: Callable) -> Callable:
    def run(x, fc, proj, slope):
        return F.linear(act(F.linear(x, fc), slope), proj)
    return run


def parse_tiles(spec: str) -> list[mlp_gemm.Tiles]:
    """'128x256x64s3w8,...' (rows x columns x k, stages, warps) -> Tiles; '' -> the shipped ones."""
    tiles = []
    for item in filter(None, spec.split(",")):
        m = re.fullmatch(r"(\d+)x(\d+)x(\d+)s(\d+)w(\d+)", item.strip())
        if not m:
            raise SystemExit(f"--mlp-tiles: {item!r} is not MxNxKsSTAGESwWARPS (e.g. 128x256x64s3w8)")
        bm, bn, bk, stages, warps = map(int, m.groups())
        tiles.append(dataclasses.replace(mlp_gemm.TILES, m=bm, n=bn, k=bk, stages=stages, warps=warps))
    return tiles or [mlp_gemm.TILES]


def quack_cases(x, w_fc, w_proj, dout, pre, slope, tune: bool) -> dict[str, Callable]:
    """quack's gemm_act / gemm_dact with golf's activation (golf/kernels/quack_gemm.py), untuned (as golf
    runs them) and with `tune` autotuned too (44 configs a GEMM on Hopper, each JIT-compiled).
    Prints each first call's seconds (CuTe JIT, autotuning) and the outputs' distance from cuBLAS + the
    pair; {} (with the reason printed) when quack's GEMMs do not run here."""
    try:
        import quack.gemm_interface as qg

        from golf.kernels import quack_gemm

        act = quack_gemm.activation(float(slope))
        cases = {}
        for tuned in (False, True)[:1 + tune]:
            fwd = functools.partial(qg.gemm_act, x, w_fc.t(), activation=act, tuned=tuned)
            bwd = functools.partial(qg.gemm_dact, dout, w_proj, pre, activation=act, tuned=tuned)
            for label, fn in ((f"fwd quack gemm_act{' tuned' * tuned}", fwd), (f"bwd quack gemm_dact{' tuned' * tuned}", bwd)):
                t0 = time.perf_counter()
                fn()
                torch.cuda.synchronize()
                print(f"{label}: first call {time.perf_counter() - t0:.1f} s")
                cases[label] = fn
        w_proj_t = w_proj.t()
        cases["bwd golf dpre only (quack_gemm)"] = lambda: quack_gemm.gemm_leaky_relu2_backward(dout, w_proj_t, pre, slope)
    except Exception as e:  # e.g. quack 0.6.5's epilogue library on CUTLASS DSL 4.8 (BENCHMARKS.md, sixth session)
        print(f"quack's GEMMs do not run here: {type(e).__name__}: {str(e).splitlines()[0][:200]}")
        return {}
    q_pre, q_post = fwd()
    q_dpre, _ = bwd()
    rel = lambda a, b: float((a.float() - b.float()).norm() / b.float().norm())  # noqa: E731
    print(f"quack vs cuBLAS + pair (relative L2): pre {rel(q_pre, pre):.1e}, post "
          f"{rel(q_post, leaky_relu2(pre, slope)):.1e}, dpre {rel(q_dpre, _leaky_relu2_backward(pre, dout @ w_proj, slope)):.1e}"
          f"; golf's dpre-only vs gemm_dact's dpre: {rel(cases['bwd golf dpre only (quack_gemm)'](), q_dpre):.1e}")
    return cases


def bench_gemm(x, w_fc, w_proj, dout, slope, tile_sets: list[mlp_gemm.Tiles], iters: int,
               quack: bool = False, quack_tune: bool = False) -> dict[str, dict]:
    """The up-projection's GEMMs alone, bf16: cuBLAS, cuBLAS + the activation kernel, the fused GEMM
    (one row per tile shape), quack's with --quack; ms and TFLOP/s of the matmul (2 N hidden d)."""
    n, d, hid = x.shape[0], x.shape[1], w_fc.shape[0]
    flop = 2 * n * hid * d
    w_proj_t = w_proj.t().contiguous()
    pre = x @ w_fc.t()
    cases = {"fwd cuBLAS x W1ᵀ": lambda: x @ w_fc.t(),
             "fwd cuBLAS + fused act": lambda: leaky_relu2(x @ w_fc.t(), slope),
             "bwd cuBLAS dout W2": lambda: dout @ w_proj,
             "bwd cuBLAS + fused act'": lambda: _leaky_relu2_backward(pre, dout @ w_proj, slope)}
    for t in tile_sets:
        cases[f"fwd fused GEMM {t.label()}"] = lambda t=t: with_tiles(t, mlp_gemm.gemm_leaky_relu2, x, w_fc, slope)
        cases[f"bwd fused GEMM {t.label()}"] = lambda t=t: with_tiles(
            t, mlp_gemm.gemm_leaky_relu2_backward, dout, w_proj_t, pre, slope)
    if quack:
        cases |= quack_cases(x, w_fc, w_proj, dout, pre, slope, quack_tune)
    print(f"\ngemm: ({n}, {d}) x ({d}, {hid}), bf16\n| variant | ms | TFLOP/s |\n|---|---:|---:|")
    rows = {}
    for name, fn in cases.items():
        try:
            ms, _, _ = measure(fn, iters)
        except Exception as e:  # a tile shape that does not fit says why; the others go on
            print(f"| {name} | failed: {type(e).__name__}: {str(e).splitlines()[0][:100]} | |")
            continue
        rows[name] = {"ms": ms, "tflops": flop / ms / 1e9}
        print(f"| {name} | {ms:.3f} | {flop / ms / 1e9:.0f} |", flush=True)
    return rows


def with_tiles(tiles: mlp_gemm.Tiles, fn: Callable, *args):
    saved, mlp_gemm.TILES = mlp_gemm.TILES, tiles
    try:
        return fn(*args)
    finally:
        mlp_gemm.TILES = saved


def measure(step: Callable[[], list[torch.Tensor]], iters: int) -> tuple[float, int, list[torch.Tensor]]:
    """(median ms of step(), peak bytes it allocated above what was live before, its gradients)."""
    for _ in range(3):  # warm-up: compile, autotune, allocator
        step()
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    times = []
    for _ in range(iters):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        grads = step()
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end))
    peak = torch.cuda.max_memory_allocated() - base
    return sorted(times)[len(times) // 2], peak, grads


def gpu_ms(step: Callable, iters: int) -> float:
    """The GPU's kernel time of one step() in ms (the mean of iters steps under torch.profiler): what a
    GPU-bound training step pays, without the host time that CUDA events around a short step include."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(iters):
            step()
        torch.cuda.synchronize()
    return sum(ms for ms, _ in kernel_times(prof, iters).values())


def fwd_bwd(fn: Callable, inputs: list[torch.Tensor], extra: tuple, grad_out: torch.Tensor | None) -> Callable:
    """A step: zero the inputs' grads, fn(*inputs, *extra) under bf16 autocast, backward; the grads."""
    def step():
        for t in inputs:
            t.grad = None
        with torch.autocast("cuda", dtype=torch.bfloat16):
            out = fn(*inputs, *extra)
        out.backward(grad_out)
        return [t.grad for t in inputs]
    return step


def bench(title: str, variants: dict[str, Callable], inputs: list[torch.Tensor], extra: tuple,
          grad_out: torch.Tensor | None, iters: int) -> dict[str, dict]:
    print(f"\n{title}\n| variant | ms | GPU ms | peak MiB | vs eager | vs compiled eager | grad diff |\n"
          "|---|---:|---:|---:|---:|---:|---:|")
    rows: dict[str, dict] = {}
    ref = None
    for name, fn in variants.items():
        torch._dynamo.reset()
        try:
            step = fwd_bwd(fn, inputs, extra, grad_out)
            ms, peak, grads = measure(step, iters)
            gpu = gpu_ms(step, iters)
        except Exception as e:  # one variant that cannot run says why; the others go on
            print(f"| {name} | failed: {type(e).__name__}: {str(e).splitlines()[0][:100]} | | | | | |")
            continue
        if ref is None:
            ref = [g.float() for g in grads]
        diff = max(((g.float() - r).abs().max() / r.abs().max()).item() for g, r in zip(grads, ref))
        rows[name] = {"ms": ms, "gpu_ms": gpu, "peak_mib": peak / 2**20, "grad_diff": diff}
        base = rows.get("eager", {}).get("gpu_ms")
        comp = rows.get("compiled eager", {}).get("gpu_ms")
        ratio = lambda b: f"{b / gpu:.2f}x" if b and gpu else "-"  # noqa: E731  speedup: >1 = faster
        print(f"| {name} | {ms:.3f} | {gpu:.3f} | {peak / 2**20:,.0f} | {ratio(base)} | {ratio(comp)} | {diff:.1e} |",
              flush=True)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="record", help="presets/NAME.yaml applied onto params.yaml (default: record)")
    ap.add_argument("--params", type=Path, default=None, help="a full params file (overrides --preset)")
    ap.add_argument("--iters", type=int, default=20)
    ap.add_argument("--quick", action="store_true", help="5 timed runs per variant")
    ap.add_argument("--quack", action="store_true", help="also quack's CuTe GEMMs with the activation in the epilogue")
    ap.add_argument("--quack-tune", action="store_true", help="with --quack: also quack's autotuned GEMMs (minutes)")
    ap.add_argument("--mlp-tiles", default="", help="fused GEMM tile shapes to compare, MxNxKsSTAGESwWARPS "
                    "comma-separated (default: the shipped golf.kernels.mlp_gemm.TILES)")
    a = ap.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("bench_kernels needs a CUDA GPU")
    import triton

    iters = 5 if a.quick else a.iters
    label = str(a.params) if a.params else f"preset {a.preset}"
    if a.params is None:
        from golf.presets import preset_params

        a.params = preset_params(a.preset, ROOT, Path(tempfile.mkdtemp(prefix="golf-preset-")) / "params.yaml")
    s = shapes(a.params)
    n, v, d, hid = int(s["N"]), int(s["V"]), int(s["d"]), int(s["hidden"])
    torch.backends.cuda.matmul.allow_tf32 = True
    print(torch.cuda.get_device_name(), "torch", torch.__version__, "triton", triton.__version__)
    print(f"{label}: N={n} tokens, V={v}, d={d}, MLP hidden={hid}, softcap={s['softcap']}, "
          f"slope={s['slope']}; median of {iters}; ratios are speedups (>1 = faster than that baseline)")
    g = torch.Generator(device="cuda").manual_seed(0)
    rand = lambda *shape, std=1.0, dtype=torch.float32: (std * torch.randn(*shape, device="cuda", generator=g)).to(dtype)  # noqa: E731
    compiled = lambda fn: torch.compile(fn, fullgraph=True, dynamic=False)  # noqa: E731
    out = {}

    h = torch.nn.functional.rms_norm(rand(n, d), (d,)).requires_grad_()  # the final norm's output
    w = rand(v, d, std=0.02).requires_grad_()
    y = torch.randint(0, v, (n,), device="cuda", generator=g)
    out["head"] = bench(f"head: mean softcapped CE, h ({n}, {d}) @ W ({v}, {d})^T",
                        {"eager": eager_head, "compiled eager": compiled(eager_head), "fused": fused_head,
                         "compiled fused": compiled(fused_head)}, [h, w], (y, s["softcap"]), None, iters)
    del h, w, y

    u = rand(n, hid, dtype=torch.bfloat16).requires_grad_()
    du = rand(n, hid, dtype=torch.bfloat16)
    out["act"] = bench(f"act: leaky_relu(u, {s['slope']})^2, u ({n}, {hid}) bf16",
                       {"eager": eager_act, "compiled eager": compiled(eager_act), "fused": fused_act},
                       [u], (s["slope"],), du, iters)
    del u, du

    x = torch.nn.functional.rms_norm(rand(n, d), (d,)).requires_grad_()
    fc, proj = rand(hid, d, std=d ** -0.5).requires_grad_(), rand(d, hid, std=hid ** -0.5).requires_grad_()
    dx = rand(n, d, dtype=torch.bfloat16)
    gemm = mlp_gemm.mlp_leaky_relu2
    variants = {"eager": mlp(eager_act), "compiled eager": compiled(mlp(eager_act)), "fused": mlp(fused_act),
                "compiled fused": compiled(mlp(fused_act)), "fused GEMM": gemm, "compiled fused GEMM": compiled(gemm)}
    if a.quack:  # golf's MLP op through quack's GEMMs (train.fused_mlp = quack)
        variants |= {"quack GEMM": mlp_gemm.mlp_leaky_relu2_quack, "compiled quack GEMM": compiled(mlp_gemm.mlp_leaky_relu2_quack)}
    out["mlp"] = bench(f"mlp: fc ({hid}, {d}) -> act -> proj ({d}, {hid}), x ({n}, {d})",
                       variants, [x, fc, proj], (s["slope"],), dx, iters)
    bf16 = [t.detach().to(torch.bfloat16) for t in (x, fc, proj)]
    out["gemm"] = bench_gemm(*bf16, dx, s["slope"], parse_tiles(a.mlp_tiles), iters, a.quack, a.quack_tune)
    print("\n" + json.dumps(out))


if __name__ == "__main__":
    main()
