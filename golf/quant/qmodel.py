"""The golf.qmodel v1 file: integer codes + fp16 row scales per quantized matrix, the rest as it was.

Codebook tensors (kind "codebook", quantize.codebook_k > 0): `<name>.cq` (uint8 indices) and
`<name>.cb` (fp16 centroids, (K,)) instead of `.q` / `.scale` (golf.quant.codebook). A plan entry's
optional "hadamard" (block size b > 1) says the codes hold W R (golf.quant.hadamard): dequantize
undoes the rotation after adding any LQER correction (which is fit in the rotated domain too).

Tensors: `<name>.q` (int8 codes, (out, in)), `<name>.scale` (fp16, (out,)), optional LQER factors
`<name>.lqA/.lqAs/.lqB/.lqBs` (golf.quant.lqer), `<name>` for a float tensor kept as fp16
("passthrough") or as it was ("float", too big for passthrough and not quantized, or not float).
Header: {"format": "golf.qmodel", "version": 1, "model": {...}, "plan": {name: {...}}, "quantize": {...}}
with each plan entry {"kind", "group", "bits", "clip_sigmas", "lqer", "dtype", "shape"}, plus
"sparsity": "2:4" on matrices quantize held 2:4 sparse (quantize.mlp_sparsity_24; dequantize ignores it).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Iterable

import torch

from golf.artifact.dequant import (
    FORMAT,
    LQER_KEYS,
    QUANT_KINDS,
    VERSION,
    codebook_values,
    dequantize_rows,
    unrotate,
)
from golf.errors import GolfError
from golf.params import section_dict
from golf.quant import codebook, gptq, hadamard, lqer, sparsity
from golf.quant.config import QuantizeConfig
from golf.quant.hessian import check_hessians


def tensor_group(name: str) -> str:
    """The bit/clip group of a quantized weight: "embed", "attn", "mlp" or "matrix"."""
    if name in ("tok_emb.weight", "lm_head.weight"):
        return "embed"
    if ".attn." in f".{name}":
        return "attn"
    if ".mlp." in f".{name}":
        return "mlp"
    return "matrix"


def sparse_24(name: str, cfg: QuantizeConfig) -> bool:
    """Whether quantize holds a 2:4 mask on this matrix (quantize.mlp_sparsity_24: MLP matrices only)."""
    return cfg.mlp_sparsity_24 and tensor_group(name) == "mlp"


def keep_mask(name: str, W: torch.Tensor, H: torch.Tensor | None, cfg: QuantizeConfig) -> torch.Tensor | None:
    """The 2:4 mask held on W when `sparse_24`, chosen on the float weights before GPTQ; else None."""
    return sparsity.mlp_keep(W, H, cfg.damp) if sparse_24(name, cfg) else None


def code_entropy_bytes(codes: torch.Tensor) -> float:
    """numel x the empirical entropy of the codes, in bytes: what an ideal order-0 coder would need.

    Unlike the bit width, it moves with the code distribution, so it shows (before compress runs)
    how a change such as the Hadamard rotation shifts the compressed size.
    """
    counts = torch.bincount(codes.reshape(-1).to(torch.int64) & 0xFF, minlength=256).double()
    p = counts[counts > 0] / codes.numel()
    return float(-(p * p.log2()).sum()) * codes.numel() / 8


def _quantize_one(name: str, w: torch.Tensor, H: torch.Tensor | None,
                  cfg: QuantizeConfig, device: torch.device | str = "cpu", done: gptq.Quantized | None = None,
                  ) -> tuple[dict, dict, torch.Tensor, gptq.Quantized | codebook.Codebook]:
    """(plan entry, report entry, error E = W' − dequant(codes), codes) for one matrix.

    W' is W R with the Hadamard rotation on (H then becomes RᵀHR), else W; E lives in the same domain.
    done: this matrix's GPTQ result when `_gptq_batched` already computed it.
    """
    group = tensor_group(name)
    bits, k = cfg.group_plan(group)
    W = w.detach().to(device).float()
    H = None if H is None else H.to(device).float()
    hb = hadamard.block_size(W.shape[1]) if cfg.hadamard else 1
    if hb > 1:
        W = hadamard.rotate(W, hb)
        H = None if H is None else hadamard.rotate_hessian(H, hb)
    if cfg.method == "gptq" and H is None:
        raise GolfError(f"quantize: no Hessian for {name} (method gptq needs one per matrix)")
    if cfg.codebook_k:
        bits, k = codebook.bits(cfg.codebook_k), 0.0
        res = codebook.quantize(W, H, cfg.codebook_k, cfg.codebook_iters, cfg.method, cfg.block_size, cfg.damp)
        E = W - codebook_values(res.codes, res.centroids.to(W.device))
        res = codebook.Codebook(codes=res.codes.cpu(), centroids=res.centroids.cpu(), damp_frac=res.damp_frac,
                                damp_tries=res.damp_tries, fallback=res.fallback)
        clipped, codes = 0.0, res.codes
    else:
        scale = gptq.row_scales(W, k, bits)  # of the unpruned row: the clip keys keep their meaning
        keep = None if done is not None else keep_mask(name, W, H, cfg)
        if done is not None:
            res = done
        elif cfg.method == "gptq":
            res = gptq.gptq_quantize(W, H, scale, bits, cfg.block_size, cfg.damp, keep)
        else:
            res = gptq.rtn_quantize(W if keep is None else W * keep, scale, bits)
        E = W - dequantize_rows(res.q, res.scale)
        clipped = float((res.q.abs() == gptq.clip_range(bits)).float().mean())
        res = gptq.Quantized(q=res.q.cpu(), scale=res.scale.cpu(), damp_frac=res.damp_frac,
                             damp_tries=res.damp_tries, fallback=res.fallback)
        codes = res.q
    w_norm = W.norm().item() or 1.0
    rep: dict[str, Any] = {
        "group": group, "bits": bits, "clip_sigmas": k, "shape": list(W.shape),
        "rel_err": E.norm().item() / w_norm,
        "clipped_frac": clipped,
        "damp_frac": res.damp_frac, "damp_tries": res.damp_tries, "fallback": res.fallback,
        "code_bytes": math.ceil(codes.numel() * bits / 8), "code_entropy_bytes": code_entropy_bytes(codes),
        "hadamard": hb if hb > 1 else 0,
    }
    if sparse_24(name, cfg):
        rep["sparsity_24"] = True
        rep["zero_frac"] = float((codes == 0).float().mean())
    if H is not None:  # both in the rotated domain: tr(E' H' E'ᵀ) = tr(E H Eᵀ)
        wh = gptq.h_weighted_error(W, H)
        rep["h_rel_err"] = gptq.h_weighted_error(E, H) / wh if wh > 0 else 0.0
    plan = {"kind": "codebook" if cfg.codebook_k else cfg.method, "group": group, "bits": bits,
            "clip_sigmas": k, "lqer": "", "dtype": str(w.dtype).removeprefix("torch."), "shape": list(w.shape)}
    if cfg.codebook_k:
        plan["k"] = cfg.codebook_k
    if hb > 1:
        plan["hadamard"] = hb
    if sparse_24(name, cfg):
        plan["sparsity"] = "2:4"
    return plan, rep, E.cpu(), res


def quantize_state_dict(state_dict: dict[str, torch.Tensor], hessians: dict[str, torch.Tensor],
                        cfg: QuantizeConfig, model_header: dict[str, Any], names: Iterable[str] | None = None,
                        progress: bool = False, device: torch.device | str = "cpu",
                        ) -> tuple[dict[str, torch.Tensor], dict[str, Any], dict[str, Any]]:
    """(tensors, header, report). `names`: the matrices to quantize (default: the Hessians' names).

    The arithmetic runs on `device` (GPTQ's column sweep is much faster on a GPU); results are on the CPU.

    Hessians must match those names and shapes exactly (GolfError naming the tensor otherwise);
    with method rtn they may be empty (then no H-weighted errors are reported).
    """
    from tqdm import tqdm

    names = list(hessians) if names is None else list(names)
    if cfg.method == "gptq" or hessians:
        check_hessians(hessians, state_dict, names)
    else:
        check_hessians({n: torch.zeros(state_dict[n].shape[1], state_dict[n].shape[1]) for n in names
                        if n in state_dict and state_dict[n].dim() == 2}, state_dict, names, source="quantize")
    todo = set(names)
    tensors: dict[str, torch.Tensor] = {}
    plan: dict[str, dict] = {}
    report: dict[str, dict] = {}
    errors: dict[str, torch.Tensor] = {}
    ordered = [n for n in state_dict if n in todo]
    done = _gptq_batched(state_dict, hessians, ordered, cfg, device, progress)
    for name in tqdm(ordered, desc="quantize", unit="tensor", disable=not progress):
        p, rep, E, res = _quantize_one(name, state_dict[name], hessians.get(name), cfg, device, done.get(name))
        if isinstance(res, codebook.Codebook):
            tensors[f"{name}.cq"], tensors[f"{name}.cb"] = res.codes, res.centroids
        else:
            tensors[f"{name}.q"], tensors[f"{name}.scale"] = res.q, res.scale
        plan[name], report[name], errors[name] = p, rep, E
    for name, t in state_dict.items():
        if name in todo:
            continue
        keep_fp16 = t.is_floating_point() and t.numel() <= cfg.passthrough_numel
        tensors[name] = t.detach().cpu().to(torch.float16) if keep_fp16 else t.detach().cpu()
        plan[name] = {"kind": "passthrough" if keep_fp16 else "float", "dtype": str(t.dtype).removeprefix("torch."),
                      "shape": list(t.shape)}
    if cfg.lqer_enabled:
        _apply_lqer(state_dict, errors, hessians, cfg, tensors, plan, report)
    header = {"format": FORMAT, "version": VERSION, "model": model_header.get("model", {}), "plan": plan,
              "quantize": section_dict(cfg)}
    return tensors, header, {"tensors": report, "summary": summarize(tensors, plan, report, cfg)}


def _gptq_batched(state_dict: dict[str, torch.Tensor], hessians: dict[str, torch.Tensor], names: list[str],
                  cfg: QuantizeConfig, device: torch.device | str, progress: bool) -> dict[str, gptq.Quantized]:
    """Plain GPTQ of `names`, same-shape matrices of one bit group in one batched sweep (the record's
    67 matrices in 7 sweeps). Empty for RTN, codebooks and the Hadamard rotation (one at a time)."""
    from tqdm import tqdm

    if cfg.method != "gptq" or cfg.codebook_k or cfg.hadamard:
        return {}
    groups: dict[tuple, list[str]] = {}
    for n in names:
        groups.setdefault((tuple(state_dict[n].shape), *cfg.group_plan(tensor_group(n))), []).append(n)
    done: dict[str, gptq.Quantized] = {}
    for (_, bits, k), members in tqdm(groups.items(), desc="gptq", unit="sweep", disable=not progress):
        W = torch.stack([state_dict[n].detach().to(device).float() for n in members])
        H = torch.stack([hessians[n].to(device).float() for n in members])
        scales = torch.stack([gptq.row_scales(w, k, bits) for w in W])
        masks = [keep_mask(n, w, h, cfg) for n, w, h in zip(members, W, H)]
        keep = None if all(m is None for m in masks) else torch.stack(
            [torch.ones_like(w, dtype=torch.bool) if m is None else m for m, w in zip(masks, W)])
        done.update(zip(members, gptq.gptq_quantize_many(W, H, scales, bits, cfg.block_size, cfg.damp, keep)))
    return done


def _apply_lqer(state_dict: dict[str, torch.Tensor], errors: dict[str, torch.Tensor],
                hessians: dict[str, torch.Tensor], cfg: QuantizeConfig,
                tensors: dict[str, torch.Tensor], plan: dict, report: dict) -> None:
    """Correct the top-K tensors by ‖E‖_F; a correction that does not lower ‖E‖_F is dropped (reported).

    2:4 tensors are left out: their pruning error would top the ranking, a rank-r term cannot undo
    50% pruning, and the correction would fill the pruned weights back in."""
    dense = [n for n in errors if not plan[n].get("sparsity")]
    ranked = sorted(dense, key=lambda n: errors[n].norm().item(), reverse=True)[: cfg.lqer_top_k]
    for name in ranked:
        E = errors[name]
        kind, t, corr = lqer.correct(E, cfg.lqer_rank, cfg.lqer_asym_group, cfg.lqer_factor_bits)
        before, after = E.norm().item(), (E - corr).norm().item()
        rep = report[name]
        rep["lqer_err_before"], rep["lqer_err_after"] = before, after
        if after >= before:
            rep["lqer"] = "dropped (no gain)"
            continue
        for k in LQER_KEYS:
            tensors[f"{name}.{k}"] = t[k]
        plan[name]["lqer"] = rep["lqer"] = kind
        rep["lqer_bytes"] = math.ceil(lqer.packed_bits(kind, t, cfg.lqer_factor_bits) / 8)
        W = state_dict[name].detach().float().cpu()
        rep["rel_err"] = after / (W.norm().item() or 1.0)
        if name in hessians:
            wh = gptq.h_weighted_error(W, hessians[name])
            resid = unrotate(E - corr, plan[name].get("hadamard", 1))  # back to W's domain
            rep["h_rel_err"] = gptq.h_weighted_error(resid, hessians[name]) / wh if wh > 0 else 0.0


def summarize(tensors: dict[str, torch.Tensor], plan: dict, report: dict, cfg: QuantizeConfig) -> dict[str, Any]:
    """Flat numbers for metrics: bytes at the planned bit widths and per-group error stats."""
    code_bits = scale_bytes = other_bytes = lqer_bytes = 0
    for name, p in plan.items():
        if p["kind"] in QUANT_KINDS:
            cb = p["kind"] == "codebook"
            code_bits += tensors[f"{name}.cq" if cb else f"{name}.q"].numel() * p["bits"]
            scale_bytes += 2 * tensors[f"{name}.cb" if cb else f"{name}.scale"].numel()
            lqer_bytes += report[name].get("lqer_bytes", 0) if p.get("lqer") else 0
        else:
            t = tensors[name]
            other_bytes += t.numel() * t.element_size()
    out: dict[str, Any] = {"code_bytes": math.ceil(code_bits / 8), "scale_bytes": scale_bytes,
                           "lqer_bytes": lqer_bytes, "other_bytes": other_bytes}
    out["raw_bytes"] = out["code_bytes"] + scale_bytes + lqer_bytes + other_bytes
    out["code_entropy_bytes"] = round(sum(r.get("code_entropy_bytes", 0.0) for r in report.values()))
    out["quantized_tensors"] = sum(p["kind"] in QUANT_KINDS for p in plan.values())
    out["codebook_tensors"] = sum(p["kind"] == "codebook" for p in plan.values())
    out["hadamard_tensors"] = sum(bool(p.get("hadamard")) for p in plan.values())
    out["passthrough_tensors"] = sum(p["kind"] == "passthrough" for p in plan.values())
    out["float_tensors"] = sum(p["kind"] == "float" for p in plan.values())
    out["damping_raised"] = sum(r["damp_tries"] > 1 for r in report.values())
    out["rtn_fallbacks"] = sum(r["fallback"] == "rtn" for r in report.values())
    sparse = [n for n, r in report.items() if r.get("sparsity_24")]
    if sparse:  # quantize.mlp_sparsity_24: the share of zero codes in the 2:4 matrices
        out["sparsity_24_tensors"] = len(sparse)
        out["sparsity_24_zero_frac"] = (sum(tensors[f"{n}.q"].eq(0).sum().item() for n in sparse)
                                        / sum(tensors[f"{n}.q"].numel() for n in sparse))
    for group in ("attn", "mlp", "embed", "matrix"):
        reps = [r for r in report.values() if r["group"] == group]
        if not reps:
            continue
        out[f"{group}_rel_err_mean"] = sum(r["rel_err"] for r in reps) / len(reps)
        out[f"{group}_rel_err_max"] = max(r["rel_err"] for r in reps)
        if all("h_rel_err" in r for r in reps):
            out[f"{group}_h_rel_err_mean"] = sum(r["h_rel_err"] for r in reps) / len(reps)
    return out


def save_qmodel(path: Path, tensors: dict[str, torch.Tensor], header: dict[str, Any]) -> None:
    from golf.io.tensors import save_tensors

    save_tensors(path, tensors, header)


def load_qmodel(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """(tensors, header) of a golf.qmodel v1 file (refuses any other format or version)."""
    from golf.io.tensors import load_tensors

    return load_tensors(path, FORMAT, VERSION)
