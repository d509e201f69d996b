"""Where training's setup goes, with the compile_ahead helper started before the model's init, after it (as
golf/train/run.py does), or not at all: the seconds of each part, in golf/train/run.py's order, each run in a
fresh process with empty compile caches (trainrun.compile_cache_env).

    python bench/setup_parts.py --tokens .device-data/tokens --order none,after,before,after,none,before

Parts: imports (torch and golf), init (the GPT on the CPU, seeded), spawn (ahead.start), backend (set_backend:
FA4's import), quack (quack's import, which make_stepper does first), stepper (make_stepper and the Stepper's
compile call). The helper is stopped once they are timed: this measures what it costs training's setup, not
what it gains later (bench_train.py's start_s does). BENCHMARKS.md, twenty-ninth session: a helper started
before the init made the init 10-18x slower.
"""

from __future__ import annotations

import time

T0 = time.perf_counter()

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
from pathlib import Path  # noqa: E402

from trainrun import ROOT, compile_cache_env, h100_params  # noqa: E402

PLACES = ("none", "before", "after")
PARTS = ("imports", "init", "spawn", "backend", "quack", "stepper")


def one(params: Path, tokens: Path, place: str, device_name: str) -> dict[str, float]:
    """In this process: the setup's parts, in seconds, with the helper started at `place`."""
    import torch

    from golf.artifact.model import GPT
    from golf.artifact.model.config import ModelConfig
    from golf.artifact.runtime import Dist
    from golf.artifact.typed import build_section
    from golf.data.tokens import TokenData
    from golf.params import read_params
    from golf.train import ahead, fused
    from golf.train.backend import set_backend
    from golf.train.config import TrainConfig
    from golf.train.loop import inductor_options, make_stepper, seed_everything

    p = read_params(params)
    model_cfg = build_section(p["model"], "model", ModelConfig, {})
    cfg = build_section(p["train"], "train", TrainConfig, {})
    device = torch.device(device_name)
    train_tokens = TokenData(tokens).train
    parts, t = {"imports": time.perf_counter() - T0}, time.perf_counter()

    def lap(name: str) -> None:
        nonlocal t
        now = time.perf_counter()
        parts[name], t = parts.get(name, 0.0) + now - t, now

    helper = None

    def spawn() -> None:
        nonlocal helper
        helper = ahead.start(model_cfg, cfg, train_tokens, device, 1)
        lap("spawn")

    try:
        if place == "before":
            spawn()
        seed_everything(cfg.seed)
        model = GPT(model_cfg)
        lap("init")
        if place == "after":
            spawn()
        set_backend(model, cfg.attention_backend, device)
        lap("backend")
        fused.quack_missing()
        lap("quack")
        stepper = make_stepper(model, cfg, train_tokens, device, Dist(0, 0, 1), announce=False)
        stepper.compile(ahead.InductorThenKernels(inductor_options(cfg), helper) if helper else None)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        lap("stepper")
    finally:
        ahead.stop(helper)
    return parts


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tokens", type=Path, default=ROOT / "data/tokens", help="golf tokenize's output folder")
    ap.add_argument("--params", type=Path, help="a full params file (default: the h100 preset's)")
    ap.add_argument("--order", default="none,after,before,before,after,none",
                    help=f"comma-separated placements ({', '.join(PLACES)}), one fresh process each, in this order")
    ap.add_argument("--device", default="cuda", help="cuda or cpu")
    ap.add_argument("--one", choices=PLACES, help=argparse.SUPPRESS)  # the child process's own run
    a = ap.parse_args()
    order = a.order.split(",")
    if bad := [p for p in order if p not in PLACES]:
        sys.exit(f"--order (command line): {bad[0]!r} is not one of {', '.join(PLACES)}")
    params = a.params or h100_params()
    if a.one:
        print(json.dumps(one(params, a.tokens, a.one, a.device)), flush=True)
        return
    print("| helper | " + " | ".join((*PARTS, "total")) + " |")
    print("|---|" + "---:|" * (len(PARTS) + 1))
    for place in order:
        with tempfile.TemporaryDirectory(prefix="golf-setup-") as cache:
            out = subprocess.run([sys.executable, __file__, "--one", place, "--params", str(params), "--tokens",
                                  str(a.tokens), "--device", a.device], capture_output=True, text=True,
                                 env={**os.environ, **compile_cache_env(Path(cache))})
        if out.returncode:
            sys.exit(f"setup_parts: the {place} run failed:\n{out.stderr[-2000:]}")
        parts = json.loads(out.stdout.strip().splitlines()[-1])
        cells = [parts.get(k) for k in PARTS]
        print(f"| {place} | " + " | ".join("" if c is None else f"{c:.2f}" for c in cells)
              + f" | {sum(parts.values()):.2f} |", flush=True)


if __name__ == "__main__":
    main()
