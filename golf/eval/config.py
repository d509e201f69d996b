"""The `ttt_eval` section of params.yaml: how the compressed artifact is scored."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

LORA_SITE_KINDS = ("attn.c_q", "attn.c_k", "attn.c_v", "attn.proj", "mlp", "head")
"""The adapter sites the GPT calls, without the virtual-layer slot (docs/contracts.md: adapter(site, x))."""


@dataclass(frozen=True, kw_only=True)
class TttEvalConfig:
    seq_len: int
    """Eval window length in tokens (EVAL_SEQ_LEN / TTT_EVAL_SEQ_LEN); also the TTT training sequence length."""
    stride: int
    """Sliding-window stride in tokens (EVAL_STRIDE): each later window scores its last `stride` tokens."""
    batch_seqs: int
    """Windows (or training sequences) per forward, per rank."""
    max_val_tokens: int
    """Score only the first this-many val tokens (0 = all); for fast CPU runs, and metrics say how many were scored."""
    device: Literal["auto", "cpu", "cuda"]
    """Where the artifact is scored; auto = cuda when available (one GPU per torchrun process)."""
    position_buckets: int
    """Rows of plots/ttt_eval.csv (BPB in this many equal spans of the val stream) and of plots/ttt_eval_window.csv (of the window)."""
    sliding_enabled: bool
    """Run the sliding-window eval (besides the plain one, which always runs)."""
    ttt_mode: Literal["none", "chunk_sgd", "lora"]
    """Test-time training: none; chunk_sgd = score-first chunked global SGD (§7.3); lora = per-doc LoRA (+ phased SGD, §7.4)."""
    chunk_tokens: int
    """chunk_sgd: tokens per chunk (TTT_CHUNK_TOKENS); windows are scored per chunk, then the model trains on it."""
    lr: float
    """chunk_sgd: peak SGD learning rate (TTT_LR), cosine over chunks down to 0."""
    momentum: float
    """chunk_sgd: SGD momentum (TTT_MOMENTUM)."""
    epochs: int
    """chunk_sgd: passes over each chunk's tokens (TTT_EPOCHS)."""
    grad_clip: float
    """Gradient-norm clip of the chunk_sgd and phased global SGD steps (TTT_GRAD_CLIP; 0 = off)."""
    param_filter: tuple[str, ...]
    """chunk_sgd: adapt only parameters whose name contains one of these (empty = all parameters)."""
    lora_rank: int
    """lora: LoRA rank (TTT_LORA_RANK)."""
    lora_alpha: float
    """lora: LoRA output scale numerator; deltas are scaled alpha/rank (TTT_LORA_ALPHA)."""
    lora_lr: float
    """lora: AdamW learning rate (TTT_LORA_LR)."""
    lora_sites: tuple[str, ...]
    """lora: the site kinds that get adapters, in every virtual layer (attn.c_q, attn.c_k, attn.c_v, attn.proj,
    mlp, head; all = the records' set); the others run without one."""
    chunk_size: int
    """lora: tokens scored per step of each document (TTT_CHUNK_SIZE); <= seq_len."""
    batch_docs: int
    """lora: documents per batch, each with its own LoRA (TTT_BATCH_SIZE)."""
    beta1: float
    """lora: AdamW beta1 (TTT_BETA1)."""
    beta2: float
    """lora: AdamW beta2 (TTT_BETA2)."""
    eps: float
    """lora: AdamW epsilon (TTT_EPS)."""
    weight_decay: float
    """lora: AdamW decoupled weight decay (TTT_WEIGHT_DECAY)."""
    seed: int
    """lora: seed of the LoRA A initialisation."""
    phased_prefix_docs: int
    """lora: the first this-many docs feed the phased global SGD (PHASED_TTT_PREFIX_DOCS; 0 = no phases)."""
    phased_num_phases: int
    """lora: global SGD phases over that prefix, at prefix·(i+1)/phases docs (PHASED_TTT_NUM_PHASES; 0 = none)."""
    global_lr: float
    """lora phases: SGD learning rate on all base weights (GLOBAL_TTT_LR), cosine over chunks."""
    global_momentum: float
    """lora phases: SGD momentum (GLOBAL_TTT_MOMENTUM)."""
    global_epochs: int
    """lora phases: passes over each chunk (GLOBAL_TTT_EPOCHS)."""
    global_chunk_tokens: int
    """lora phases: tokens per global SGD chunk (GLOBAL_TTT_CHUNK_TOKENS); the last chunk is skipped."""

    def __post_init__(self) -> None:
        positive = ("seq_len", "stride", "batch_seqs", "position_buckets", "chunk_tokens", "epochs", "lora_rank",
                    "chunk_size", "batch_docs", "global_epochs", "global_chunk_tokens")
        for k in positive:
            if getattr(self, k) < 1:
                raise ValueError(f"ttt_eval.{k} = {getattr(self, k)}: must be >= 1")
        if self.stride > self.seq_len:
            raise ValueError(f"ttt_eval.stride = {self.stride}: must be <= seq_len = {self.seq_len} "
                             "(a larger stride would leave tokens unscored)")
        if self.chunk_size > self.seq_len:
            raise ValueError(f"ttt_eval.chunk_size = {self.chunk_size}: must be <= seq_len = {self.seq_len}")
        nonneg = ("max_val_tokens", "lr", "momentum", "grad_clip", "lora_lr", "eps", "weight_decay",
                  "phased_prefix_docs", "phased_num_phases", "global_lr", "global_momentum", "lora_alpha")
        for k in nonneg:
            if getattr(self, k) < 0:
                raise ValueError(f"ttt_eval.{k} = {getattr(self, k)}: must be >= 0")
        for k in ("beta1", "beta2"):
            if not 0.0 <= getattr(self, k) < 1.0:
                raise ValueError(f"ttt_eval.{k} = {getattr(self, k)}: must be in [0, 1)")
        unknown = [k for k in self.lora_sites if k not in LORA_SITE_KINDS]
        if unknown or not self.lora_sites:
            why = f"unknown kind {unknown[0]!r}" if unknown else "empty (ttt_eval.ttt_mode none runs no TTT)"
            raise ValueError(f"ttt_eval.lora_sites = {list(self.lora_sites)}: {why}; "
                             f"valid kinds: {', '.join(LORA_SITE_KINDS)}")
        if 0 < self.max_val_tokens <= self.seq_len:
            raise ValueError(f"ttt_eval.max_val_tokens = {self.max_val_tokens}: must be 0 (all) or > seq_len")
