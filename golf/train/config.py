"""TrainConfig: the `train` section of params.yaml (keys = the records' env vars, lower-cased)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True, kw_only=True)
class TrainConfig:
    iterations: int
    """Maximum optimizer steps; in step mode (max_wallclock_s = 0) the schedule's length."""
    max_wallclock_s: float
    """Seconds of training (val evals and compile warm-up excluded); 0 = step mode (schedule by step)."""
    gptq_reserve_s: float
    """Seconds kept back from max_wallclock_s for later work (the schedule ends at max - reserve)."""
    warmdown_frac: float
    """Fraction of training (by step or time) over which lr falls linearly to min_lr; 0 = none."""
    min_lr: float
    """Floor of the lr multiplier during warm-down (0.1 = 10% of each base lr)."""
    warmup_steps: int
    """Compile warm-up steps run before the clock starts; their weights/optimizer state are thrown away."""
    train_batch_tokens: int
    """Tokens per optimizer step over all ranks and micro-batches."""
    train_seq_len: int
    """Training sequence length in tokens (each sample is seq_len + 1 tokens: inputs and targets)."""
    grad_accum_steps: int
    """Micro-batches per optimizer step on each rank."""
    val_every: int
    """Evaluate val loss/BPB every this many steps (clock paused); 0 = only at the end."""
    val_batch_seqs: int
    """Sequences per val forward batch (per rank)."""
    val_max_tokens: int
    """Val tokens evaluated (a prefix of the val split); 0 = all."""
    matrix_lr: float
    """Muon lr for the 2-D block matrices."""
    muon_momentum: float
    """Muon momentum after its warm-up."""
    muon_momentum_warmup_start: float
    """Muon momentum at step 0 (linear to muon_momentum over muon_momentum_warmup_steps)."""
    muon_momentum_warmup_steps: int
    """Steps of the Muon momentum warm-up; 0 = none."""
    muon_momentum_cycle_steps: int
    """Period in steps of a triangle wave of the Muon momentum after its warm-up, from muon_momentum down to
    muon_momentum_cycle_min and back (golf/optim/schedule.py); 0 = off (constant muon_momentum)."""
    muon_momentum_cycle_min: float
    """Lowest Muon momentum of the cycle (its top is muon_momentum); unused when muon_momentum_cycle_steps = 0."""
    muon_backend_steps: int
    """Newton–Schulz iterations per Muon update."""
    muon_coeffs: Literal["quintic", "polar_express"]
    """Newton–Schulz coefficients: the classic quintic or Polar Express (one tuple per iteration)."""
    muon_row_normalize: bool
    """MuonEq-R: normalize each row of the momentum update before Newton–Schulz."""
    muon_wd: float
    """Muon decoupled weight decay (multiplied by the scheduled lr)."""
    tied_embed_lr: float
    """AdamW lr for the (tied) token embedding."""
    embed_wd: float
    """AdamW weight decay for the embedding."""
    scalar_lr: float
    """AdamW lr for scalars, vectors and control tensors."""
    adam_wd: float
    """AdamW weight decay for the scalar group."""
    beta1: float
    """AdamW beta1."""
    beta2: float
    """AdamW beta2."""
    adam_eps: float
    """AdamW epsilon."""
    grad_clip_norm: float
    """Global gradient-norm clip (L2 over all params); 0 = off."""
    ema_decay: float
    """Per-step EMA decay of the weights (golf/optim/ema.py); 0 = no EMA (raw weights)."""
    ema_warmup: bool
    """EMA warm-up: decay_t = min(ema_decay, (1 + t) / (10 + t)) at update t; false = ema_decay from the first update."""
    swa_enabled: bool
    """Average snapshots (SWA) late in training; the final weights are then SWA's (see swa_mode)."""
    swa_every: int
    """Steps between SWA snapshots (a snapshot after step s when s % swa_every == 0)."""
    swa_start_frac: float
    """Training fraction from which SWA snapshots are taken."""
    swa_max_lr_mul: float
    """Snapshot only while the step's lr multiplier is below this ("tight SWA": 0.2); 0 = no lr condition."""
    swa_mode: Literal["replace", "swa_of_ema"]
    """What SWA averages: replace = the raw weights, and that average replaces the EMA; swa_of_ema = the EMA's
    weights at each snapshot, so the final weights are the uniform mean of those EMA snapshots (needs ema_decay > 0)."""
    enable_looping_at: float
    """Training fraction at which depth recurrence switches on (model.num_loops > 0); 0 = from the start."""
    seed: int
    """Seed of the init and of the training data order."""
    device: Literal["auto", "cpu", "cuda"]
    """Where to train; auto = cuda when available."""
    compile: Literal["auto", "on", "off"]
    """torch.compile the model; auto = on for CUDA, off for CPU."""
    compile_scope: Literal["model", "blocks", "hybrid"]
    """What one compiled graph holds: the whole loss ("model"), or one block and the loss head
    ("blocks": each distinct block compiles once, the looped graph reuses them; faster start), or
    "hybrid": the plain graph whole, the looped one from the compiled blocks (one whole-model compile)."""
    compile_ahead: bool
    """At compile_scope model with a looping switch: a helper process compiles the looped graph while training
    compiles the plain one and trains; where looping switches on, training takes it from inductor's on-disk caches
    and warms it up off the train clock (golf/train/ahead.py; the helper never runs the graph, so it holds no
    activations). Shortens the start to the first step."""
    compile_ahead_kernels: bool
    """With compile_ahead: the helper first compiles FA4's and quack's CuTe DSL kernels into their disk caches
    (FA4's turned on), and training takes them there instead of compiling them at the plain graph's first run
    (golf/train/ahead.py)."""
    compile_without_gc: bool
    """With compile on: Python's cyclic garbage collector paused during the warm-up's compiles (and in the
    compile_ahead helper), then run once, its survivors frozen (golf/train/gc_pause.py). Shortens the start."""
    attention_backend: Literal["auto", "fa3", "fa4", "fa2", "sdpa", "cudnn"]
    """Attention kernel; auto = the fastest usable (fa4 > fa3 > fa2 > sdpa; with model.doc_masked_attention
    fa4 > sdpa, the ones that mask documents); fa4 = golf/kernels/fa4.py's ops; cudnn = SDPA's cuDNN kernel."""
    autocast_bf16: bool
    """bf16 autocast for the forward on CUDA (ignored on CPU)."""
    bf16_residual: bool
    """Under autocast_bf16: keep the residual stream (embedding output, block outputs, skips, lanes) in bf16, as
    the record script does, instead of fp32; halves the memory traffic of the elementwise work between the
    matmuls. Training only (eval and the artifact keep fp32); ignored without autocast."""
    fused_kernels: Literal["auto", "on", "off"]
    """Fused Triton kernels for training (golf/kernels: softcapped CE head, LeakyReLU² MLP activation);
    auto = on with CUDA, Triton and autocast_bf16, else the eager path (said once on stderr). Training only."""
    fused_mlp: Literal["auto", "pair", "gemm", "quack"]
    """How the fused kernels run the LeakyReLU² MLP: pair = cuBLAS matmuls around a fused activation kernel
    (golf/kernels/leaky_relu2.py); gemm = the up-projection's Triton GEMM with the activation (and in the
    backward its derivative) in its epilogue (golf/kernels/mlp_gemm.py); quack = the same with quack's
    CuTe DSL GEMMs (golf/kernels/quack_gemm.py; the `gpu` extra, Hopper or Blackwell); auto = quack on a
    Hopper GPU where it imports, else pair (the train metrics' fused_mlp says which). Only with
    fused_kernels on."""
    fused_qk: bool
    """With fused_kernels on: attention's q and k RMSNorm, partial RoPE and q gain as one Triton pass each
    (golf/kernels/qk_rope.py) instead of inductor's kernels (on the H200 1.5% faster steps, 1.7 GiB less
    memory: BENCHMARKS.md, thirteenth session). Training only."""
    fused_xsa_gate: bool
    """With fused_kernels on: attention's XSA and sparse output gate as one Triton pass each way
    (golf/kernels/xsa_gate.py) instead of inductor's kernels (on the H200 1.6% / 2.4% faster steps before /
    after looping, 1.7 GiB less memory: BENCHMARKS.md, thirteenth session). Training only."""
    fused_kv_repeat: bool
    """With fused_qk and the fa4 attention backend: k and v go to attention with each KV head repeated to the
    query heads (qk_rope writes k that way; v is copied), so FA4's backward runs as multi-head attention and
    writes bf16 dK / dV, without zeroed fp32 accumulators and their postprocess (golf/kernels/fa4.py). The
    forward still runs GQA. Training only."""
    cuda_graphs: bool
    """Replay the whole-model graph's forward and backward as CUDA graphs (inductor's cudagraph trees), so
    Python launches none of their kernels: before looping the step is launch-bound in stretches on the H200
    (BENCHMARKS.md, sixteenth session). Each micro-batch's documents (cu_seqlens) are padded with empty ones
    to a multiple of CU_MULTIPLE entries (golf/train/data.py), so a few graphs serve every batch. Needs
    CUDA, compile and compile_scope model or hybrid (blocks has no whole-model graph); at hybrid the looped
    phase (eager glue around compiled blocks) stays as it is. On the H200 1-2% more tokens/s, 6-12 s more
    cold start (BENCHMARKS.md, seventeenth session)."""
    combo_kernels: bool
    """Inductor's combo kernels in the compiled graphs: independent small kernels (the weights' bf16 casts, the
    gradients' casts and per-channel sums) launched together as one horizontal kernel. On the H200 a third fewer
    fused launches and 0.2-0.5% more tokens/s (BENCHMARKS.md, twenty-third session); what they add to the cold
    start is not known (the 13 s measured then was against a run on warm caches: twenty-fifth session). Compile
    only."""
    nproc_per_node: int
    """Processes (GPUs) for DDP; > 1 relaunches `golf train` under torchrun."""
    peak_flops: float
    """Peak FLOP/s of one device for MFU (798e12 = H100 dense bf16 as in the records); 0 = no MFU."""
    moe_aux_weight: float
    """Weight of the MoE load-balancing loss (model.aux_loss()) in the loss; 0 = off; unused if model.moe_num_experts = 0."""
    mtp_weight: float
    """Weight of the multi-token-prediction (t+2 head) mean NLL in the loss; 0 = off; unused if model.mtp_heads = 0."""
    cat_every: int
    """Compressor-aware training: add the grid penalty on every cat_every-th step; 0 = off (golf/train/cat.py)."""
    cat_weight: float
    """Weight of the CAT penalty: mean squared distance (weight units) of the block matrices to their grid."""
    cat_bits: int
    """Bits of the grid CAT pulls toward (R = 2^(bits-1) - 1 codes each side), as quantize.matrix_bits."""
    cat_clip_sigmas: float
    """Row clip in standard deviations of the CAT grid (step = k * std(row) / R), as quantize.clip_sigmas."""
    cat_form: Literal["squared", "sigmoid"]
    """CAT penalty: squared = mean (w - r*s)^2 in weight units; sigmoid = mean sigmoid soft-round distance in grid
    units, 0 on grid points and 1 half-way (golf/train/cat.py). cat_weight's scale differs between the two."""
    qat_start_frac: float
    """Late QAT: from this training fraction on, the CAT matrices run forward/backward fake-quantized on the
    grid below with a straight-through gradient (golf/train/qat.py); 0 = off."""
    qat_bits: int
    """Bits of the QAT grid (R = 2^(bits-1) - 1); keep equal to quantize.matrix_bits."""
    qat_clip_sigmas: float
    """Row clip in standard deviations of the QAT grid (step = k * std(row) / R); keep equal to quantize.clip_sigmas."""

    def __post_init__(self) -> None:
        def bad(key: str, why: str) -> None:
            raise ValueError(f"train.{key} = {getattr(self, key)!r}: {why}")

        for key in ("iterations", "train_batch_tokens", "train_seq_len", "grad_accum_steps", "val_batch_seqs",
                    "muon_backend_steps", "nproc_per_node"):
            if getattr(self, key) < 1:
                bad(key, "must be >= 1")
        for key in ("max_wallclock_s", "gptq_reserve_s", "warmup_steps", "val_every", "val_max_tokens",
                    "muon_momentum_warmup_steps", "matrix_lr", "muon_wd", "tied_embed_lr", "embed_wd", "scalar_lr",
                    "adam_wd", "adam_eps", "grad_clip_norm", "swa_every", "peak_flops"):
            if getattr(self, key) < 0:
                bad(key, "must be >= 0")
        for key in ("warmdown_frac", "min_lr", "swa_start_frac", "enable_looping_at", "swa_max_lr_mul",
                    "qat_start_frac"):
            if not 0.0 <= getattr(self, key) <= 1.0:
                bad(key, "must be in [0, 1]")
        for key in ("muon_momentum", "muon_momentum_warmup_start", "beta1", "beta2", "ema_decay",
                    "muon_momentum_cycle_min"):
            if not 0.0 <= getattr(self, key) < 1.0:
                bad(key, "must be in [0, 1)")
        if self.max_wallclock_s > 0 and self.gptq_reserve_s >= self.max_wallclock_s:
            bad("gptq_reserve_s", f"must be below train.max_wallclock_s = {self.max_wallclock_s}")
        per_step = self.train_seq_len * self.grad_accum_steps * self.nproc_per_node
        if self.train_batch_tokens % per_step:
            bad("train_batch_tokens", f"must be divisible by train_seq_len x grad_accum_steps x nproc_per_node "
                                      f"= {self.train_seq_len} x {self.grad_accum_steps} x {self.nproc_per_node}")
        for key in ("moe_aux_weight", "mtp_weight", "cat_every", "cat_weight", "muon_momentum_cycle_steps"):
            if getattr(self, key) < 0:
                bad(key, "must be >= 0")
        if not 2 <= self.cat_bits <= 8:
            bad("cat_bits", "must be in [2, 8] (int8 codes, as quantize)")
        if self.cat_clip_sigmas <= 0:
            bad("cat_clip_sigmas", "must be > 0")
        if self.cat_every > 0 and self.cat_weight <= 0:
            bad("cat_weight", f"must be > 0 when train.cat_every = {self.cat_every} (CAT on)")
        if self.swa_enabled and self.swa_every < 1:
            bad("swa_every", "must be >= 1 when train.swa_enabled")
        if self.swa_enabled and self.swa_mode == "swa_of_ema" and self.ema_decay == 0:
            bad("swa_mode", "needs train.ema_decay > 0 (it averages the EMA's weights)")
        if self.muon_momentum_cycle_steps == 1:
            bad("muon_momentum_cycle_steps", "must be 0 (off) or >= 2 (a period of one step has no wave)")
        if self.muon_momentum_cycle_steps > 0 and self.muon_momentum_cycle_min > self.muon_momentum:
            bad("muon_momentum_cycle_min", f"must be <= train.muon_momentum = {self.muon_momentum} (the cycle's top)")
        if not 2 <= self.qat_bits <= 8:
            bad("qat_bits", "must be in [2, 8] (int8 codes, as quantize)")
        if self.qat_clip_sigmas <= 0:
            bad("qat_clip_sigmas", "must be > 0")
        if self.cuda_graphs and self.compile_scope == "blocks":  # no whole-model graph to replay (loop.py)
            bad("cuda_graphs", "needs train.compile_scope model or hybrid, but it is 'blocks'")

    def compiles_on(self, device_type: str) -> bool:
        """torch.compile applies on a device of this type ("cuda", "cpu")."""
        return self.compile == "on" or (self.compile == "auto" and device_type == "cuda")

    def micro_batch_seqs(self, world_size: int) -> int:
        """Sequences per forward on each rank."""
        return self.train_batch_tokens // (self.train_seq_len * self.grad_accum_steps * world_size)
