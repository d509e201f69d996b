"""Where LoRA TTT eval time goes: golf.eval.lora_ttt on the first documents of val, timed under each
SDPA kernel choice, then once under the CUDA profiler (kernels only).

    python bench/profile_ttt.py                          # the h100 preset, 64 docs, random weights
    python bench/profile_ttt.py --artifact artifacts/compress/model.golf --docs 128
    python bench/profile_ttt.py --kernels golf,cudnn     # SDPA kernels to time (golf: lora_ttt's own pick)
    python bench/profile_ttt.py --quick                  # 16 docs, golf's pick only

The weights do not change the work (every doc is read in the same chunks), so a fresh model of the
preset serves when no artifact is given. `busy` is the kernel time over the wall time; 1 - busy is
the GPU left idle while Python, the allocator or per-shape kernel setup runs.
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path

import numpy as np
import torch
from profile_train import bin_of
from torch.nn.attention import SDPBackend, sdpa_kernel
from trainrun import ROOT, h100_params

# each with the math kernel beside it, for the fp32 probe forward that sizes the adapters
KERNELS = {"golf": None, "default": [SDPBackend.CUDNN_ATTENTION, SDPBackend.FLASH_ATTENTION,
                                     SDPBackend.EFFICIENT_ATTENTION, SDPBackend.MATH], "flash": [SDPBackend.FLASH_ATTENTION, SDPBackend.MATH],
           "cudnn": [SDPBackend.CUDNN_ATTENTION, SDPBackend.MATH],
           "efficient": [SDPBackend.EFFICIENT_ATTENTION, SDPBackend.MATH]}


def load_model(params: Path, artifact: Path | None, device: torch.device) -> torch.nn.Module:
    if artifact is not None:
        from golf.eval.artifact import load_artifact_model

        return load_artifact_model(artifact, device)[0]
    from golf.artifact.model import GPT, ModelConfig
    from golf.params import load_section

    torch.manual_seed(0)
    model = GPT(load_section(params, "model", ModelConfig)).to(device)
    model.looping = model.cfg.num_loops > 0  # as the artifact loader does
    return model


def run(model, tokens, vb, cfg, device, bos_id):
    from golf.eval import lora_ttt

    t0 = time.perf_counter()
    cfg = dataclasses.replace(cfg, phased_prefix_docs=0, phased_num_phases=0)
    res, details = lora_ttt.evaluate(model, tokens, vb, cfg, bos_id=bos_id, device=device)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - t0, res, details


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--params", type=Path, default=None, help="full params file (default: the h100 preset)")
    ap.add_argument("--tokens", type=Path, default=ROOT / "data/tokens")
    ap.add_argument("--artifact", type=Path, default=None, help="model.golf to score (default: fresh weights)")
    ap.add_argument("--docs", type=int, default=64, help="val documents from the start of the stream")
    ap.add_argument("--kernels", default="golf,cudnn", help=f"SDPA kernels to time: {', '.join(KERNELS)}")
    ap.add_argument("--top", type=int, default=20)
    ap.add_argument("--quick", action="store_true", help="16 docs, golf's kernel choice only")
    ap.add_argument("--device", default="cuda", help="cpu: a smoke test of the script (no kernel profile)")
    a = ap.parse_args()
    a.params = a.params or h100_params()
    if a.quick:
        a.docs, a.kernels = min(a.docs, 16), "golf"
    if a.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("profile_ttt.py needs a CUDA GPU")
    from torch.profiler import ProfilerActivity, profile

    from golf.data.tokens import TokenData
    from golf.eval import lora_ttt
    from golf.eval.config import TttEvalConfig
    from golf.eval.lora_ttt import find_docs
    from golf.params import load_section

    device = torch.device(a.device)
    cfg = load_section(a.params, "ttt_eval", TttEvalConfig)
    data = TokenData(a.tokens)
    val = np.asarray(data.val)
    docs = find_docs(val, data.bos_id)[: a.docs]
    end = int(docs[-1, 1]) + 1
    tokens, vb = np.ascontiguousarray(val[:end]), np.ascontiguousarray(np.asarray(data.val_bytes)[:end])
    model = load_model(a.params, a.artifact, device)
    print(f"{len(docs)} docs, {end - 1:,} targets, chunk {cfg.chunk_size}, batch_docs {cfg.batch_docs}, "
          f"rank {cfg.lora_rank}")
    run(model, tokens[: int(docs[min(3, len(docs) - 1), 1]) + 1], vb, cfg, device, data.bos_id)  # CUDA/cuBLAS init
    own = lora_ttt.varying_shape_kernels
    for name in a.kernels.split(","):
        # lora_ttt sets its SDPA kernels around each batch: swap its choice for the one timed
        lora_ttt.varying_shape_kernels = own if KERNELS[name] is None else (lambda _d, k=KERNELS[name]: sdpa_kernel(k))
        s, res, det = run(model, tokens, vb, cfg, device, data.bos_id)
        print(f"sdpa {name}: {s:.2f} s, {res.tokens / s:,.0f} scored tok/s, bpb {res.bpb:.5f}, "
              f"{det['lora_steps']} LoRA steps ({s / max(det['lora_steps'], 1) * 1e3:.0f} ms/step)")
    if device.type != "cuda":
        return
    lora_ttt.varying_shape_kernels = own
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        wall, res, det = run(model, tokens, vb, cfg, device, data.bos_id)
    kernels = {e.key: e.self_device_time_total / 1e3 for e in prof.key_averages() if e.self_device_time_total > 0}
    busy = sum(kernels.values()) / 1e3
    bins: dict[str, float] = {}
    for k, v in kernels.items():
        bins[bin_of(k)] = bins.get(bin_of(k), 0.0) + v
    print(f"\nprofiled (golf's pick): wall {wall:.2f} s, kernels {busy:.2f} s (busy {busy / wall:.1%})")
    print("| bin | s | share of wall |\n|---|---:|---:|")
    for label, ms in sorted(bins.items(), key=lambda kv: -kv[1]):
        print(f"| {label} | {ms / 1e3:.2f} | {ms / 1e3 / wall:.1%} |")
    print(f"| idle | {max(wall - busy, 0):.2f} | {max(wall - busy, 0) / wall:.1%} |")
    print("\n| top kernels | bin | s | share |\n|---|---|---:|---:|")
    for k, v in sorted(kernels.items(), key=lambda kv: -kv[1])[: a.top]:
        print(f"| `{k[:90]}` | {bin_of(k)} | {v / 1e3:.3f} | {v / 1e3 / wall:.1%} |")


if __name__ == "__main__":
    main()
