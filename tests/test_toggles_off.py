"""Every toggle at its params.yaml default leaves today's numbers unchanged (issue 20).

A tiny GPT (every `model` / `train` / `quantize` / `ttt_eval` key from params.yaml, shapes shrunk) is
trained for a few steps, its Hessians collected, GPTQ'd and scored with LoRA TTT. The fingerprints
below were recorded on main before the issue-20 toggles existed (torch 2.13.0+cpu, one thread). A new
key that is off by default must reproduce them: an extra random draw, a reordered sum or a
parameter that exists while "off" changes them.

Bit for bit on one machine; compared to 1e-6 relative, because another CPU's SIMD kernels move them
a little (AVX2 instead of AVX-512, `ATEN_CPU_CAPABILITY=avx2`: 1.2e-8 relative), while a real change to
the math moves them far more (one extra random draw, a changed step: > 1e-4). If a
*default* in params.yaml changes on purpose, rerun `python tests/test_toggles_off.py` and paste its output.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from golf.artifact.model.config import ModelConfig
from golf.artifact.model.gpt import GPT
from golf.artifact.runtime import Dist
from golf.eval.config import TttEvalConfig
from golf.params import load_section
from golf.quant.config import QuantizeConfig
from golf.train.config import TrainConfig

PARAMS = Path(__file__).resolve().parents[1] / "params.yaml"
VOCAB, BOS = 48, 1

EXPECTED = {
    "train_loss": 2.97487,
    "weights_abs_sum": 2931.8791105599553,
    "codes_abs_sum": 81417.0,
    "dequant_abs_sum": 2955.457116611302,
    "ttt_bpb": 2.2674574718797347,
}

SHRINK_MODEL = dict(vocab_size=VOCAB, bos_id=BOS, num_layers=4, model_dim=32, num_heads=4, num_kv_heads=2,
                    rope_dims=4, xsa_last_n=4, loop_start=1, loop_end=1, parallel_start_layer=3, gate_window=4)
SHRINK_TRAIN = dict(iterations=8, train_batch_tokens=4 * 32, train_seq_len=32, val_every=0, val_max_tokens=0,
                    device="cpu", compile="off", warmup_steps=0, muon_momentum_warmup_steps=4, swa_every=2)
SHRINK_TTT = dict(seq_len=32, chunk_size=8, batch_docs=4, phased_prefix_docs=4, phased_num_phases=1,
                  max_val_tokens=0, device="cpu", global_chunk_tokens=64)


def stream(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Tokens with a learnable pattern and BOS every ~40 tokens; 1..3 bytes each, BOS 0 bytes."""
    rng = np.random.default_rng(seed)
    tok = ((np.arange(n) * 7 + rng.integers(0, 3, n)) % (VOCAB - 2) + 2).astype(np.uint16)
    tok[rng.random(n) < 0.025] = BOS
    tok[0] = BOS
    vb = np.where(tok == BOS, 0, 1 + tok % 3).astype(np.uint16)
    return tok, vb


def fingerprints() -> dict[str, float]:
    from golf.artifact.dequant import dequantize
    from golf.eval import lora_ttt
    from golf.quant import hessian, qmodel
    from golf.train.loop import seed_everything, train

    torch.set_num_threads(1)
    mcfg = load_section(PARAMS, "model", ModelConfig, SHRINK_MODEL)
    tcfg = load_section(PARAMS, "train", TrainConfig, SHRINK_TRAIN)
    qcfg = load_section(PARAMS, "quantize", QuantizeConfig, {"device": "cpu", "passthrough_numel": 256})
    ecfg = load_section(PARAMS, "ttt_eval", TttEvalConfig, SHRINK_TTT)
    tr, _ = stream(4000, 1)
    va, vb = stream(400, 2)
    seed_everything(tcfg.seed)
    model = GPT(mcfg)
    res = train(model, tcfg, tr, va, vb, torch.device("cpu"), Dist(0, 0, 1), progress=False)
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    batches = hessian.train_batches(tr, 2, 2, 32, 0, torch.device("cpu"))
    H, _ = hessian.collect_hessians(hessian.prepare_eval(model), batches)
    header = {"model": dataclasses.asdict(mcfg)}
    tensors, q_header, _ = qmodel.quantize_state_dict(state, H, qcfg, header, names=model.hessian_sites(),
                                                      device=torch.device("cpu"))
    deq = dequantize(tensors, q_header)
    model.load_state_dict(deq, strict=True)
    score, _ = lora_ttt.evaluate(model, va, vb, ecfg, bos_id=BOS, device="cpu")
    ints = [t for t in tensors.values() if not t.is_floating_point()]
    return {"train_loss": float(res.rows[-1]["train_loss"]),
            "weights_abs_sum": float(sum(v.double().abs().sum() for v in state.values() if v.is_floating_point())),
            "codes_abs_sum": float(sum(t.double().abs().sum() for t in ints)),
            "dequant_abs_sum": float(sum(v.double().abs().sum() for v in deq.values())),
            "ttt_bpb": float(score.bpb)}


@pytest.fixture(scope="module")
def got() -> dict[str, float]:
    threads = torch.get_num_threads()
    try:
        return fingerprints()
    finally:
        torch.set_num_threads(threads)


@pytest.mark.parametrize("key", list(EXPECTED))
def test_defaults_reproduce_todays_numbers(got, key):
    assert math.isfinite(got[key])
    assert got[key] == pytest.approx(EXPECTED[key], rel=1e-6, abs=0.0), (key, got[key])


if __name__ == "__main__":
    for k, v in fingerprints().items():
        print(f'    "{k}": {v!r},')
