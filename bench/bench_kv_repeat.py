"""FA4 with GQA (8 query heads over 4 KV heads) against the same attention on K / V repeated to the 8 query heads,
forward and backward, on the documents golf's loader packs into a micro-batch (train.fused_kv_repeat).

    python bench/bench_kv_repeat.py --tokens data/tokens

Prints the largest difference of the outputs and of the gradients (the repeated heads' dK / dV summed over each
head's copies), then each variant's kernel time per call (torch.profiler), split by kernel: under GQA FA4's
backward zeroes fp32 dK / dV accumulators, adds every query head into them and converts them in its
postprocess; on repeated heads it writes bf16 dK / dV itself. Last, what torch's own repeat and pair sum cost
(golf does neither standalone: qk_rope writes k's copies and sums their gradients, golf/kernels/qk_rope.py).
Needs a Hopper GPU and flash-attn-4.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from fa4_configs import micro_batches
from kernel_time import kernel_us


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tokens", type=Path, required=True, help="a golf tokens folder (manifest.json, train shards)")
    ap.add_argument("--micro", type=int, default=4, help="micro-batches (48 x 2,048 tokens) each timing walks")
    ap.add_argument("--reps", type=int, default=10, help="timed walks over the micro-batches")
    a = ap.parse_args()
    if not torch.cuda.is_available() or torch.cuda.get_device_capability()[0] != 9:
        raise SystemExit("bench_kv_repeat needs a Hopper GPU (compute capability 9)")
    from flash_attn.cute.interface import _flash_attn_bwd, _flash_attn_fwd

    cus = micro_batches(a.tokens, 48, 2048, a.micro)
    n = 48 * 2048
    g = torch.Generator(device="cuda").manual_seed(0)
    rand = lambda h: torch.randn(n, h, 64, device="cuda", generator=g).to(torch.bfloat16)  # noqa: E731
    q, k4, v4, dout = rand(8), rand(4), rand(4), rand(8)
    k8, v8 = k4.repeat_interleave(2, 1), v4.repeat_interleave(2, 1)
    kw = dict(max_seqlen_q=2048, max_seqlen_k=2048, causal=True)

    def fwd(k, v):
        return [_flash_attn_fwd(q, k, v, cu_seqlens_q=cu, cu_seqlens_k=cu, return_lse=True, **kw)[:2] for cu in cus]

    outs = {4: fwd(k4, v4), 8: fwd(k8, v8)}

    def bwd(k, v, heads):
        return [_flash_attn_bwd(q, k, v, o, dout, lse, cu_seqlens_q=cu, cu_seqlens_k=cu, **kw)[:3]
                for cu, (o, lse) in zip(cus, outs[heads])]

    print(f"{torch.cuda.get_device_name()}: {a.micro} micro-batches of 48 x 2,048 tokens from {a.tokens}")
    print("forward max |diff|", max(float((x[0].float() - y[0].float()).abs().max()) for x, y in zip(outs[4], outs[8])))
    gqa, mha = bwd(k4, v4, 4), bwd(k8, v8, 8)
    for i, name in enumerate(("dq", "dk", "dv")):
        summed = lambda t: t.float().view(n, 4, 2, 64).sum(2) if i else t.float()  # noqa: E731
        print(f"{name} max |diff|, repeated heads summed: "
              f"{max(float((x[i].float() - summed(y[i])).abs().max()) for x, y in zip(gqa, mha)):.3e}")

    def show(label, fn):
        total, per = kernel_us(fn, a.reps)
        print(f"\n{label}: {total / len(cus):.1f} us per call")
        for kernel, us in sorted(per.items(), key=lambda kv: -kv[1])[:8]:
            print(f"   {us / len(cus):8.1f}  {kernel[:110]}")

    show("forward, GQA", lambda: fwd(k4, v4))
    show("forward, K / V repeated", lambda: fwd(k8, v8))
    show("backward, GQA", lambda: bwd(k4, v4, 4))
    show("backward, K / V repeated", lambda: bwd(k8, v8, 8))
    show("torch: k repeated (repeat_interleave)", lambda: [k4.repeat_interleave(2, 1) for _ in cus])
    dk8 = mha[0][1]
    show("torch: dk's copies summed", lambda: [dk8.view(n, 4, 2, 64).sum(2) for _ in cus])


if __name__ == "__main__":
    main()
