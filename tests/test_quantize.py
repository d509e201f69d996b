"""QuantizeConfig checks, the golf.qmodel round trip, the per-group plan, and both stage commands."""

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from golf.artifact.dequant import dequantize
from golf.artifact.typed import build_section
from golf.errors import GolfError
from golf.io.tensors import read_header
from golf.params import field_docs
from golf.quant import gptq, qmodel
from golf.quant.config import HessianCalibrateConfig, QuantizeConfig

QUANT = dict(method="gptq", block_size=8, damp=0.01, matrix_bits=6, attn_bits=5, mlp_bits=0, embed_bits=7,
             clip_sigmas=12.85, attn_clip_sigmas=13.0, mlp_clip_sigmas=0.0, embed_clip_sigmas=14.0,
             passthrough_numel=64, lqer_enabled=False, lqer_rank=2, lqer_top_k=2, lqer_asym_group=16,
             lqer_factor_bits=4, device="cpu",
             codebook_k=0, codebook_iters=10, hadamard=False, mlp_sparsity_24=False)
EVAL = dict(seq_len=32, batch_seqs=4, max_tokens=0)  # what the test checkpoint records: no float re-score
CALIB = dict(source="train", batches=2, batch_seqs=2, seq_len=16, seed=3, temperature=0.8, device="cpu")


def qcfg(**over) -> QuantizeConfig:
    return QuantizeConfig(**{**QUANT, **over})


@pytest.mark.parametrize("over, words", [
    ({"matrix_bits": 9}, ["quantize.matrix_bits = 9", "impossible bit plan"]),
    ({"embed_bits": 1}, ["quantize.embed_bits = 1", "impossible bit plan"]),
    ({"attn_bits": 12}, ["quantize.attn_bits = 12", "impossible bit plan"]),
    ({"lqer_enabled": True, "lqer_rank": 0}, ["quantize.lqer_rank"]),
    ({"clip_sigmas": 0.0}, ["quantize.clip_sigmas"]),
])
def test_config_rejects_impossible_plans(over, words):
    with pytest.raises(GolfError) as e:
        build_section({**QUANT, **over}, "quantize", QuantizeConfig)
    for w in words:
        assert w in str(e.value)


def test_config_docs_and_group_plan():
    for cls in (QuantizeConfig, HessianCalibrateConfig):
        names = [f.name for f in dataclasses.fields(cls)]
        assert sorted(field_docs(cls)) == sorted(names)
    with pytest.raises(GolfError, match="hessian_calibrate.batches"):
        build_section({**CALIB, "batches": 0}, "hessian_calibrate", HessianCalibrateConfig)
    c = qcfg()
    assert c.group_plan("attn") == (5, 13.0)
    assert c.group_plan("mlp") == (6, 12.85)  # 0 / 0.0 fall back to the matrix values
    assert c.group_plan("embed") == (7, 14.0)
    assert c.group_plan("matrix") == (6, 12.85)
    assert qmodel.tensor_group("blocks.3.attn.c_q.weight") == "attn"
    assert qmodel.tensor_group("blocks.0.mlp.proj.weight") == "mlp"
    assert qmodel.tensor_group("tok_emb.weight") == "embed"
    assert qmodel.tensor_group("bigram.proj.weight") == "matrix"


def toy_state(seed: int = 0):
    """Names as the GPT's; shapes all different. H from correlated inputs."""
    g = torch.Generator().manual_seed(seed)
    shapes = {"tok_emb.weight": (40, 24), "blocks.0.attn.c_q.weight": (24, 24), "blocks.0.attn.c_k.weight": (12, 24),
              "blocks.0.mlp.fc.weight": (48, 24), "blocks.0.mlp.proj.weight": (24, 48)}
    sd = {n: torch.randn(s, generator=g) * 0.1 for n, s in shapes.items()}
    sd["blocks.0.attn_scale"] = torch.rand(24, generator=g)  # small float: fp16 passthrough
    sd["big_table"] = torch.randn(10, 9, generator=g)  # 90 > passthrough_numel, not quantized: kept
    sd["step"] = torch.tensor([7], dtype=torch.int64)
    H = {}
    for n, s in shapes.items():
        X = torch.randn(200, 3, generator=g) @ torch.randn(3, s[1], generator=g) + 0.2 * torch.randn(200, s[1], generator=g)
        H[n] = X.T @ X
    return sd, H, list(shapes)


