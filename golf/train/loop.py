"""The training loop: Muon + AdamW, grad accumulation, wall-clock budget, EMA, periodic val.

One code path for 1 and N processes (golf/train/ddp.py). The clock (`train_s`) counts only the
optimizer steps: the compile warm-up before it (whose weights and optimizer state are restored)
and every val eval are outside it, as in the records (docs/techniques.md §2.4). In wall-clock mode the
ranks all-reduce (MAX) their clocks every step, so the schedule and the stop decision are identical
on all ranks and the slowest rank's clock decides; a non-finite loss on any rank stops them all.

The objective of one step (each micro-batch's terms divided by grad_accum_steps, so the gradient is
that of the whole global batch):

    mean NLL + train.mtp_weight * mean t+2 NLL     (model.mtp_heads > 0; GPT.train_loss)
             + train.moe_aux_weight * aux_loss()   (model.moe_num_experts > 0; of each micro-batch)
             + train.cat_weight * CAT penalty      (every train.cat_every-th step, once; golf/train/cat.py)

with, from train.qat_start_frac on, the block matrices fake-quantized during the micro-batches
(late QAT, straight-through; golf/train/qat.py). The CAT penalty sees the float weights.

`train_loss` in the rows is the mean NLL alone, comparable across these toggles. The schedule
(lr multiplier, Muon momentum, looping switch, SWA start) depends only on the step fraction
(or the train clock), never on train_batch_tokens or grad_accum_steps: small-batch training
with the same iterations has the same schedule, and grad accumulation only changes how the
same global batch is split (tests/test_train.py checks both).

With `train.fused_kernels` on (golf/train/fused.py), the model's head loss and MLP activation (or the
whole MLP: `train.fused_mlp = gemm`) are
golf/kernels' Triton kernels; evals inside the loop keep the eager head.
"""

from __future__ import annotations

import copy
import functools
import math
import resource
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import torch

from golf.artifact.runtime import Dist, all_reduce_sum
from golf.errors import GolfError
from golf.optim.ema import EMA, SWA, load_average
from golf.optim.muon import Muon
from golf.optim.schedule import lr_multiplier, muon_momentum, train_frac
from golf.train import ahead, ddp, gc_pause
from golf.train import fused as fused_kernels
from golf.train.cat import cat_matrices, cat_penalty
from golf.train.config import TrainConfig
from golf.train.data import CU_MULTIPLE, WindowLoader
from golf.train.inductor import cap_mix_order_reads
from golf.train.qat import fake_quantized


@dataclass
class TrainResult:
    steps: int
    train_tokens: int
    train_s: float
    tokens_per_s: float
    val_loss: float
    val_bpb: float
    val_bpb_raw: float
    looping: bool
    compiled: bool
    fused_kernels: bool
    fused_mlp: str
    """The MLP path the fused kernels took (train.fused_mlp, auto resolved); "" without them."""
    flops_per_token: float
    mfu: float | None
    peak_mem_bytes: int
    first_step_s: float
    """Seconds from `started` (the stage's start) to the end of the first real optimizer step:
    imports, data, compile and warm-up included (with train.compile_ahead, the looped graph's excluded: below)."""
    rows: list[dict[str, Any]] = field(default_factory=list)
    start_s: dict[str, float] = field(default_factory=dict)
    """Where the cold start goes: seconds from `started` to the warm-up ("setup": imports, data, model),
    then each warm-up graph's compile and steps ("looped", then "plain"; "all" without a looping switch).
    With train.compile_ahead the "plain" warm-up alone comes before the first step, and "looped" at the switch,
    off the train clock, its graph from golf/train/ahead.py's helper: "ahead_wait", the part of "looped" spent
    waiting for the helper, and "ahead_slack", how long its graph had been ready by then (`finish`); with
    train.compile_ahead_kernels, "ahead_kernels_wait": the part of "plain" spent waiting for the helper's CuTe
    DSL kernels (`take_kernels`)."""
    compile_ahead: bool = False
    """The looped graph came compiled from golf/train/ahead.py's helper (train.compile_ahead)."""
    compile_ahead_kernels: bool = False
    """The CuTe DSL kernels came compiled from that helper (train.compile_ahead_kernels)."""


