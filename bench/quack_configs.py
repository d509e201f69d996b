"""quack's Hopper GEMM configs for golf's two fused MLP GEMMs (golf/kernels/quack_gemm.py), one shape.

golf runs quack's default config (quack_gemm.TUNED = False): quack's own autotuning JIT-compiles every
config at the first call of each shape, which a cold start cannot pay. This sweep finds out what that
costs: for each of quack's Hopper configs (tile, cluster, pingpong or cooperative; no swap_ab, which
only pays when M is small) it runs golf's forward GEMM (gemm_act with LeakyReLU²) and backward GEMM
(the dact epilogue writing dpre only) and prints the GPU kernel time per call, fastest first, with the
default config's row marked, and whether each config's outputs equal the default's.

    python bench/quack_configs.py                                  # the record's MLP: 98,304 x 512 -> 2,048
    python bench/quack_configs.py --tokens 16384 --iters 20 --swap-ab
    python bench/quack_configs.py --quick                          # 3 calls per config

Each config is a CuTe JIT compile per GEMM, about 2-3 s cold. Kernel time from torch.profiler
(bench/bench_kernels.py `gpu_ms`), the mean over --iters calls. Needs a Hopper GPU and quack-kernels.
"""

from __future__ import annotations

import argparse

import torch
from bench_kernels import gpu_ms


def hopper_configs(swap_ab: bool) -> list:
    """quack's sm90 autotuning configs (quack.gemm_config), without swap_ab unless asked."""
    from quack.gemm_config import get_all_configs

    return [c for c in get_all_configs() if c.device_capacity == 9 and (swap_ab or not c.swap_ab)]


def as_tuple(out) -> tuple:
    """gemm_leaky_relu2's (pre, post) or the backward's dpre, as a tuple."""
    return out if isinstance(out, tuple) else (out,)


def label(c) -> str:
    kind = "pingpong" if c.pingpong else "coop"
    return f"{c.tile_m}x{c.tile_n} {kind} cluster {c.cluster_m}x{c.cluster_n}" + " swap_ab" * c.swap_ab


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tokens", type=int, default=98_304, help="M: tokens per micro-batch (record: 98,304)")
    ap.add_argument("--dim", type=int, default=512, help="K of the forward: model_dim")
    ap.add_argument("--hidden", type=int, default=2048, help="N: mlp_hidden")
    ap.add_argument("--slope", type=float, default=0.5, help="LeakyReLU slope (record: 0.5)")
    ap.add_argument("--iters", type=int, default=10, help="calls per config under the profiler")
    ap.add_argument("--quick", action="store_true", help="3 calls per config")
    ap.add_argument("--swap-ab", action="store_true", help="also the swap_ab configs")
    a = ap.parse_args()
    a.iters = 3 if a.quick else a.iters
    if not torch.cuda.is_available() or torch.cuda.get_device_capability()[0] != 9:
        raise SystemExit("quack_configs needs a Hopper GPU (compute capability 9)")
    from quack.gemm_config import default_config

    from golf.kernels import quack_gemm

    g = torch.Generator(device="cuda").manual_seed(0)
    rand = lambda *shape, std=1.0: (std * torch.randn(*shape, device="cuda", generator=g)).to(torch.bfloat16)  # noqa: E731
    x, w_fc = rand(a.tokens, a.dim), rand(a.hidden, a.dim, std=a.dim ** -0.5)
    dout, w_proj_t = rand(a.tokens, a.dim), rand(a.hidden, a.dim, std=a.hidden ** -0.5)  # W2ᵀ (N, K)
    pre, _ = quack_gemm.gemm_leaky_relu2(x, w_fc, a.slope)
    fwd = lambda c: quack_gemm.gemm_leaky_relu2(x, w_fc, a.slope, config=c)  # noqa: E731
    bwd = lambda c: quack_gemm.gemm_leaky_relu2_backward(dout, w_proj_t, pre, a.slope, config=c)  # noqa: E731
    default = default_config(x.device)
    want = {"fwd": fwd(default), "bwd": bwd(default)}
    flop = 2 * a.tokens * a.dim * a.hidden
    print(torch.cuda.get_device_name(), f"M={a.tokens} K={a.dim} N={a.hidden} slope={a.slope}; GPU ms per call, "
          f"mean of {a.iters}; default = {label(default)}")
    rows = []
    configs = hopper_configs(a.swap_ab)
    if default not in configs:
        configs.insert(0, default)
    for c in configs:
        row = {"config": label(c) + " (default)" * (c == default)}
        for kind, run in (("fwd", fwd), ("bwd", bwd)):
            try:
                same = all(map(torch.equal, as_tuple(run(c)), as_tuple(want[kind])))  # also the JIT compile
                row[kind], row[f"{kind}_same"] = gpu_ms(lambda run=run, c=c: run(c), a.iters), same
            except Exception as e:  # a config this epilogue or shape cannot take says why; the rest go on
                row[kind], row[f"{kind}_error"] = float("inf"), f"{type(e).__name__}: {str(e).splitlines()[0][:80]}"
        rows.append(row)
        print(f"  {row['config']}: fwd {row['fwd']:.3f} ms, bwd {row['bwd']:.3f} ms", flush=True)
    print("\n| config | fwd ms | fwd TFLOP/s | bwd ms | bwd TFLOP/s | fwd + bwd ms | outputs = default's |")
    print("|---|---:|---:|---:|---:|---:|---|")
    for r in sorted(rows, key=lambda r: r["fwd"] + r["bwd"]):
        if "fwd_error" in r or "bwd_error" in r:
            print(f"| {r['config']} | failed: {r.get('fwd_error') or r.get('bwd_error')} | | | | | |")
            continue
        print(f"| {r['config']} | {r['fwd']:.3f} | {flop / r['fwd'] / 1e9:.0f} | {r['bwd']:.3f} | "
              f"{flop / r['bwd'] / 1e9:.0f} | {r['fwd'] + r['bwd']:.3f} | "
              f"{'yes' if r['fwd_same'] and r['bwd_same'] else 'no'} |")
    for kind in ("fwd", "bwd"):
        best = min(rows, key=lambda r: r[kind])
        print(f"fastest {kind}: {best['config']} {best[kind]:.3f} ms")


if __name__ == "__main__":
    main()