def test_round_trip_through_the_file(tmp_path):
    sd, H, names = toy_state()
    cfg = qcfg(lqer_enabled=True)
    tensors, header, rep = qmodel.quantize_state_dict(sd, H, cfg, {"model": {"d": 24}}, names=names)
    assert header["format"] == "golf.qmodel" and header["version"] == 1 and header["model"] == {"d": 24}
    assert header["quantize"]["clip_sigmas"] == 12.85
    plan = header["plan"]
    assert plan["tok_emb.weight"]["bits"] == 7 and plan["blocks.0.attn.c_k.weight"]["bits"] == 5
    assert plan["blocks.0.attn_scale"]["kind"] == "passthrough" and tensors["blocks.0.attn_scale"].dtype == torch.float16
    assert plan["big_table"]["kind"] == "float" and plan["step"]["kind"] == "float"
    assert tensors["blocks.0.mlp.fc.weight.q"].dtype == torch.int8
    assert tensors["blocks.0.mlp.fc.weight.scale"].shape == (48,)
    path = tmp_path / "q.safetensors"
    qmodel.save_qmodel(path, tensors, header)
    t2, h2 = qmodel.load_qmodel(path)
    assert h2 == json.loads(json.dumps(header))
    a, b = dequantize(tensors, header), dequantize(t2, h2)
    assert set(a) == set(sd)
    for n in sd:
        assert torch.equal(a[n], b[n]) and a[n].dtype == sd[n].dtype and a[n].shape == sd[n].shape
    assert torch.equal(a["step"], sd["step"]) and torch.equal(a["big_table"], sd["big_table"])
    assert torch.allclose(a["blocks.0.attn_scale"], sd["blocks.0.attn_scale"], atol=1e-3)
    for n in names:  # the report's error is the error of what dequantize gives back
        rel = (a[n] - sd[n]).norm() / sd[n].norm()
        assert abs(rel.item() - rep["tensors"][n]["rel_err"]) < 1e-4
    with pytest.raises(GolfError, match="golf.qmodel"):
        from golf.io.tensors import save_tensors
        save_tensors(tmp_path / "other.safetensors", {"x": torch.zeros(1)}, {"format": "golf.model", "version": 1})
        qmodel.load_qmodel(tmp_path / "other.safetensors")
    with pytest.raises(GolfError, match="blocks.0.mlp.fc.weight.scale"):
        dequantize({k: v for k, v in tensors.items() if k != "blocks.0.mlp.fc.weight.scale"}, header)


def test_lqer_in_the_plan_reduces_its_targets_error():
    sd, H, names = toy_state(1)
    base_t, base_h, base = qmodel.quantize_state_dict(sd, H, qcfg(), {}, names=names)
    t, header, rep = qmodel.quantize_state_dict(sd, H, qcfg(lqer_enabled=True, lqer_top_k=2), {}, names=names)
    deq = dequantize(base_t, base_h)
    top2 = sorted(names, key=lambda n: -(sd[n] - deq[n]).norm().item())[:2]  # largest ||W - Q s||_F
    corrected = [n for n, p in header["plan"].items() if p.get("lqer")]
    assert sorted(corrected) == sorted(top2)
    fixed = dequantize(t, header)
    for n in corrected:
        assert rep["tensors"][n]["rel_err"] < base["tensors"][n]["rel_err"]
        assert (fixed[n] - sd[n]).norm() < (deq[n] - sd[n]).norm()
        assert t[f"{n}.lqA"].dtype == torch.int8
    for n in set(names) - set(corrected):
        assert torch.equal(fixed[n], deq[n])
    assert rep["summary"]["lqer_bytes"] > 0