def seed_everything(seed: int) -> None:
    """Seed the init (torch, numpy); the data order has its own generator (golf/train/data.py)."""
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)


def can_loop(model: torch.nn.Module) -> bool:
    return hasattr(model, "looping") and getattr(getattr(model, "cfg", None), "num_loops", 0) > 0


def model_flops_per_token(model: torch.nn.Module, seq_len: int) -> float:
    """Training FLOPs per token (forward + backward), the usual 6N + attention estimate:

        6 * N_matmul_eff + 12 * L_virtual * seq_len * dim / 2

    N_matmul_eff: the weights that multiply each token: every matrix of the blocks, counted once per
    virtual layer that runs it (matrix params x L_virtual / L_physical when depth recurrence is on),
    plus the tied embedding once as the output head (the input lookup is free). Attention scores
    QKᵀ and the weighted sum AV cost 2 * 2 * seq_len * dim FLOPs per token per layer forward, x3 for
    forward + backward = 12 * seq_len * dim, halved because causal attention skips half the pairs.
    """
    groups = model.param_groups()
    n_matrix = sum(p.numel() for p in groups["matrix"])
    n_head = sum(p.numel() for p in groups["embed"])
    cfg = getattr(model, "cfg", None)
    dim = getattr(cfg, "model_dim", 0)
    physical = getattr(cfg, "num_layers", 1) or 1
    looping = bool(getattr(model, "looping", False))
    virtual = len(cfg.layer_sequence(looping)) if hasattr(cfg, "layer_sequence") else physical
    return 6.0 * (n_matrix * virtual / physical + n_head) + 12.0 * virtual * seq_len * dim / 2.0


def build_optimizers(model: torch.nn.Module, cfg: TrainConfig, device: torch.device) -> tuple[Muon, torch.optim.AdamW]:
    groups = model.param_groups()
    seen = [p for g in ("matrix", "embed", "scalar") for p in groups.get(g, [])]
    trainable = [p for p in model.parameters() if p.requires_grad]
    if len({id(p) for p in seen}) != len(seen) or {id(p) for p in seen} != {id(p) for p in trainable}:
        raise GolfError("model.param_groups() must list every trainable parameter exactly once")
    muon = Muon(groups["matrix"], lr=cfg.matrix_lr, momentum=cfg.muon_momentum, weight_decay=cfg.muon_wd,
                backend_steps=cfg.muon_backend_steps, coeffs=cfg.muon_coeffs, row_normalize=cfg.muon_row_normalize)
    adam_groups = [{"params": groups["embed"], "lr": cfg.tied_embed_lr, "weight_decay": cfg.embed_wd},
                   {"params": groups["scalar"], "lr": cfg.scalar_lr, "weight_decay": cfg.adam_wd}]
    adam = torch.optim.AdamW([g for g in adam_groups if g["params"]], betas=(cfg.beta1, cfg.beta2), eps=cfg.adam_eps,
                             fused=device.type == "cuda")
    for opt in (muon, adam):
        for g in opt.param_groups:
            g["base_lr"] = g["lr"]
    return muon, adam


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def peak_memory_bytes(device: torch.device, cuda_graphs: bool = False) -> int:
    """Peak CUDA memory allocated, or this process's max RSS on CPU. cuda_graphs: the CUDA memory reserved
    instead, since a replayed graph allocates nothing (its tensors live in a pool recorded in the warm-up, which
    the allocated counter no longer holds: 1.9 GiB against 35.1 on the H200, BENCHMARKS.md, seventeenth
    session)."""
    if device.type == "cuda":
        return int((torch.cuda.max_memory_reserved if cuda_graphs else torch.cuda.max_memory_allocated)(device))
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(rss if sys.platform == "darwin" else rss * 1024)


