"""Per-document batched LoRA TTT + phased global SGD (docs/techniques.md §7.4, VARLEN -> LQER).

Documents start at BOS; a doc's span runs up to and *including* the next BOS, so its targets are
the tokens (start, end] and the docs' targets tile the stream's targets 1..N-1 exactly. Each doc
is read in chunks of `chunk_size` targets; for chunk ci the model sees up to `seq_len` tokens of
the doc's own prefix ending at the chunk's end, with that doc's LoRA:
  1. score the chunk's targets (full-vocabulary softmax), adding NLL and sidecar bytes;
  2. if the doc has more chunks, one AdamW step on the mean NLL of the chunk (summed over docs).
LoRA (rank r, output scaled alpha/r) sits on the adapter sites the model calls whose kind is in
ttt_eval.lora_sites (default all: q, k, v, proj of each virtual slot, an MLP-parallel d->d adapter
and the LM head; docs/contracts.md); the hook returns None (no delta) for the others. Each doc
of a batch has its own A and B (per-row tensors; AdamW is elementwise, so docs never mix).
Between batches B and the optimizer state are zeroed and A stays warm (TTT_WARM_START_A).

Order: batches are `batch_docs` consecutive documents in *stream order* (the records sort the
whole val set longest-first). Stream order keeps the strict C1 property our leakage test checks:
the warm A and the phased SGD below only ever carry information from documents that lie entirely
before every document they influence, so changing a token never changes an earlier token's score.

Phased global SGD: once the first `prefix_docs·(i+1)/num_phases` docs are fully scored, all base
parameters take SGD passes over those docs' tokens (chunks of global_chunk_tokens, cosine lr over
chunks, last chunk skipped as in §7.3), then the LoRA and its optimizer are rebuilt and scoring
resumes with the updated base. Its training sequences straddle documents; under
model.doc_masked_attention the model keeps attention inside each of them (the records use
cu_seqlens), and the per-document chunk windows above hold one document each either way.
"""

from __future__ import annotations

import contextlib
import copy
import math
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from golf.artifact.runtime import autocast, progress_bar, rank_world
from golf.artifact.scoring import EvalResult, Totals, as_numpy, check_inputs, eval_mode
from golf.errors import GolfError
from golf.eval.config import TttEvalConfig
from golf.eval.ttt import cosine_lr, train_span


def find_docs(tokens: np.ndarray, bos_id: int) -> np.ndarray:
    """(D, 2) int64 rows (start, end), end inclusive: [BOS ... next BOS]; targets are (start, end].

    Tokens before the first BOS (a stream that does not open with BOS) form a document too; a
    final BOS with nothing after it has no targets and is no document.
    """
    n = len(tokens)
    starts = np.flatnonzero(tokens == bos_id).astype(np.int64)
    if len(starts) == 0 or starts[0] != 0:
        starts = np.concatenate([[0], starts])
    ends = np.concatenate([starts[1:], [n - 1]])
    keep = ends > starts
    return np.stack([starts[keep], ends[keep]], axis=1)


def site_kind(site: str) -> str:
    """"3.attn.c_q" -> "attn.c_q", "head" -> "head": the site without its virtual-layer slot."""
    return site.split(".", 1)[1] if site[0].isdigit() else site


def chosen_sites(dims: dict[str, tuple[int, int]], kinds: tuple[str, ...]) -> dict[str, tuple[int, int]]:
    """The sites of `dims` whose kind is in `kinds` (ttt_eval.lora_sites), in the model's call order."""
    out = {site: d for site, d in dims.items() if site_kind(site) in kinds}
    if not out:
        raise GolfError(f"ttt_eval.lora_sites = {list(kinds)}: the model calls none of them "
                        f"(it calls {sorted({site_kind(s) for s in dims})})")
    return out


def adapter_dims(model: nn.Module) -> dict[str, tuple[int, int]]:
    """{site: (in_features, out_features)} for every adapter site the model calls.

    Inputs come from a probe forward; outputs from `model.adapter_dims()` when the model has it,
    else: mlp = d -> d, head = d -> vocab (the logits), attention sites = the out_features of the
    module whose name ends with the site's suffix (`attn.c_q` ...).
    """
    if hasattr(model, "adapter_dims"):
        return dict(model.adapter_dims())
    seen: dict[str, int] = {}

    def probe(site: str, x: torch.Tensor) -> None:
        seen[site] = x.shape[-1]

    dev = next(model.parameters()).device
    with torch.no_grad(), eval_mode(model):
        vocab = model(torch.zeros(1, 2, dtype=torch.long, device=dev), probe).shape[-1]
    if not seen:
        raise GolfError("LoRA TTT: the model calls no adapter sites (adapter(site, x) hook)")
    modules = dict(model.named_modules())
    dims = {}
    for site, d_in in seen.items():
        kind = site_kind(site)
        if kind == "head":
            d_out = vocab
        elif kind == "mlp":
            d_out = d_in
        else:
            found = [m for name, m in modules.items() if name == kind or name.endswith("." + kind)]
            if not found or not hasattr(found[0], "weight"):
                raise GolfError(f"LoRA TTT: cannot tell the output width of adapter site {site!r}")
            d_out = found[0].weight.shape[0]
        dims[site] = (d_in, d_out)
    return dims