def test_gptq_lowers_h_weighted_error_vs_rtn_in_the_plan():
    sd, H, names = toy_state(2)
    _, _, g = qmodel.quantize_state_dict(sd, H, qcfg(), {}, names=names)
    _, _, r = qmodel.quantize_state_dict(sd, H, qcfg(method="rtn"), {}, names=names)
    for n in names:
        assert g["tensors"][n]["h_rel_err"] < r["tensors"][n]["h_rel_err"], n


def test_non_pd_hessian_is_damped_and_reported():
    sd, H, names = toy_state(3)
    H["blocks.0.attn.c_q.weight"] = -H["blocks.0.attn.c_q.weight"]
    _, _, rep = qmodel.quantize_state_dict(sd, H, qcfg(), {}, names=names)
    r = rep["tensors"]["blocks.0.attn.c_q.weight"]
    assert r["damp_tries"] > 1 and r["damp_frac"] > 0.01
    assert rep["summary"]["damping_raised"] == 1


def test_mismatched_hessians_are_refused():
    sd, H, names = toy_state(4)
    with pytest.raises(GolfError, match="blocks.0.mlp.proj.weight"):
        qmodel.quantize_state_dict(sd, {k: v for k, v in H.items() if k != "blocks.0.mlp.proj.weight"}, qcfg(), {},
                                   names=names)
    with pytest.raises(GolfError, match="tok_emb.weight"):
        qmodel.quantize_state_dict(sd, {**H, "tok_emb.weight": torch.eye(40)}, qcfg(), {}, names=names)
    with pytest.raises(GolfError, match="blocks.7.attn.c_v.weight"):
        qmodel.quantize_state_dict(sd, {**H, "blocks.7.attn.c_v.weight": torch.eye(24)}, qcfg(), {}, names=names)


# -- the two stage commands on a tiny checkpoint ------------------------------------------------

def write_tokens(d: Path, vocab: int) -> None:
    from golf.data.shards import shard_name, write_shard

    d.mkdir(parents=True)
    rng = np.random.default_rng(0)
    train = rng.integers(2, vocab, 3000).astype(np.uint16)
    val = rng.integers(2, vocab, 400).astype(np.uint16)
    val[::50] = 1  # BOS
    vb = np.where(val == 1, 0, 1 + (val % 3)).astype(np.uint16)
    write_shard(d / shard_name("train", 0), train)
    write_shard(d / shard_name("val", 0), val)
    write_shard(d / shard_name("val_bytes", 0), vb)
    manifest = {"format": "golf.tokens", "version": 1, "vocab_size": vocab, "bos_id": 1, "tokenizer_sha256": "cd" * 32,
                "splits": {"train": {"docs": 10, "tokens": 3000, "bytes": 6000, "shards": 1},
                           "val": {"docs": 8, "tokens": 400, "bytes": int(vb.sum()), "shards": 1}}}
    (d / "manifest.json").write_text(json.dumps(manifest))


