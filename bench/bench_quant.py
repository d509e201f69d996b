"""hessian-calibrate + quantize at a preset's model, each timed as the process a user runs.

    python bench/bench_quant.py --checkpoint artifacts/train/model.safetensors   # a trained model
    python bench/bench_quant.py                # trains a 2-step eager model first (its speed is the same)
    python bench/bench_quant.py --quick        # 4 calibration batches instead of the preset's

Prints each stage's process wall time (start to exit: imports, loading and writing included) and
the sum against issue 8's target (20 s) and the record script (13.2 s Hessians + 10.4 s GPTQ).
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from trainrun import ROOT, golf, h100_params, train

RECORD_S = 13.2 + 10.4
TARGET_S = 20.0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--params", type=Path, default=None, help="full params file (default: the h100 preset)")
    ap.add_argument("--tokens", type=Path, default=ROOT / "data/tokens")
    ap.add_argument("--checkpoint", type=Path, default=None, help="trained model (default: train 2 eager steps)")
    ap.add_argument("--quick", action="store_true", help="4 calibration batches")
    ap.add_argument("--workdir", type=Path, default=None)
    a = ap.parse_args()
    a.params = a.params or h100_params()
    work = a.workdir or Path(tempfile.mkdtemp(prefix="bench-quant-"))
    ckpt = a.checkpoint
    if ckpt is None:
        train(work / "train", a.params, a.tokens, ["--max-wallclock-s", "0", "--iterations", "2", "--compile", "off",
                                                  "--no-cuda-graphs", "--warmup-steps", "0", "--val-every", "0"])
        ckpt = work / "train" / "model.safetensors"
    hess = work / "hessians.safetensors"
    common = ["--params", str(a.params), "--checkpoint", str(ckpt), "--tokens", str(a.tokens)]
    h_s = golf("hessian-calibrate", [*common, "--out", str(hess), "--metrics", str(work / "hessian.json"),
                                     *(["--batches", "4"] if a.quick else [])], work / "hessian.log")
    q_s = golf("quantize", [*common, "--hessians", str(hess), "--out", str(work / "qmodel.safetensors"),
                            "--report", str(work / "report.json"), "--metrics", str(work / "quantize.json")],
               work / "quantize.log")
    hm = json.loads((work / "hessian.json").read_text())["hessian_calibrate"]
    qm = json.loads((work / "quantize.json").read_text())["quantize"]
    res = {"hessian_process_s": h_s, "hessian_stage_s": hm["wall_s"], "hessian_tokens": hm["tokens"],
           "quantize_process_s": q_s, "quantize_stage_s": qm["wall_s"], "total_s": h_s + q_s,
           "quant_gap_bpb": qm["quant_gap_bpb"]}
    print(json.dumps(res))
    print(f"hessian-calibrate {h_s:.1f} s ({hm['tokens']:,} tokens) + quantize {q_s:.1f} s = {h_s + q_s:.1f} s "
          f"(target {TARGET_S:.0f} s; record script {RECORD_S:.1f} s: ratio {(h_s + q_s) / RECORD_S:.2f})")
    for log in ("hessian.log", "quantize.log"):
        print(f"--- {log} (tail)\n" + "\n".join((work / log).read_text(errors="replace").splitlines()[-6:]))


if __name__ == "__main__":
    main()