def micro_objective(model: torch.nn.Module, forward: Callable, x: torch.Tensor, y: torch.Tensor,
                    moe_weight: float, mtp_weight: float,
                    cu_seqlens: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean NLL, the weighted auxiliary terms) of one micro-batch; its loss is their sum.

    `forward` (possibly compiled) returns the NLL, or (NLL, t+2 NLL or None) from one trunk pass:
    GPT.train_loss (means), or another model's `nll` / `nll_and_mtp` (per token). The MoE balance
    loss is that of the forward just run. cu_seqlens: the micro-batch's documents for a varlen
    attention kernel (golf/train/data.py).
    """
    aux = torch.zeros((), device=x.device)
    out = forward(x, y) if cu_seqlens is None else forward(x, y, cu_seqlens=cu_seqlens)
    nll, mtp = out if isinstance(out, tuple) else (out, None)
    if mtp is not None and mtp_weight > 0:
        aux = aux + mtp_weight * mtp.mean()
    if moe_weight > 0:
        aux = aux + moe_weight * model.aux_loss()
    return nll.mean(), aux


def inductor_options(cfg: TrainConfig) -> dict[str, Any]:
    """inductor's config for the whole-model graph: cudagraph trees under train.cuda_graphs (what torch.compile's
    mode="reduce-overhead" sets), horizontal kernels under train.combo_kernels. golf/train/ahead.py's helper
    compiles with the same, so the caches' keys agree."""
    options = {"triton.cudagraphs": cfg.cuda_graphs, "combo_kernels": cfg.combo_kernels}
    return {key: True for key, on in options.items() if on}


def backward_into_grads(loss: torch.Tensor, params: list[torch.nn.Parameter], first: bool,
                        owned: bool = False) -> None:
    """loss.backward(), adding into the gradients the earlier micro-batches left (unless `first`) with one
    multi-tensor add: autograd would launch one add kernel per parameter and micro-batch (968 a step,
    2.5 ms plus 1.3 ms of idle GPU before them, in the h100 preset's step: BENCHMARKS.md, sixth session).
    The same fp32 additions, so the same bits. owned: the backward's outputs are a CUDA graph's, which its
    next replay overwrites, so the first micro-batch's gradients are copied out (one multi-tensor op)."""
    if first and not owned:
        loss.backward()
        return
    held = [p.grad for p in params]
    for p in params:
        p.grad = None
    loss.backward()
    if first:
        live = [p for p in params if p.grad is not None]
        # copies, as one multi-tensor kernel (times 1.0 is exact)
        for p, g in zip(live, torch._foreach_mul([p.grad for p in live], 1.0)):
            p.grad = g
        return
    pairs = [(h, p.grad) for h, p in zip(held, params) if h is not None and p.grad is not None]
    if pairs:
        torch._foreach_add_([h for h, _ in pairs], [g for _, g in pairs])
    for h, p in zip(held, params):
        if h is not None:  # else p.grad is this micro-batch's own (or None)
            p.grad = h