def test_stage_commands(tmp_path, tiny_model_config):
    from typer.testing import CliRunner

    from golf.artifact.model.gpt import GPT
    from golf.data.tokens import TokenData
    from golf.eval.plain import evaluate
    from golf.io.checkpoint import save_model
    from stages.cli import app

    torch.manual_seed(0)
    model = GPT(tiny_model_config)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    model.looping = True
    write_tokens(tmp_path / "tokens", tiny_model_config.vocab_size)
    data = TokenData(tmp_path / "tokens")
    float_bpb = evaluate(model.eval(), data.val, data.val_bytes, 32, 4, "cpu").bpb
    ckpt = tmp_path / "artifacts/train/model.safetensors"
    save_model(ckpt, model, {"train": {}, "val_bpb": float_bpb, "val_loss": 0.0,
                             "eval": {"seq_len": 32, "batch_seqs": 4, "max_tokens": 0}})
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({"hessian_calibrate": CALIB,
                                                          "quantize": {**QUANT, "lqer_enabled": True},
                                                          "eval": EVAL}))
    common = ["--params", str(tmp_path / "params.yaml"), "--checkpoint", str(ckpt), "--tokens", str(tmp_path / "tokens")]
    hess = tmp_path / "artifacts/hessian_calibrate/hessians.safetensors"
    r = CliRunner().invoke(app, ["hessian-calibrate", *common, "--out", str(hess),
                                 "--metrics", str(tmp_path / "metrics/hessian_calibrate.json")])
    assert r.exit_code == 0, r.output
    m = json.loads((tmp_path / "metrics/hessian_calibrate.json").read_text())["hessian_calibrate"]
    assert m["hessians"] == len(model.hessian_sites()) and m["tokens"] == 2 * 2 * 16 and "wall_s" not in m
    t = json.loads((tmp_path / "metrics/timings/hessian_calibrate.json").read_text())["hessian_calibrate"]
    assert t["wall_s"] >= t["collect_s"] >= 0  # timings live beside the metrics, out of DVC's sight
    # the Hessians' own clock, for ttt_eval's verdict: beside the file, so the file itself is deterministic
    assert json.loads((hess.parent / "hessians.clock.json").read_text())["collect_s"] >= 0
    assert "collect_s" not in read_header(hess, "golf.hessians", 1)

    def run_quantize(*extra):
        return CliRunner().invoke(app, ["quantize", *common, "--hessians", str(hess),
                                        "--out", str(tmp_path / "artifacts/quantize/qmodel.safetensors"),
                                        "--report", str(tmp_path / "artifacts/quantize/report.json"),
                                        "--metrics", str(tmp_path / "metrics/quantize.json"), *extra])

    r = run_quantize()
    assert r.exit_code == 0, r.output
    q = json.loads((tmp_path / "metrics/quantize.json").read_text())["quantize"]
    assert q["float_reevaluated"] is False and q["float_val_bpb"] == float_bpb
    assert abs(q["quant_gap_bpb"] - (q["val_bpb"] - float_bpb)) < 1e-12
    assert q["raw_bytes"] > q["code_bytes"] > 0 and q["quantized_tensors"] == m["hessians"]
    rep = json.loads((tmp_path / "artifacts/quantize/report.json").read_text())
    assert set(rep["tensors"]) == set(model.hessian_sites())
    tensors, header = qmodel.load_qmodel(tmp_path / "artifacts/quantize/qmodel.safetensors")
    assert header["model"]["vocab_size"] == tiny_model_config.vocab_size
    assert sum(bool(p.get("lqer")) for p in header["plan"].values()) <= 2

    r = run_quantize("--seq-len", "16")  # another eval than train's: the float model is re-scored
    assert r.exit_code == 0, r.output
    q2 = json.loads((tmp_path / "metrics/quantize.json").read_text())["quantize"]
    assert q2["float_reevaluated"] is True and q2["eval_seq_len"] == 16
    assert abs(q2["float_val_bpb"] - evaluate(model, data.val, data.val_bytes, 16, 4, "cpu").bpb) < 1e-9

    # Hessians of another checkpoint are refused
    with torch.no_grad():
        next(model.parameters()).add_(1.0)
    save_model(ckpt, model, {"train": {}, "val_bpb": float_bpb, "val_loss": 0.0,
                             "eval": {"seq_len": 32, "batch_seqs": 4, "max_tokens": 0}})
    r = run_quantize()
    assert r.exit_code == 1 and "another checkpoint" in r.output


def test_same_shape_matrices_are_swept_together_with_their_own_results():
    """Two same-shape attn matrices share one batched GPTQ sweep; each keeps exactly the codes it
    gets alone, and the mlp matrix (another bit group) is not mixed in."""
    sd, H, names = toy_state(3)
    g = torch.Generator().manual_seed(9)
    sd["blocks.0.attn.proj.weight"] = torch.randn(24, 24, generator=g) * 0.1
    X = torch.randn(100, 24, generator=g)
    H["blocks.0.attn.proj.weight"] = X.T @ X
    names = [*names, "blocks.0.attn.proj.weight"]
    cfg = qcfg()
    tensors, _, _ = qmodel.quantize_state_dict(sd, H, cfg, {}, names=names)
    for n in names:
        bits, k = cfg.group_plan(qmodel.tensor_group(n))
        alone = gptq.gptq_quantize(sd[n], H[n], gptq.row_scales(sd[n], k, bits), bits, cfg.block_size, cfg.damp)
        assert torch.equal(tensors[f"{n}.q"], alone.q), n
