"""H = Σ XᵀX per quantized weight, collected with forward hooks in the graph eval runs (docs/techniques.md §3).

X is the input of the weight's module (or the output, for the tied embedding: the final norm's
output), flattened to (tokens, in) in fp32. The sum over batches is divided by the number of
batches (the scale cancels in GPTQ). With depth recurrence the shared layers collect every pass.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np
import torch

from golf.errors import GolfError

FORMAT, VERSION = "golf.hessians", 1


def prepare_eval(model: torch.nn.Module) -> torch.nn.Module:
    """The graph every stage after train runs: eval mode, looping on whenever the model loops."""
    model.eval()
    cfg = getattr(model, "cfg", None)
    if cfg is not None and hasattr(model, "looping"):
        model.looping = getattr(cfg, "num_loops", 0) > 0
    return model


def file_sha256(path: Path) -> str:
    """Fingerprint of a checkpoint: Hessians and quantization must come from the same weights."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()


def gram(x: torch.Tensor) -> torch.Tensor:
    """XᵀX (d, d) in fp32 of a (n, d) module input, as the module's matmul sees X.

    Under CUDA bf16 autocast a Linear multiplies bf16(X) whatever X's dtype, so H is built from
    bf16(X) with fp32 accumulation: one tensor-core matmul, no fp32 copy of X. Elsewhere X is
    used as it is, in fp32.
    """
    bf16 = x.is_cuda and torch.is_autocast_enabled("cuda") and torch.get_autocast_dtype("cuda") == torch.bfloat16
    with torch.autocast(x.device.type, enabled=False):  # the forward's autocast: not for H
        if bf16:
            xb = x.to(torch.bfloat16)
            return torch.mm(xb.T, xb, out_dtype=torch.float32)
        xf = x.float()
        return xf.T @ xf


def collect_hessians(model: torch.nn.Module, batches: Iterable[torch.Tensor],
                     sites: dict[str, tuple[torch.nn.Module, str]] | None = None,
                     progress: bool = False, total: int | None = None) -> tuple[dict[str, torch.Tensor], int]:
    """({weight name: H (in, in) fp32 on CPU}, tokens seen). Hooks are removed even on error.

    The model's training flag is restored afterwards; its weights are never touched.
    """
    from tqdm import tqdm

    sites = model.hessian_sites() if sites is None else sites
    sums: dict[str, torch.Tensor] = {}
    by_module: dict[tuple[int, str], list[str]] = {}
    modules: dict[tuple[int, str], torch.nn.Module] = {}
    for name, (module, where) in sites.items():
        if where not in ("input", "output"):
            raise ValueError(f"hessian site {name}: {where!r} is neither 'input' nor 'output'")
        by_module.setdefault((id(module), where), []).append(name)
        modules[(id(module), where)] = module
    last: list[Any] = [None, None]  # (X, XᵀX): c_q, c_k, c_v see the same tensor, compute it once

    def make_hook(names: list[str], where: str):
        def hook(_module, args, output):
            x = output if where == "output" else args[0]
            if last[0] is not x:
                last[0], last[1] = x, gram(x.detach().reshape(-1, x.shape[-1]))
            for n in names:
                if n in sums:
                    sums[n] += last[1]
                else:
                    sums[n] = last[1].clone()
        return hook

    was_training = model.training
    handles = []
    n_batches = tokens = 0
    try:
        for key, names in by_module.items():
            handles.append(modules[key].register_forward_hook(make_hook(names, key[1])))
        model.eval()
        for idx in tqdm(batches, total=total, desc="hessians", unit="batch", disable=not progress):
            # bf16 autocast on CUDA: the graph eval runs (and the records calibrate in); H is built
            # from X as each module's matmul sees it, summed in fp32 (gram)
            with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16, enabled=idx.is_cuda):
                model(idx)
                last[0] = last[1] = None
                n_batches += 1
                tokens += idx.numel()
    finally:
        for h in handles:
            h.remove()
        last[0] = last[1] = None
        model.train(was_training)
    if n_batches == 0:
        raise GolfError("no calibration batches")
    missing = sorted(set(sites) - set(sums))
    if missing:
        raise GolfError(f"hessian sites never ran in the forward: {', '.join(missing)}")
    return {n: (h / n_batches).cpu() for n, h in sums.items()}, tokens


def train_batches(tokens: np.ndarray, batches: int, batch_seqs: int, seq_len: int, seed: int,
                  device: torch.device) -> Iterator[torch.Tensor]:
    """`batches` batches of `batch_seqs` random windows of the train tokens (seeded, reproducible)."""
    n = len(tokens)
    if n < seq_len + 1:
        raise GolfError(f"train split has {n} tokens, fewer than one calibration window of {seq_len}")
    g = torch.Generator().manual_seed(seed)
    for _ in range(batches):
        starts = torch.randint(0, n - seq_len + 1, (batch_seqs,), generator=g).tolist()
        rows = np.stack([np.asarray(tokens[s:s + seq_len], dtype=np.int64) for s in starts])
        yield torch.from_numpy(rows).to(device)


@torch.no_grad()
def self_generated_batches(model: torch.nn.Module, batches: int, batch_seqs: int, seq_len: int,
                           temperature: float, seed: int, start_token: int,
                           device: torch.device) -> Iterator[torch.Tensor]:
    """The model's own text (ARGPTQ): each sequence starts at `start_token`, then samples at `temperature`.

    Reads neither train nor val data. No KV cache: each new token reruns the prefix (fine at calibration sizes).
    """
    g = torch.Generator(device=device).manual_seed(seed)
    was_training = model.training
    model.eval()
    try:
        for _ in range(batches):
            idx = torch.full((batch_seqs, 1), start_token, dtype=torch.long, device=device)
            while idx.shape[1] < seq_len:
                logits = model(idx)[:, -1, :].float() / temperature
                probs = torch.softmax(logits, dim=-1)
                idx = torch.cat([idx, torch.multinomial(probs, 1, generator=g)], dim=1)
            yield idx
    finally:
        model.train(was_training)


def check_hessians(hessians: dict[str, torch.Tensor], weights: dict[str, torch.Tensor], names: Iterable[str],
                   source: str = "hessians") -> None:
    """Every weight to quantize has an (in, in) H, and nothing else is there; GolfError names the tensor."""
    names = list(names)
    for n in names:
        if n not in weights:
            raise GolfError(f"{source}: {n} is not a tensor of the checkpoint")
        if n not in hessians:
            raise GolfError(f"{source}: no Hessian for {n} (collected from another model?)")
        w, H = weights[n], hessians[n]
        if w.dim() != 2:
            raise GolfError(f"{source}: {n} has shape {tuple(w.shape)}; only 2-D matrices are quantized")
        if tuple(H.shape) != (w.shape[1], w.shape[1]):
            raise GolfError(f"{source}: Hessian {n} has shape {tuple(H.shape)}, the weight {tuple(w.shape)} "
                            f"needs ({w.shape[1]}, {w.shape[1]}) (collected from another model?)")
        if not torch.isfinite(H).all():
            raise GolfError(f"{source}: Hessian {n} has non-finite entries")
    extra = sorted(set(hessians) - set(names))
    if extra:
        raise GolfError(f"{source}: Hessian {extra[0]} matches no weight to quantize "
                        f"({len(extra)} extra; collected from another model?)")