class Stepper:
    """One optimizer step over the global batch: micro-batches, the study terms, all-reduce, clip, update."""

    def __init__(self, model: torch.nn.Module, cfg: TrainConfig, loader: WindowLoader, device: torch.device,
                 world: int) -> None:
        self.model, self.cfg, self.loader, self.device, self.world = model, cfg, loader, device, world
        self.muon, self.adam = build_optimizers(model, cfg, device)
        self.params = [p for p in model.parameters() if p.requires_grad]
        mcfg = getattr(model, "cfg", None)
        # study toggles (issue 9): each term only where the model has the part it trains
        self.moe_w = cfg.moe_aux_weight if getattr(mcfg, "moe_num_experts", 0) > 0 else 0.0
        self.mtp_w = cfg.mtp_weight if getattr(mcfg, "mtp_heads", 0) > 0 else 0.0
        self.cat_ws = cat_matrices(model) if cfg.cat_every > 0 else []
        self.qat_ws = cat_matrices(model) if cfg.qat_start_frac > 0 else []
        self.qat_on = False  # late QAT (golf/train/qat.py): set by the loop from qat_start_frac
        if hasattr(model, "train_loss"):  # golf's GPT: the fused head when installed (golf/train/fused.py)
            self.forward = functools.partial(model.train_loss, mtp=self.mtp_w > 0)
        else:
            self.forward = model.nll_and_mtp if self.mtp_w > 0 else model.nll
        self.autocast = device.type == "cuda" and cfg.autocast_bf16
        self.compiled = False
        self.looped_forward = None  # compile_scope hybrid: the looped graph's forward (compiled blocks)
        self.ema: EMA | None = None  # the weight averages, made when the timed steps start
        self.swa: SWA | None = None
        self.fused, self.fused_mlp = False, ""  # the fused kernels make_stepper installed, and the MLP path
        self.ahead = False  # the looped graph came compiled from golf/train/ahead.py's helper
        self.helper: Any = None  # that helper, until the looped graph's warm-up at the switch takes its graph
        self.start_s: dict[str, float] = {}  # the warm-ups' seconds (TrainResult.start_s)

    def compile(self, backend: Any = None) -> None:
        """torch.compile the step's loss at cfg.compile_scope (backend None: torch.compile's default,
        inductor; golf/train/ahead.py's helper passes its own, which compiles with inductor and stops)."""
        import torch._dynamo as dynamo
        import torch._functorch.config as functorch_config

        dynamo.config.cache_size_limit = 64
        cap_mix_order_reads()  # torch 2.11 over-fuses the norm backwards (golf/train/inductor.py)
        # the backward compiles with the forward, not at the first backward: the compile_ahead helper
        # never runs one, and this flag is in the caches' key, so both processes set it (golf/train/ahead.py)
        functorch_config.force_non_lazy_backward_lowering = True
        ahead.same_cache_keys()
        self.compiled = True
        scope = self.cfg.compile_scope if hasattr(self.model, "compile_blocks") else "model"
        if scope != "model":
            self.model.compile_blocks(dynamic=False)
        if scope == "hybrid":
            # the whole-model graph inlines the compiled blocks when it traces the plain phase, and the
            # looped phase calls them from eager glue: no second whole-model compile (BENCHMARKS.md, issue 17)
            self.looped_forward = self.forward
        if scope != "blocks":
            how = {"options": inductor_options(self.cfg)} if backend is None else {"backend": backend}
            self.forward = torch.compile(self.forward, dynamic=False, **how)

    def __call__(self, step: int, lr_mul: float, momentum: float) -> float:
        """The mean LM NLL of the step (NaN when any term is not finite)."""
        cfg, model = self.cfg, self.model
        for opt in (self.muon, self.adam):
            for g in opt.param_groups:
                g["lr"] = g["base_lr"] * lr_mul
        for g in self.muon.param_groups:
            g["momentum"] = momentum
        total = torch.zeros((), device=self.device)  # the LM NLL only: train_loss stays comparable across toggles
        extra = torch.zeros((), device=self.device)  # the auxiliary terms, so a NaN in them stops training too
        forward = self.looped_forward if self.looped_forward is not None and model.looping else self.forward
        with fake_quantized(self.qat_ws if self.qat_on else [], cfg.qat_bits, cfg.qat_clip_sigmas):
            for micro, (x, y, cu) in enumerate(self.loader.batch(step)):
                if cu is not None and self.compiled:
                    # its length (documents + 1) changes every batch: one graph for all, no recompile
                    torch._dynamo.mark_dynamic(cu, 0)
                with torch.autocast("cuda", dtype=torch.bfloat16, enabled=self.autocast):
                    loss, aux = micro_objective(model, forward, x, y, self.moe_w, self.mtp_w, cu)
                backward_into_grads((loss + aux) / cfg.grad_accum_steps, self.params, first=micro == 0,
                                    owned=cfg.cuda_graphs)
                total += loss.detach()
                extra += aux.detach()
        # host work for the next step while the GPU still runs this step's backward (golf/train/data.py):
        # later, behind the short optimizer kernels, the GPU would wait for it (BENCHMARKS.md, "idle")
        self.loader.prepare(step + 1)
        if self.cat_ws and (step + 1) % cfg.cat_every == 0:
            # once per step, not per micro-batch: the penalty does not depend on the data (and is the
            # same on every rank, so the gradient average below leaves its share unchanged)
            pen = cfg.cat_weight * cat_penalty(self.cat_ws, cfg.cat_bits, cfg.cat_clip_sigmas, cfg.cat_form)
            pen.backward()
            extra += pen.detach()
        ddp.all_reduce_grads(self.params, self.world)
        if cfg.grad_clip_norm > 0:
            torch.nn.utils.clip_grad_norm_(self.params, cfg.grad_clip_norm)
        self.muon.step()
        self.adam.step()
        model.zero_grad(set_to_none=True)
        lm_sum, extra_sum = torch.stack([total, extra]).tolist()  # one device sync
        return lm_sum / cfg.grad_accum_steps if math.isfinite(extra_sum) else float("nan")

    def warm_up(self, phases: list[bool | None]) -> None:
        """Compile warm-up: run the steps of each phase's graph (looping on, off, or None: the model's as it is),
        then restore the weights, optimizer state and looping, so the warm-up trains nothing. Seconds per
        graph into self.start_s ("looped", "plain", "all"). The looped phase's graph is golf/train/ahead.py's
        helper's, when there is one: it is waited for first (the wait is in that phase's seconds, and in
        "ahead_wait"; "ahead_slack" is the other way round)."""
        model, cfg = self.model, self.cfg
        saved_model = {k: v.detach().clone() for k, v in model.state_dict().items()}
        saved_opts = [copy.deepcopy(o.state_dict()) for o in (self.muon, self.adam)]
        looping = getattr(model, "looping", None)
        with gc_pause.paused(self.compiled and cfg.compile_without_gc):
            for phase in phases:
                t0 = time.perf_counter()
                if phase and self.helper is not None:
                    helper, self.helper = self.helper, None
                    self.ahead, self.start_s["ahead_wait"], self.start_s["ahead_slack"] = ahead.finish(helper)
                if phase is not None:
                    model.looping = phase
                for s in range(cfg.warmup_steps):
                    self(s, 1.0, cfg.muon_momentum_warmup_start)
                _sync(self.device)
                self.start_s["all" if phase is None else "looped" if phase else "plain"] = time.perf_counter() - t0
        model.load_state_dict(saved_model)
        for o, st in zip((self.muon, self.adam), saved_opts):
            o.load_state_dict(st)
        model.zero_grad(set_to_none=True)
        if looping is not None:
            model.looping = looping
        _sync(self.device)
        if cfg.cuda_graphs and self.loader.rank == 0:  # the warm-up compiled (and recorded) them
            _say_graph_skips()