class BatchedLoRA(nn.Module):
    """Per-row (per-document) LoRA on each site: delta = (x Aᵀ) Bᵀ · alpha/rank."""

    def __init__(self, dims: dict[str, tuple[int, int]], rows: int, rank: int, alpha: float,
                 dtype: torch.dtype, device: torch.device, gen: torch.Generator):
        super().__init__()
        self.sites = {s: i for i, s in enumerate(dims)}
        self.A = nn.ParameterList(nn.Parameter(torch.empty(rows, rank, i, dtype=dtype, device=device))
                                  for i, _ in dims.values())
        self.B = nn.ParameterList(nn.Parameter(torch.zeros(rows, o, rank, dtype=dtype, device=device))
                                  for _, o in dims.values())
        self.scale = alpha / rank
        self.init_a(gen)

    @torch.no_grad()
    def init_a(self, gen: torch.Generator) -> None:
        """A ~ U(±1/sqrt(in)) (fresh), B = 0."""
        for a in self.A:
            bound = 1.0 / math.sqrt(a.shape[-1])
            a.copy_((torch.rand(a.shape, generator=gen, dtype=torch.float64) * 2 - 1) * bound)
        self.zero_b()

    @torch.no_grad()
    def zero_b(self) -> None:
        for b in self.B:
            b.zero_()

    def adapter(self, rows: torch.Tensor) -> Callable[[str, torch.Tensor], torch.Tensor | None]:
        """The adapter hook for a batch whose row j belongs to LoRA slot rows[j]."""

        def hook(site: str, x: torch.Tensor) -> torch.Tensor | None:
            i = self.sites.get(site)
            if i is None:
                return None
            a, b = self.A[i][rows], self.B[i][rows]
            return (x @ a.transpose(1, 2).to(x.dtype)) @ b.transpose(1, 2).to(x.dtype) * self.scale

        return hook


def varying_shape_kernels(device: torch.device) -> contextlib.AbstractContextManager:
    """SDPA kernels for chunk windows that grow at every step: cuDNN left out, since it builds an
    execution plan for each new shape (363 ms a LoRA step with it, 258 ms with flash:
    bench/profile_ttt.py); math stays for what flash cannot run (the fp32 probe forward)."""
    if device.type != "cuda":
        return contextlib.nullcontext()
    from torch.nn.attention import SDPBackend, sdpa_kernel

    return sdpa_kernel([SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.MATH])


def _to(a: np.ndarray, device: torch.device) -> torch.Tensor:
    """A host array on `device` without making the CPU wait for the GPU (pinned memory, async copy)."""
    t = torch.from_numpy(a)
    return t.pin_memory().to(device, non_blocking=True) if device.type == "cuda" else t.to(device)


