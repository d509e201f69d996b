"""golf against the 1.0611 record script, side by side on one GPU, on the same tokens, with the same
attention kernel: start to the first step and tokens/s before and after depth recurrence switches on.

The record script (openai/parameter-golf, records/track_10min_16mb/
2026-04-27_SP8192_LQER_SparseGate_BOSSmearFix_9HpStack_1.0611/train_gpt.py) is fetched by whoever
runs this into .record/ (git-ignored; a lent machine gets it with carry [".record"]), never committed. It runs on golf's tokens with its README's
settings (brotli instead of lrzip, TTT off), its FA3 calls served by golf's FA4 custom ops
(bench/fa3_standin/); golf runs `golf train` at the record model (the h100 preset: the same 786,432
tokens per step on one GPU) in step mode, looping from half its steps, as bench/bench_train.py does.

    python bench/bench_record.py --record REC/train_gpt.py            # everything, in order (~17 min)

A lent machine runs at most 600 s per command and the record needs 480-771 s to its first step on
the H200 (its compile runs on the host, whose speed varies by machine), so the run splits into calls
while the machine stays up (state in --state-dir, /tmp):

    python bench/bench_record.py --record REC/train_gpt.py --start-record   # launches it detached, returns
    python bench/bench_record.py --wait-record --wait-s 550   # exit 3: not through its phases yet (again)
    python bench/bench_record.py --golf                       # golf alone, its result kept
    python bench/bench_record.py --collect                    # the table

(bench/side_by_side.sh makes those the calls of a lent machine.)

golf runs after the record is stopped, never beside it, so neither competes for the GPU or the CPUs:
`--golf` refuses while the record runs, and the table refuses a golf run that overlapped the record's
measured steps.
Start the record first on a fresh machine. The record died in three sessions at 554-571 s, in its warm-up
(SIGSEGV in the thirteenth and fifteenth, SIGBUS in the eighteenth), each time near the end of the first
call's 545-550 s wait, when the next call begins. A call re-copies the carried tokens, which the record
memory-mapped through links, and re-unpacked FA4's wheels over the libraries it had loaded (BENCHMARKS.md,
eighteenth session). The record now reads copies of the tokens, and bench/device_env.sh unpacks the
wheels once per machine; in the nineteenth session the record ran on through the next call's start
(570 s), to its first step at 771 s and 44 more. `--collect` alone also waits for the record and runs
golf itself when no `--golf` result is kept.

Reading the record's log: its step lines carry tok/s cumulative since training began, so a phase's
rate comes from two lines s1 < s2: (s2 - s1) / (s2 / r2 - s1 / r1) tokens per second; steps up to K
of "layer_loop:enabled step:K" ran before looping. golf's phases use its per-step rows the same way
(total tokens over total time of the phase's steps, the first two of each phase left out).
Start to the first step: the record's from its launch (each log line is stamped); golf's from its
process launch (the train metrics' first_step_s plus the process time before the stage's clock).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

from trainrun import (
    ROOT,
    compile_cache_env,
    h100_params,
    host_line,
    host_probe,
    launch_s,
    start_parts,
    step_flags,
    train,
)

STEP_LINE = re.compile(r"^\[\s*([\d.]+)\]\s+(\d+)/\d+ train_loss: \S+ train_time: \S+ tok/s: ([\d.]+)")
LOOP_LINE = re.compile(r"layer_loop:enabled step:(\d+)")
DONE_LINE = re.compile(r"stopping_early|peak memory allocated")
SKIP_STEPS = 2  # steps left out at the start of each phase (compile / allocator warm-up)
# The record README's settings (TTT off, brotli: what bench/ can run on one GPU), as the script's env vars.
RECORD_ENV = {
    "VOCAB_SIZE": "8192", "CASEOPS_ENABLED": "1", "ITERATIONS": "20000", "PHASED_TTT_ENABLED": "0",
    "TTT_ENABLED": "0", "EMBED_BITS": "7", "MATRIX_LR": "0.026", "MIN_LR": "0.1", "MLP_CLIP_SIGMAS": "11.5",
    "ATTN_CLIP_SIGMAS": "13.0", "EMBED_CLIP_SIGMAS": "14.0", "GRAD_CLIP_NORM": "0.3", "WARMUP_STEPS": "20",
    "MUON_BACKEND_STEPS": "5", "WARMDOWN_FRAC": "0.85", "BETA2": "0.99", "SPARSE_ATTN_GATE_SCALE": "0.5",
    "GPTQ_RESERVE_SECONDS": "0.5", "GPTQ_CALIBRATION_BATCHES": "16", "VAL_LOSS_EVERY": "0",
    "GATED_ATTN_QUANT_GATE": "1", "SPARSE_ATTN_GATE_ENABLED": "1", "GATE_WINDOW": "12", "SMEAR_GATE_ENABLED": "1",
    "LQER_ENABLED": "1", "LQER_ASYM_ENABLED": "1", "LQER_RANK": "4", "LQER_FACTOR_BITS": "4",
    "LQER_ASYM_GROUP": "64", "LQER_TOP_K": "3", "FUSED_CE_ENABLED": "1", "COMPRESSOR": "brotli",
    "TRAIN_LOG_EVERY": "5",
}
# CASEOPS_ENABLED=1 only makes the script read golf's per-token byte sidecar (val_bytes_*.bin, the same
# layout) for its BPB denominator: its varlen val eval needs one. The tokens are whatever golf wrote.


# ---- the record script -------------------------------------------------------------------------

def record_data(tokens: Path, into: Path) -> tuple[Path, Path]:
    """golf's shards copied under the names the record script reads: (dataset dir, tokenizer). Copies, not
    links: the record memory-maps its train shards, and a lent machine writes the carried tokens afresh at
    each call, so a record still running when the next call began died of SIGBUS (eighteenth session)."""
    ds = into / "datasets" / "fineweb10B_sp8192"
    ds.mkdir(parents=True, exist_ok=True)
    for split, name in (("train", "train"), ("val", "val"), ("val_bytes", "val_bytes")):
        shards = sorted(tokens.glob(f"{split}_[0-9]*.bin"))
        if not shards and split != "val_bytes":
            raise SystemExit(f"{tokens}: no {split}_NNNNNN.bin shards")
        for i, f in enumerate(shards):
            shutil.copyfile(f, ds / f"fineweb_{name}_{i:06d}.bin")
    tok = into / "tokenizers" / "fineweb_8192_bpe.model"
    tok.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(tokens / "tokenizer.model", tok)
    return ds, tok


def start_record(script: Path, tokens: Path, state_dir: Path, wall_s: float, seed: int) -> dict:
    """Launch the record detached (its own session, output stamped into a log); return its state."""
    if not script.is_file():
        raise SystemExit(f"--record {script}: not found (fetch openai/parameter-golf into an ignored folder)")
    state_dir.mkdir(parents=True, exist_ok=True)
    run = Path(tempfile.mkdtemp(prefix="record-run.", dir=state_dir))
    ds, tok = record_data(tokens, run / "data")
    log = state_dir / "record.log"
    env = {**os.environ, **RECORD_ENV, "RUN_ID": "record", "DATA_DIR": f"{run / 'data'}/", "DATA_PATH": str(ds),
           "TOKENIZER_PATH": str(tok), "MAX_WALLCLOCK_SECONDS": str(wall_s), "SEED": str(seed),
           **compile_cache_env(run / "inductor-cache"),  # cold, as golf's runs
           # a crash prints each thread's Python stack into the log (the thirteenth session's SIGSEGV at 571 s
           # left none: BENCHMARKS.md)
           "PYTHONFAULTHANDLER": "1",
           "PYTHONPATH": os.pathsep.join([str(ROOT / "bench" / "fa3_standin"), str(ROOT),
                                         os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)}
    t0 = time.time()
    stamp = f"{sys.executable} -u {Path(__file__).resolve()} --stamp-since {t0!r}"
    cmd = f"torchrun --standalone --nproc_per_node=1 {script.resolve()} 2>&1 | {stamp} > {log}"
    proc = subprocess.Popen(["bash", "-c", cmd], cwd=run, env=env, start_new_session=True,
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    state = {"pgid": proc.pid, "log": str(log), "t0": t0, "script": str(script), "tokens": str(tokens),
             "wall_s": wall_s, "seed": seed}
    (state_dir / "record.json").write_text(json.dumps(state, indent=1) + "\n")
    print(f"record: launched (process group {proc.pid}), log {log}")
    return state


def stamp_lines(t0: float) -> None:
    """stdin -> stdout, each line prefixed with [seconds since t0] (the record's log filter)."""
    for line in sys.stdin:
        sys.stdout.write(f"[{time.time() - t0:8.2f}] {line}")
        sys.stdout.flush()


def parse_record(text: str) -> dict:
    """{first_step_s, loop_step, pre, post, steps, done} from a stamped record log (None where absent)."""
    steps = [(int(m[2]), float(m[1]), float(m[3])) for m in map(STEP_LINE.match, text.splitlines()) if m]
    loop = LOOP_LINE.search(text)
    k = int(loop[1]) if loop else None

    def rate(lines: list[tuple[int, float, float]]) -> float | None:
        if len(lines) < 2:
            return None
        (s1, _, r1), (s2, _, r2) = lines[0], lines[-1]
        return (s2 - s1) / (s2 / r2 - s1 / r1)  # s / r = seconds since training began / tokens per step

    pre = [s for s in steps if SKIP_STEPS <= s[0] <= (k if k is not None else 10**9)]
    post = [s for s in steps if k is not None and s[0] >= k + SKIP_STEPS]
    measured = pre + post
    return {"first_step_s": next((t for s, t, _ in steps if s == 1), None), "loop_step": k,
            "pre": rate(pre), "post": rate(post),
            # seconds since launch of the first and last step line the rates use
            "measured_s": [measured[0][1], measured[-1][1]] if measured else None,
            "steps": steps[-1][0] if steps else 0, "post_lines": len(post), "done": bool(DONE_LINE.search(text))}


def record_ready(p: dict, post_lines: int) -> bool:
    return p["post"] is not None and (p["post_lines"] >= post_lines or p["done"])


def record_alive(state: dict) -> bool:
    try:
        os.killpg(state["pgid"], 0)
        return True
    except (ProcessLookupError, PermissionError):  # gone, or its number now another user's
        return False


def shared_gpu(golf: dict, rec: dict, t0: float) -> str | None:
    """Why golf's run and the record's measured steps overlapped in time, or None when golf ran wholly
    before the record's launch or wholly after its last measured step. (The nineteenth session's script ran
    golf after a --wait-record that had timed out: its rates fell 1.5-23%, and the table printed a ratio.)"""
    start, end = golf.get("ran_s", (None, None))
    if start is None or rec["measured_s"] is None:
        return "golf.json or the record's log lacks the times needed to prove the runs did not overlap"
    first, last = (t0 + t for t in rec["measured_s"])
    if end <= t0 or start >= last:
        return None
    return (f"golf ran from {start - t0:.0f} to {end - t0:.0f} s after the record's launch, and the record's "
            f"measured steps from {first - t0:.0f} to {last - t0:.0f} s: they shared the GPU")


def stop_record(state: dict) -> None:
    """End the record's whole process group (torchrun, its worker, the log filter)."""
    for sig, wait in ((signal.SIGTERM, 20.0), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(state["pgid"], sig)
        except (ProcessLookupError, PermissionError):  # gone, as record_alive reads the same two errors
            return
        end = time.time() + wait
        while time.time() < end:
            if not record_alive(state):
                return
            time.sleep(0.5)


def wait_record(state: dict, wait_s: float, post_lines: int) -> dict | None:
    """The parsed log once the record is through both phases (then stopped), or None after wait_s."""
    end = time.time() + wait_s
    while True:
        text = Path(state["log"]).read_text(errors="replace") if Path(state["log"]).exists() else ""
        p = parse_record(text)
        if record_ready(p, post_lines):
            stop_record(state)
            return p
        alive = record_alive(state)
        if not alive or time.time() >= end:
            tail = "\n".join(text.splitlines()[-12:])
            why = "it ended before both phases" if not alive else f"not through both phases after {wait_s:.0f} s"
            print(f"record: {why} ({time.time() - state['t0']:.0f} s since launch, {p['steps']} steps); "
                  f"log ends:\n{tail}")
            return None
        time.sleep(5.0)


# ---- golf ----------------------------------------------------------------------------------------

def golf_phase_rates(rows: list[dict], switch: int, batch_tokens: int) -> tuple[float, float]:
    """tokens/s of the steps before looping (the first SKIP_STEPS left out) and after, as total tokens
    over total time, the same estimator as the record's."""
    dts = {int(r["step"]): batch_tokens / float(r["tokens_per_s"]) for r in rows}
    pre = [dt for s, dt in dts.items() if SKIP_STEPS < s <= switch]
    post = [dt for s, dt in dts.items() if s > switch + SKIP_STEPS]
    rate = lambda xs: len(xs) * batch_tokens / sum(xs) if xs else float("nan")  # noqa: E731
    return rate(pre), rate(post)


def record_state(state_dir: Path) -> dict | None:
    """The state --start-record left in state_dir (record.json), or None if it launched none there."""
    state_file = state_dir / "record.json"
    return json.loads(state_file.read_text()) if state_file.is_file() else None


def refuse_beside_record(state_dir: Path) -> None:
    """--golf while a record launched from state_dir still runs would measure both on a shared GPU."""
    state = record_state(state_dir)
    if state is not None and record_alive(state):
        raise SystemExit(f"--golf: the record (process group {state['pgid']}, {state_dir / 'record.json'}) is "
                         "still running; wait for it with --wait-record first (it stops the record)")


def run_golf(a: argparse.Namespace) -> dict:
    from golf.params import read_params

    params = read_params(a.params)
    flags = [*step_flags(a.golf_steps, a.warmup_steps), "--seed", str(a.seed), *a.golf_flag]
    started = time.time()
    workdir = a.state_dir / "golf"
    shutil.rmtree(workdir, ignore_errors=True)  # its compile caches too: every golf call starts cold
    r = train(workdir, a.params, a.tokens, flags)
    m = r["metrics"]
    pre, post = golf_phase_rates(r["rows"], a.golf_steps // 2, int(params["train"]["train_batch_tokens"]))
    launch_to_stage = launch_s(r)
    out = {"params": str(a.params), "flags": flags, "first_step_s": m["first_step_s"] + launch_to_stage,
           "first_step_s_stage": m["first_step_s"], "launch_s": launch_to_stage,
           "start_s": start_parts(m),
           "pre": pre, "post": post, "steps": m["steps"],
           "attention": m["attention_backend"], "fused_mlp": m.get("fused_mlp") or "eager",
           "doc_masked_attention": params["model"].get("doc_masked_attention"),
           "cuda_graphs": m["cuda_graphs"], "combo_kernels": m.get("combo_kernels"),
           "compile_ahead": m.get("compile_ahead"),
           "val_bpb": m["val_bpb"], "peak_gib": m["peak_mem_bytes"] / 2**30, "process_s": r["process_s"],
           "ran_s": [started, time.time()]}  # epoch seconds, for shared_gpu
    (a.state_dir / "golf.json").write_text(json.dumps(out, indent=1) + "\n")
    print("golf:", json.dumps(out), flush=True)
    return out


# ---- the table -----------------------------------------------------------------------------------

def report(golf: dict, rec: dict, state: dict, out: Path) -> None:
    import torch

    overlap = shared_gpu(golf, rec, state["t0"])
    if overlap:
        raise SystemExit(f"no ratio: {overlap} (run golf again after --wait-record has stopped the record)")
    record = {**{k: rec[k] for k in ("first_step_s", "pre", "post", "loop_step", "steps")},
              "script": state["script"], "wall_s": state["wall_s"]}
    ratio = {k: golf[k] / record[k] for k in ("first_step_s", "pre", "post")}
    gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else "no CUDA device"
    host = host_probe()
    result = {"date": date.today().isoformat(), "gpu": gpu, "torch": torch.__version__, "tokens": state["tokens"],
              "host": host, "golf": golf, "record": record, "golf_over_record": ratio}
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"\n{gpu}, {result['date']}, tokens {state['tokens']}; golf: {golf['attention']} attention, "
          f"{golf.get('fused_mlp', '?')} MLP, "
          f"doc_masked_attention {golf['doc_masked_attention']}, cuda_graphs {golf.get('cuda_graphs', '?')}, "
          f"combo_kernels {golf.get('combo_kernels', '?')}\n"
          f"{host_line(host)}")
    print("| | start to 1st step | tok/s before looping | after looping |\n|---|---:|---:|---:|")
    for name, r in (("golf", golf), ("record script (FA4 via golf.kernels.fa4)", record)):
        print(f"| {name} | {r['first_step_s']:.0f} s | {r['pre'] / 1e6:.3f} M | {r['post'] / 1e6:.3f} M |")
    print(f"| golf / record | {ratio['first_step_s']:.2f} | {ratio['pre']:.2f} | {ratio['post']:.2f} |")
    if note := looped_later(golf):
        print(note)
    print(f"\nwritten: {out}")


def looped_later(golf: dict) -> str | None:
    """What golf's start leaves out when its compile_ahead helper compiled the looped graph (golf/train/ahead.py):
    that graph's warm-up at the switch, off golf's train clock. The record warms both up before its first step."""
    looped = golf.get("start_s", {}).get("looped")
    if not golf.get("compile_ahead") or looped is None:
        return None
    return (f"golf's start leaves out its looped graph's warm-up where looping switched on: {looped:.1f} s, "
            "off its train clock (the record warms both graphs up before its first step)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--record", type=Path, help="the record's train_gpt.py (for --start-record)")
    ap.add_argument("--tokens", type=Path, default=ROOT / "data/tokens", help="golf's tokens, for both")
    ap.add_argument("--params", type=Path, default=None, help="golf's full params file (default: the h100 preset)")
    ap.add_argument("--golf-steps", type=int, default=40, help="golf's optimizer steps (looping from half)")
    ap.add_argument("--golf-flag", action="append", default=[], metavar="FLAG",
                    help="an extra `golf train` flag word (repeatable), e.g. --golf-flag=--attention-backend")
    ap.add_argument("--warmup-steps", type=int, default=3, help="golf's compile warm-up steps per graph")
    ap.add_argument("--record-wall-s", type=float, default=60.0, help="the record's training seconds")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--post-lines", type=int, default=3, help="record step lines wanted after looping")
    ap.add_argument("--state-dir", type=Path, default=Path("/tmp/golf-bench-record"))
    ap.add_argument("--json", type=Path, default=None, help="where to write the result (default: state dir)")
    ap.add_argument("--start-record", action="store_true", help="launch the record detached and return")
    ap.add_argument("--golf", action="store_true", help="run golf now and keep its result for --collect")
    ap.add_argument("--wait-record", action="store_true", help="wait for the record to get through both phases, "
                    "stop it, and return (exit 3 after --wait-s without that)")
    ap.add_argument("--collect", action="store_true", help="wait for the record, stop it, run golf if needed, print")
    ap.add_argument("--wait-s", type=float, default=3600.0, help="--collect, --wait-record: seconds to wait for the record")
    ap.add_argument("--quick", action="store_true", help="golf 16 steps, the record 40 s of training")
    ap.add_argument("--stamp-since", type=float, default=None, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.stamp_since is not None:
        return stamp_lines(a.stamp_since)
    if a.quick:
        a.golf_steps, a.record_wall_s, a.post_lines = 16, 40.0, 2
    a.params = a.params or h100_params()
    everything = not (a.start_record or a.golf or a.collect or a.wait_record)
    if a.golf:
        refuse_beside_record(a.state_dir)
        run_golf(a)
    if a.start_record or everything:
        if a.record is None:
            ap.error("--record PATH is needed to start the record script")
        start_record(a.record, a.tokens, a.state_dir, a.record_wall_s, a.seed)
    if not (a.collect or a.wait_record or everything):
        return
    state = record_state(a.state_dir)
    if state is None:
        raise SystemExit(f"{a.state_dir / 'record.json'}: no record run to collect (start one with --start-record)")
    rec = wait_record(state, a.wait_s, a.post_lines)
    if rec is None:
        sys.exit(3)  # call --wait-record or --collect again while the machine is up
    if a.wait_record and not a.collect:
        print(f"record: through both phases, stopped; first step at {rec['first_step_s']} s")
        return
    golf_file = a.state_dir / "golf.json"
    golf = json.loads(golf_file.read_text()) if golf_file.is_file() else run_golf(a)
    report(golf, rec, state, a.json or a.state_dir / "bench_record.json")


if __name__ == "__main__":
    main()