def _cuda_precision(device: torch.device) -> None:
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        torch.set_float32_matmul_precision("high")


def _progress(cfg: TrainConfig, on: bool) -> Any:
    if not on:
        return None
    from tqdm import tqdm

    return tqdm(total=cfg.iterations, desc="train", unit="step", file=sys.stderr, dynamic_ncols=True)


def _show(bar: Any, cfg: TrainConfig, step: int, loss: float, elapsed: float) -> None:
    if bar is None:
        return
    left = cfg.max_wallclock_s - cfg.gptq_reserve_s - elapsed if cfg.max_wallclock_s > 0 else \
        elapsed / step * (cfg.iterations - step)
    bar.update(1)
    bar.set_postfix(loss=f"{loss:.4f}", tok_s=f"{step * cfg.train_batch_tokens / elapsed:,.0f}",
                    left=f"{max(left, 0):.0f}s", refresh=False)


def _shared_step_result(loss: float, dt: float, elapsed: float, step: int, lr_mul: float, device: torch.device,
                        world: int) -> tuple[float, float]:
    """(mean loss over ranks, the shared clock); any rank's NaN stops every rank."""
    bad = 0.0 if math.isfinite(loss) else 1.0
    loss_sum, bad_sum = all_reduce_sum(torch.tensor([loss if not bad else 0.0, bad], dtype=torch.float64)).tolist()
    if bad_sum > 0:
        raise GolfError(f"train: loss is {loss} at step {step + 1} (lr multiplier {lr_mul:.3g}); "
                        "stopped, no checkpoint written. Lower the learning rates or check the data")
    # MAX over ranks: one shared clock, so the schedule and the stop are the same on every rank.
    return loss_sum / world, ddp.all_reduce_max(elapsed + dt, device, world)