def _run_batch(model: nn.Module, lora: BatchedLoRA, tokens: np.ndarray, docs: np.ndarray, totals: Totals,
               seq_len: int, chunk_size: int, make_opt: Callable[[], torch.optim.Optimizer],
               device: torch.device) -> int:
    """Score-then-step every chunk of a batch of docs; returns the optimizer steps taken.

    Everything that depends only on the doc layout (windows, score masks, which docs go on) is
    built on the host, and the scores are read back once at the end of the batch: no step makes
    the CPU wait for the GPU, so it queues chunk ci+1 while the GPU still runs chunk ci.
    """
    lora.zero_b()  # A stays warm
    opt = make_opt()  # fresh state
    n_t = docs[:, 1] - docs[:, 0]
    n_chunks = -(-n_t // chunk_size)
    steps = 0
    scored: list[tuple[np.ndarray, torch.Tensor]] = []
    for ci in range(int(n_chunks.max())):
        active = np.flatnonzero(n_chunks > ci)
        ts = docs[active, 0] + ci * chunk_size  # first scored input position (absolute)
        te = np.minimum(docs[active, 0] + (ci + 1) * chunk_size, docs[active, 1])  # exclusive
        ws = np.maximum(docs[active, 0], te - seq_len)
        width = int((te - ws).max())
        x = np.zeros((len(active), width + 1), dtype=np.int64)
        for j, (s, e) in enumerate(zip(ws, te)):
            x[j, : e - s + 1] = tokens[s: e + 1]
        offs = np.arange(width)[None]
        mask = (offs >= (ts - ws)[:, None]) & (offs < (te - ws)[:, None])  # this chunk's targets
        flat = np.flatnonzero(mask)  # row-major, as nll[mask] would order them
        xy = _to(x, device)
        with autocast(device):
            nll = model.nll(xy[:, :-1], xy[:, 1:], lora.adapter(_to(active, device)))
        # 1. score: kept on the GPU (computed before any step below), read back after the batch
        scored.append(((ws[:, None] + 1 + offs).reshape(-1)[flat], nll.detach().reshape(-1)[_to(flat, device)],
                       np.broadcast_to(offs, mask.shape).reshape(-1)[flat]))  # window offsets: golf/eval/diagnostics.py
        more = n_chunks[active] > ci + 1
        if more.any():  # 2. then one step on what was just scored: sum over going-on docs of their mean NLL
            weight = mask * (more / mask.sum(1))[:, None]
            opt.zero_grad(set_to_none=True)
            (nll.float() * _to(weight.astype(np.float32), device)).sum().backward()
            opt.step()
            steps += 1
    for pos, nll_sel, window_pos in scored:
        totals.add(torch.from_numpy(pos), nll_sel, window_pos)
    return steps


def phase_boundaries(prefix_docs: int, num_phases: int, n_docs: int) -> list[int]:
    """Doc counts after which the base model takes global SGD: prefix·(i+1)/phases, below n_docs."""
    if prefix_docs <= 0 or num_phases <= 0:
        return []
    b = [prefix_docs * (i + 1) // num_phases for i in range(num_phases)]
    return sorted({x for x in b if 0 < x < n_docs})


def evaluate(model: nn.Module, val_tokens: Any, val_bytes: Any, cfg: TttEvalConfig, *, bos_id: int,
             device: torch.device | str, totals: Totals | None = None, num_buckets: int = 0,
             progress: bool = False) -> tuple[EvalResult, dict[str, Any]]:
    """Doc-LoRA TTT (+ phased global SGD) on a private copy of `model` with the lora_* / phased_* /
    global_* settings of `cfg`; returns (score, details)."""
    seq_len, chunk_size, batch_docs = cfg.seq_len, cfg.chunk_size, cfg.batch_docs
    tokens = as_numpy(val_tokens, "val tokens")
    vb = as_numpy(val_bytes, "val byte sidecar")
    check_inputs(tokens, vb, 1)  # docs are read in chunks: any stream with a target will do
    if not 1 <= chunk_size <= seq_len:
        raise GolfError(f"ttt_eval.chunk_size = {chunk_size}: must be in [1, seq_len = {seq_len}]")
    device = torch.device(device)
    totals = totals if totals is not None else Totals(vb, len(tokens), num_buckets)
    model = copy.deepcopy(model)
    base = list(model.parameters())
    for p in base:
        p.requires_grad_(False)
    docs = find_docs(tokens, bos_id)
    gen = torch.Generator().manual_seed(cfg.seed)
    dims = chosen_sites(adapter_dims(model), cfg.lora_sites)
    lora = BatchedLoRA(dims, batch_docs, cfg.lora_rank, cfg.lora_alpha, base[0].dtype, device, gen)

    def make_opt() -> torch.optim.Optimizer:
        return torch.optim.AdamW(lora.parameters(), lr=cfg.lora_lr, betas=(cfg.beta1, cfg.beta2), eps=cfg.eps,
                                 weight_decay=cfg.weight_decay)

    batches = [docs[i: i + batch_docs] for i in range(0, len(docs), batch_docs)]
    bounds = phase_boundaries(cfg.phased_prefix_docs, cfg.phased_num_phases, len(docs))
    rank, world = rank_world()
    lora_steps = global_steps = 0
    with eval_mode(model):
        for r0 in progress_bar(range(0, len(batches), world), "lora ttt batches", progress):  # ranks take one batch each per round, in lockstep
            if r0 + rank < len(batches):
                with varying_shape_kernels(device):
                    lora_steps += _run_batch(model, lora, tokens, batches[r0 + rank], totals, seq_len, chunk_size,
                                             make_opt, device)
            done = min((r0 + world) * batch_docs, len(docs))
            while bounds and done >= bounds[0]:  # every doc of the prefix is fully scored
                end = int(docs[bounds.pop(0) - 1, 1])  # input positions [0, end): targets up to that BOS
                global_steps += _global_sgd(model, base, tokens, end, cfg, device)
                lora.init_a(gen)  # rebuilt: fresh A, zero B (and a fresh optimizer per batch)
    return totals.result(), {"docs": len(docs), "batches": len(batches), "lora_steps": lora_steps,
                             "global_steps": global_steps,
                             "lora_params": sum(p.numel() for p in lora.parameters())}


def _global_sgd(model: nn.Module, base: list[nn.Parameter], tokens: np.ndarray, end: int, cfg: TttEvalConfig,
                device: torch.device) -> int:
    """SGD on all base parameters over input positions [0, end), chunked, cosine lr, last chunk skipped
    (the global_* settings of `cfg`)."""
    lr, chunk_tokens = cfg.global_lr, cfg.global_chunk_tokens
    for p in base:
        p.requires_grad_(True)
    opt = torch.optim.SGD(base, lr=lr, momentum=cfg.global_momentum)
    n_chunks = -(-end // chunk_tokens)
    steps = 0
    try:
        for c in range(n_chunks - 1):
            for g in opt.param_groups:
                g["lr"] = cosine_lr(lr, c, n_chunks)
            for _ in range(cfg.global_epochs):
                steps += train_span(model, base, opt, tokens, c * chunk_tokens, min((c + 1) * chunk_tokens, end),
                                    cfg.seq_len, cfg.batch_seqs, cfg.grad_clip, device)
    finally:
        for p in base:
            p.requires_grad_(False)
            p.grad = None
    return steps
