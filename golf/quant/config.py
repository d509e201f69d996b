"""The `hessian_calibrate` and `quantize` sections of params.yaml (keys = the records' env vars, lower-cased)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

MIN_BITS, MAX_BITS = 2, 8  # codes are stored as int8; 1 bit has no symmetric grid


@dataclass(frozen=True, kw_only=True)
class HessianCalibrateConfig:
    source: Literal["train", "self_generated"]
    """Calibration text: random windows of the train split, or the model's own samples (reads no data)."""
    batches: int
    """Calibration batches (GPTQ_CALIBRATION_BATCHES); H is the sum of XᵀX divided by this count."""
    batch_seqs: int
    """Sequences per calibration batch."""
    seq_len: int
    """Tokens per calibration sequence."""
    seed: int
    """Seed of the train-window sampler or of the self-generation sampler."""
    temperature: float
    """Softmax temperature for self_generated sampling (ARGPTQ: 0.8); unused for source = train."""
    device: Literal["auto", "cpu", "cuda"]
    """Where to run the model; auto = cuda when available."""

    def __post_init__(self) -> None:
        for key in ("batches", "batch_seqs", "seq_len"):
            if getattr(self, key) < 1:
                raise ValueError(f"hessian_calibrate.{key} = {getattr(self, key)!r}: must be >= 1")
        if not self.temperature > 0.0:
            raise ValueError(f"hessian_calibrate.temperature = {self.temperature!r}: must be > 0")


@dataclass(frozen=True, kw_only=True)
class QuantizeConfig:
    method: Literal["gptq", "rtn"]
    """Rounding: full-Hessian GPTQ (error feedback through H⁻¹) or plain round-to-nearest (same scales)."""
    block_size: int
    """GPTQ columns per lazy-update block (records: 128)."""
    damp: float
    """GPTQ damping added to H's diagonal, as a fraction of mean(diag H) (records: 0.01); raised x10 on failure."""
    matrix_bits: int
    """Bits per weight for 2-D matrices outside attn/mlp/embedding, and for attn/mlp when their bits are 0 (MATRIX_BITS)."""
    attn_bits: int
    """Bits per weight for attention c_q, c_k, c_v, proj; 0 = matrix_bits."""
    mlp_bits: int
    """Bits per weight for MLP fc, proj; 0 = matrix_bits."""
    embed_bits: int
    """Bits per weight for the (tied) token embedding (EMBED_BITS)."""
    clip_sigmas: float
    """Row clip at this many standard deviations, for matrices without a group value (MATRIX_CLIP_SIGMAS)."""
    attn_clip_sigmas: float
    """Clip sigmas for attention matrices (ATTN_CLIP_SIGMAS); 0.0 = clip_sigmas."""
    mlp_clip_sigmas: float
    """Clip sigmas for MLP matrices (MLP_CLIP_SIGMAS); 0.0 = clip_sigmas."""
    embed_clip_sigmas: float
    """Clip sigmas for the token embedding (EMBED_CLIP_SIGMAS); 0.0 = clip_sigmas."""
    passthrough_numel: int
    """Float tensors that are not quantized and have at most this many elements are stored as fp16."""
    lqer_enabled: bool
    """Add a low-rank correction of the quantization error to the top-K tensors (LQER_ENABLED)."""
    lqer_rank: int
    """Rank r of the LQER correction (LQER_RANK)."""
    lqer_top_k: int
    """LQER corrects the K tensors with the largest ‖W − Q·s‖_F (LQER_TOP_K)."""
    lqer_asym_group: int
    """Group size of B's INT4 scales in the asymmetric packing (LQER_ASYM_GROUP); 0 = always symmetric."""
    lqer_factor_bits: int
    """Bits of the symmetric per-row packing of A and B, used when B's size is not a multiple of the group."""
    device: Literal["auto", "cpu", "cuda"]
    """Where to quantize and evaluate; auto = cuda when available."""
    codebook_k: int
    """k-means codebook quantization instead of uniform int codes: K fp16 centroids per tensor, uint8 indices,
    rounded by `method` (GPTQ sweep or nearest centroid); bits/clip keys are then unused. 0 = off; else 2..256."""
    codebook_iters: int
    """Lloyd iterations of the (H-diagonal-weighted, quantile-initialised, deterministic) codebook k-means."""
    hadamard: bool
    """Rotate each matrix's input dim by a block Walsh-Hadamard R before quantizing (W R against RᵀHR); undone at dequantize."""
    mlp_sparsity_24: bool
    """2:4 sparsity on MLP matrices before GPTQ: in each group of 4 input columns of a row keep the 2 with the
    highest w²/[H⁻¹]_jj, hold that mask through GPTQ (pruned codes are 0) and leave those tensors out of LQER."""

    def __post_init__(self) -> None:
        def bad(key: str, why: str) -> None:
            raise ValueError(f"quantize.{key} = {getattr(self, key)!r}: {why}")

        if self.codebook_k and not 2 <= self.codebook_k <= 256:
            bad("codebook_k", "must be 0 (off) or in 2..256 (indices are uint8)")
        if self.mlp_sparsity_24 and (self.codebook_k or self.hadamard):
            bad("mlp_sparsity_24", "needs uniform int codes in the weights' own basis: turn off quantize.codebook_k "
                "(no zero centroid) and quantize.hadamard (the rotation would fill the pruned weights)")
        if self.codebook_k and self.codebook_iters < 1:
            bad("codebook_iters", "must be >= 1 when quantize.codebook_k > 0")

        for key in ("matrix_bits", "embed_bits"):
            if not MIN_BITS <= getattr(self, key) <= MAX_BITS:
                bad(key, f"impossible bit plan: bits must be in {MIN_BITS}..{MAX_BITS}")
        for key in ("attn_bits", "mlp_bits"):
            v = getattr(self, key)
            if v != 0 and not MIN_BITS <= v <= MAX_BITS:
                bad(key, f"impossible bit plan: bits must be 0 (= matrix_bits) or in {MIN_BITS}..{MAX_BITS}")
        if not self.clip_sigmas > 0:
            bad("clip_sigmas", "must be > 0")
        for key in ("attn_clip_sigmas", "mlp_clip_sigmas", "embed_clip_sigmas", "damp"):
            if getattr(self, key) < 0:
                bad(key, "must be >= 0")
        for key in ("block_size",):
            if getattr(self, key) < 1:
                bad(key, "must be >= 1")
        for key in ("passthrough_numel", "lqer_asym_group"):
            if getattr(self, key) < 0:
                bad(key, "must be >= 0")
        if self.lqer_enabled:
            for key in ("lqer_rank", "lqer_top_k"):
                if getattr(self, key) < 1:
                    bad(key, "must be >= 1 when quantize.lqer_enabled")
            if not MIN_BITS <= self.lqer_factor_bits <= MAX_BITS:
                bad("lqer_factor_bits", f"impossible bit plan: bits must be in {MIN_BITS}..{MAX_BITS}")

    def group_plan(self, group: str) -> tuple[int, float]:
        """(bits, clip sigmas) of a tensor group: "attn", "mlp", "embed" or "matrix"."""
        if group == "attn":
            return self.attn_bits or self.matrix_bits, self.attn_clip_sigmas or self.clip_sigmas
        if group == "mlp":
            return self.mlp_bits or self.matrix_bits, self.mlp_clip_sigmas or self.clip_sigmas
        if group == "embed":
            return self.embed_bits, self.embed_clip_sigmas or self.clip_sigmas
        return self.matrix_bits, self.clip_sigmas