def _say_graph_skips() -> None:
    """train.cuda_graphs: whether inductor kept its CUDA graphs (it runs a graph without one, and counts it,
    when the graph mutates an input or holds an op it cannot capture)."""
    from torch._dynamo.utils import counters

    skips = counters["inductor"]["cudagraph_skips"]
    print(f"train: cuda_graphs: {skips} graph(s) run without CUDA graphs" +
          (" (TORCH_LOGS=cudagraphs says why)" if skips else ""), file=sys.stderr)


def train(model: torch.nn.Module, cfg: TrainConfig, train_tokens: np.ndarray, val_tokens: np.ndarray,
          val_bytes: np.ndarray, device: torch.device, dctx: Dist, progress: bool = True,
          evaluate: Callable | None = None, started: float | None = None,
          on_step: Callable[[int], None] | None = None, helper: Any = None) -> TrainResult:
    """Train `model` in place; on return it holds the averaged (EMA/SWA) weights that were evaluated.

    started: time.perf_counter() at the stage's start (default: now), for `first_step_s`.
    on_step: called with the step number after each real step (a profiler's `step`, in bench/).
    helper: golf/train/ahead.py's compile_ahead helper, started (and stopped) by the caller where
    ahead.wanted says so, as soon as the model is initialised: the earlier it starts, the more slack it has.
    """
    started = time.perf_counter() if started is None else started
    if evaluate is None:
        from golf.eval.plain import evaluate
    world = dctx.world_size
    use_compile = cfg.compiles_on(device.type)
    if cfg.cuda_graphs and not (use_compile and device.type == "cuda"):
        raise GolfError(f"train.cuda_graphs = true needs CUDA and compile, but the device is {device.type} and "
                        f"train.compile = {cfg.compile}")
    stepper = make_stepper(model, cfg, train_tokens, device, dctx, dctx.is_main)
    fused, fused_mlp = stepper.fused, stepper.fused_mlp
    if cfg.val_max_tokens:
        val_tokens, val_bytes = val_tokens[:cfg.val_max_tokens + 1], val_bytes[:cfg.val_max_tokens + 1]

    def run_eval() -> Any:
        was = model.training
        model.eval()
        # eager: compiling the eval shapes would cost more than the few evals it would speed up
        with torch.no_grad(), torch.compiler.set_stance("force_eager"):
            r = evaluate(model, val_tokens, val_bytes, cfg.train_seq_len, cfg.val_batch_seqs, device)
        model.train(was)
        return r

    looping_later = can_loop(model) and cfg.enable_looping_at > 0
    if can_loop(model):
        model.looping = cfg.enable_looping_at == 0
    kernels_ahead = helper is not None and cfg.compile_ahead_kernels
    if use_compile:
        stepper.compile(ahead.InductorThenKernels(inductor_options(cfg), helper) if kernels_ahead else None)
    stepper.start_s["setup"] = time.perf_counter() - started
    if cfg.warmup_steps > 0:
        # with the helper compiling the looped graph, only the plain one before the first step; the looped
        # one's warm-up comes at the switch (_run_steps)
        stepper.helper = helper if looping_later else None
        stepper.warm_up([False] if stepper.helper is not None else [True, False] if looping_later else [None])
    kernels_from_helper = False
    if kernels_ahead:  # set by the backend at the first graph's compile (golf/train/ahead.py take_kernels)
        kernels_from_helper, stepper.start_s["ahead_kernels_wait"] = getattr(helper, "kernels_taken", (False, 0.0))
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    rows, step, elapsed, first_step_at = _run_steps(stepper, cfg, looping_later, run_eval, dctx, progress, on_step)
    raw = run_eval()
    _load_average(model, stepper)
    final = run_eval()
    if rows:
        rows[-1]["val_bpb"] = round(final.bpb, 6)
    tps = step * cfg.train_batch_tokens / elapsed if elapsed > 0 else 0.0
    fpt = model_flops_per_token(model, cfg.train_seq_len)
    mfu = fpt * tps / (cfg.peak_flops * world) if device.type == "cuda" and cfg.peak_flops > 0 else None
    if fused:  # the model leaves training as it came: eager, runnable anywhere
        model.use_fused_kernels(None, None)
    if hasattr(model, "autocast_residual"):
        model.autocast_residual = False
    return TrainResult(steps=step, train_tokens=step * cfg.train_batch_tokens, train_s=elapsed, tokens_per_s=tps,
                       val_loss=float(final.loss), val_bpb=float(final.bpb), val_bpb_raw=float(raw.bpb),
                       looping=bool(getattr(model, "looping", False)), compiled=use_compile, fused_kernels=fused,
                       fused_mlp=fused_mlp if fused else "", compile_ahead=stepper.ahead,
                       compile_ahead_kernels=kernels_from_helper,
                       flops_per_token=fpt, mfu=mfu, peak_mem_bytes=peak_memory_bytes(device, cfg.cuda_graphs),
                       first_step_s=(first_step_at or started) - started, rows=rows, start_s=stepper.start_s)


