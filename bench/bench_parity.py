"""Parity: does the fast path (torch.compile, the preset's compile scope, attention kernel and fused
Triton kernels) train the same model as the plain eager path? Same data, same seed, a few hundred steps.

    python bench/bench_parity.py                 # the h100 preset's model, 300 steps of 64 x 1024 tokens
    python bench/bench_parity.py --quick         # 100 steps
    python bench/bench_parity.py --fast-flags "--compile-scope model"

Three `golf train` runs: fast (seed s), eager (--compile off --fused-kernels off --no-cuda-graphs, seed s) and fast
with seed s+1. The seed changes the init and the data order, so |fast(s) - fast(s+1)| is the
run-to-run noise that the fast-vs-eager difference is judged against. The verdict is on the final
val BPB of the EMA weights (one fixed held-out set, scored the same way for all three runs); the
mean train loss of the last 10% of steps is printed beside it, but it is a noisier yardstick: the
seed run trains on other batches, so its tail loss differs by batch difficulty as well as by weights.
"""

from __future__ import annotations

import argparse
import json
import shlex
import tempfile
from pathlib import Path

from trainrun import ROOT, h100_params, step_flags, train


def tail_loss(rows: list[dict]) -> float:
    losses = [float(r["train_loss"]) for r in rows]
    n = max(1, len(losses) // 10)
    return sum(losses[-n:]) / n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--params", type=Path, default=None, help="full params file (default: the h100 preset)")
    ap.add_argument("--tokens", type=Path, default=ROOT / "data/tokens")
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--quick", action="store_true", help="100 steps")
    ap.add_argument("--batch-tokens", type=int, default=65536)
    ap.add_argument("--seq-len", type=int, default=1024)
    ap.add_argument("--seed", type=int, default=1337)
    ap.add_argument("--fast-flags", default="", help="extra `golf train` flags of the fast runs")
    ap.add_argument("--workdir", type=Path, default=None)
    a = ap.parse_args()
    a.params = a.params or h100_params()
    steps = 100 if a.quick else a.steps
    common = [*step_flags(steps, 2), "--train-batch-tokens", str(a.batch_tokens),
              "--train-seq-len", str(a.seq_len), "--grad-accum-steps", "1", "--warmdown-frac", "0.3",
              "--muon-momentum-warmup-steps", str(steps // 3)]
    fast = shlex.split(a.fast_flags)
    work = a.workdir or Path(tempfile.mkdtemp(prefix="bench-parity-"))
    runs = {"fast": common + fast + ["--seed", str(a.seed)],
            "eager": common + ["--compile", "off", "--fused-kernels", "off", "--no-cuda-graphs", "--seed", str(a.seed)],
            "fast_seed2": common + fast + ["--seed", str(a.seed + 1)]}
    res = {}
    for name, flags in runs.items():
        # the two fast runs share one inductor cache: the second compiles warm (same graphs)
        r = train(work / name, a.params, a.tokens, flags, cache_dir=work / "fast-cache" if "fast" in name else None)
        res[name] = {"tail_loss": tail_loss(r["rows"]), "val_bpb": r["metrics"]["val_bpb"],
                     "curve": {int(x["step"]): float(x["train_loss"]) for x in r["rows"]},
                     "tokens_per_s": r["metrics"]["tokens_per_s"]}
        print(name, json.dumps({k: v for k, v in res[name].items() if k != "curve"}), flush=True)
    f, e, f2 = res["fast"], res["eager"], res["fast_seed2"]
    marks = sorted({max(1, steps * i // 6) for i in range(1, 7)})
    print(f"\n{steps} steps of {a.batch_tokens:,} tokens ({a.params.name}); train loss at steps:")
    print("| run | " + " | ".join(str(s) for s in marks) + " | last 10% | val BPB | tok/s |")
    print("|---|" + "---:|" * (len(marks) + 3))
    for name, r in res.items():
        print(f"| {name} | " + " | ".join(f"{r['curve'][s]:.4f}" for s in marks)
              + f" | {r['tail_loss']:.4f} | {r['val_bpb']:.4f} | {r['tokens_per_s']:,.0f} |")
    d_eager, d_seed = abs(f["tail_loss"] - e["tail_loss"]), abs(f["tail_loss"] - f2["tail_loss"])
    b_eager, b_seed = abs(f["val_bpb"] - e["val_bpb"]), abs(f["val_bpb"] - f2["val_bpb"])
    print(f"\nval BPB: |fast - eager| = {b_eager:.4f}, run-to-run (seed) = {b_seed:.4f}  ->  "
          f"{'PARITY' if b_eager <= b_seed else 'CHECK: beyond seed noise'}")
    print(f"train loss, last 10%: |fast - eager| = {d_eager:.4f}, run-to-run (seed) = {d_seed:.4f} "
          f"(ratio {d_eager / max(d_seed, 1e-12):.2f})")


if __name__ == "__main__":
    main()