def make_stepper(model: torch.nn.Module, cfg: TrainConfig, train_tokens: np.ndarray, device: torch.device,
                 dctx: Dist, announce: bool = True) -> Stepper:
    """The model on `device` with its fused kernels (said on stderr when `announce`) and the Stepper over
    train_tokens as rank dctx.rank; training and golf/train/ahead.py's helper build theirs here, so both
    trace the same graph."""
    _cuda_precision(device)
    model.to(device).train()
    fused = fused_kernels.resolve(cfg.fused_kernels, device, cfg.autocast_bf16, announce)
    fused_mlp = fused_kernels.resolve_mlp(cfg.fused_mlp, device, announce) if fused else ""
    # K / V repeated only for FA4: its backward is what gains (golf/kernels/fa4.py); SDPA's dense kernel would lose
    kv_repeat = cfg.fused_kv_repeat and getattr(model, "attention_backend", "") == "fa4"
    fused = fused and fused_kernels.install(model, fused_mlp, cfg.fused_qk, cfg.fused_xsa_gate, kv_repeat)
    if hasattr(model, "autocast_residual"):  # golf's GPT; it only acts under autocast, so evals stay fp32
        model.autocast_residual = cfg.bf16_residual
    # documents as cu_seqlens, built on the host, when a varlen kernel masks them (attention.py)
    doc_bos = model.cfg.bos_id if getattr(model, "doc_varlen", False) else None
    loader = WindowLoader(train_tokens, cfg.train_seq_len, cfg.train_batch_tokens // cfg.train_seq_len,
                          cfg.grad_accum_steps, dctx.rank, dctx.world_size, cfg.seed, device, bos_id=doc_bos,
                          cu_multiple=CU_MULTIPLE if cfg.cuda_graphs else 1)
    stepper = Stepper(model, cfg, loader, device, dctx.world_size)
    stepper.fused, stepper.fused_mlp = fused, fused_mlp
    return stepper


def _run_steps(stepper: Stepper, cfg: TrainConfig, looping_later: bool, run_eval: Callable, dctx: Dist,
               progress: bool, on_step: Callable[[int], None] | None) -> tuple[list[dict], int, float, float | None]:
    """The timed steps: schedule, step, weight averages, val every val_every; (rows, steps, train clock,
    when the first step ended)."""
    model, device, world = stepper.model, stepper.device, dctx.world_size
    stepper.ema, stepper.swa = make_averages(model, cfg)
    wallclock = cfg.max_wallclock_s > 0
    step, elapsed, frac, first_step_at = 0, 0.0, 0.0, None
    rows: list[dict[str, Any]] = []
    bar = _progress(cfg, progress and dctx.is_main)
    try:
        while step < cfg.iterations and not (wallclock and frac >= 1.0):
            if looping_later and not model.looping and frac >= cfg.enable_looping_at:
                if stepper.helper is not None:  # its looped graph, warmed up now: off the clock, as at the start
                    stepper.warm_up([True])
                    if dctx.is_main:
                        print(f"train: looping on from step {step + 1}; its graph's warm-up took "
                              f"{stepper.start_s['looped']:.1f} s off the clock, {stepper.start_s['ahead_wait']:.1f} s "
                              "of it waiting for the compile_ahead helper", file=sys.stderr)
                model.looping = True
            lr_mul = lr_multiplier(frac, cfg.warmdown_frac, cfg.min_lr)
            if stepper.qat_ws and not stepper.qat_on and frac >= cfg.qat_start_frac:
                stepper.qat_on = True
                if dctx.is_main:
                    print(f"train: late QAT on from step {step + 1} (training fraction {frac:.3f})", file=sys.stderr)
            mom = muon_momentum(step, cfg.muon_momentum_warmup_start, cfg.muon_momentum,
                                cfg.muon_momentum_warmup_steps, cfg.muon_momentum_cycle_steps,
                                cfg.muon_momentum_cycle_min)
            # no sync before t0: the previous step's weight averages may still run, and count in this step
            t0 = time.perf_counter()
            loss = stepper(step, lr_mul, mom)
            _sync(device)
            dt = time.perf_counter() - t0
            loss, elapsed = _shared_step_result(loss, dt, elapsed, step, lr_mul, device, world)
            step += 1
            first_step_at = first_step_at or time.perf_counter()
            frac = train_frac(step, elapsed, cfg.iterations, cfg.max_wallclock_s, cfg.gptq_reserve_s)
            update_averages(model, cfg, stepper.ema, stepper.swa, step, frac, lr_mul)
            row = {"step": step, "train_loss": round(loss, 6), "val_bpb": "", "lr_mul": round(lr_mul, 6),
                   "tokens_per_s": round(cfg.train_batch_tokens / dt, 1), "elapsed_s": round(elapsed, 3)}
            last = step >= cfg.iterations or (wallclock and frac >= 1.0)
            if cfg.val_every and step % cfg.val_every == 0 and not last:
                row["val_bpb"] = round(run_eval().bpb, 6)  # outside the clock: dt was taken above
            rows.append(row)
            if on_step is not None:
                on_step(step)
            _show(bar, cfg, step, loss, elapsed)
    finally:
        if bar is not None:
            bar.close()
    return rows, step, elapsed, first_step_at


def make_averages(model: torch.nn.Module, cfg: TrainConfig) -> tuple[EMA | None, SWA | None]:
    """The weight averages of a run, started from the model's current weights."""
    ema = EMA(model, cfg.ema_decay, warmup=cfg.ema_warmup) if cfg.ema_decay > 0 else None
    swa = SWA(cfg.swa_every, cfg.swa_start_frac, cfg.swa_max_lr_mul) if cfg.swa_enabled else None
    return ema, swa


def update_averages(model: torch.nn.Module, cfg: TrainConfig, ema: EMA | None, swa: SWA | None, step: int,
                    frac: float, lr_mul: float) -> None:
    """After optimizer step `step` (1-based), run at lr multiplier `lr_mul`, training fraction now `frac`:
    update the EMA, then take an SWA snapshot when due: of the raw weights (swa_mode replace) or of the
    EMA just updated (swa_mode swa_of_ema)."""
    if ema is not None:
        ema.update(model)
    if swa is not None and swa.due(step, frac, lr_mul):
        if cfg.swa_mode == "swa_of_ema":
            swa.add_state(ema.state_dict())
        else:
            swa.add(model)


def _load_average(model: torch.nn.Module, stepper: Stepper) -> None:
    """The weights that are evaluated and saved: SWA's average when it took any (of raw or of EMA
    snapshots, train.swa_mode), else EMA's, else the raw weights."""
    if stepper.swa is not None and stepper.swa.count:
        load_average(model, stepper.swa.average())
    elif stepper.ema is not None:
        stepper.ema.copy_to(model)
