"""Causal GQA attention: QK-norm, partial RoPE, q_gain, XSA, output gates, pluggable kernels.

Tensors keep the FlashAttention layout (B, T, H, D). The kernel is picked once per device by
`select_backend` (FA4, FA3 on Hopper, FA2, else torch SDPA); every import is guarded so this
module never needs a GPU or a flash-attn wheel to import, and CPU always runs SDPA. "cudnn" is
SDPA restricted to the cuDNN kernel (never auto-selected: pick it with train.attention_backend).
"fa4" exists only once the training side registers golf/kernels/fa4.py's custom ops
(`register_backend`): this package is bundled with the artifact and never imports the kernels.

Document masking (model.doc_masked_attention): a BOS starts a document, and so does each row's first
token; a token attends to the earlier tokens of its own document only. A varlen backend gets the
documents as cu_seqlens over the flattened rows (the train loop builds them on the host: no
recompile per batch, golf/train/loop.py); SDPA gets the same documents as a boolean mask.
"""

from __future__ import annotations

import importlib
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from golf.artifact.model.config import ModelConfig

BACKENDS = ("fa3", "fa4", "fa2", "sdpa", "cudnn")
DOC_MASK_BACKENDS = ("fa4", "sdpa")  # the ones that can keep attention inside documents
DENSE_GATE_INIT_STD = 0.01  # CGATE's dense GatedAttn init (records used 0.005-0.01)

# name -> (module, attribute) of each flash-attn package's entry point; FA4's own graph-breaks
# under torch.compile, so "fa4" only comes through the registry
_FA_ENTRY = {"fa3": ("flash_attn_interface", "flash_attn_func"),
             "fa2": ("flash_attn", "flash_attn_func")}
# name -> (dense(q, k, v), varlen(q, k, v, cu_seqlens, max_seqlen)): kernels registered at run time
_REGISTRY: dict[str, tuple[Callable, Callable]] = {}


def register_backend(name: str, dense: Callable, varlen: Callable) -> None:
    """Serve backend `name` with causal `dense(q, k, v, kv_repeat)` (B,T,H,D) and `varlen(q, k, v, cu_seqlens,
    max_seqlen, kv_repeat)` (N,H,D) kernels; kv_repeat: see `attend`."""
    _REGISTRY[name] = (dense, varlen)


def unregister_backend(name: str) -> None:
    _REGISTRY.pop(name, None)


def registered(backend: str) -> bool:
    """True for a backend served by registered kernels (documents go to it as cu_seqlens)."""
    return backend in _REGISTRY


def _load(backend: str) -> Callable | None:
    """The dense kernel of `backend`, or None when it is neither registered nor importable."""
    if backend in _REGISTRY:
        return _REGISTRY[backend][0]
    if backend == "cudnn":
        return F.scaled_dot_product_attention if torch.backends.cudnn.is_available() else None
    if backend not in _FA_ENTRY:
        return None
    mod, attr = _FA_ENTRY[backend]
    try:
        return getattr(importlib.import_module(mod), attr)
    except Exception:  # ImportError, or a wheel built for another torch/CUDA
        return None


def set_sdpa_kernels(backend: str) -> None:
    """Process-wide SDPA kernels: only cuDNN for "cudnn" (so a shape it cannot run fails loudly
    instead of falling back to the slow math kernel), torch's defaults for every other backend.
    Flags rather than a context manager around the call: torch.compile reads them when it traces."""
    only_cudnn = backend == "cudnn"
    torch.backends.cuda.enable_flash_sdp(not only_cudnn)
    torch.backends.cuda.enable_mem_efficient_sdp(not only_cudnn)
    torch.backends.cuda.enable_math_sdp(not only_cudnn)
    torch.backends.cuda.enable_cudnn_sdp(True)


def backend_order(device: torch.device | str, doc_masked: bool = False) -> list[str]:
    """The backends `select_backend` tries on `device`, fastest first (what train records)."""
    device = torch.device(device)
    if device.type != "cuda" or not torch.cuda.is_available():
        return ["sdpa"]
    major, _ = torch.cuda.get_device_capability(device)
    order = ["fa4"] * (major >= 9) + ["fa3"] * (major == 9) + ["fa2"] * (major >= 8) + ["sdpa"]
    return [b for b in order if b in DOC_MASK_BACKENDS] if doc_masked else order


def select_backend(device: torch.device | str, doc_masked: bool = False) -> str:
    """The first of `backend_order` that is registered or importable (sdpa always is)."""
    return next(b for b in backend_order(device, doc_masked) if b == "sdpa" or _load(b) is not None)


def doc_mask(idx: torch.Tensor, bos_id: int) -> torch.Tensor:
    """(B, 1, T, T) bool for SDPA: i sees j <= i of its own document (BOS-delimited, per row)."""
    doc = (idx == bos_id).cumsum(1)
    causal = torch.ones(idx.size(1), idx.size(1), dtype=torch.bool, device=idx.device).tril()
    return ((doc[:, :, None] == doc[:, None, :]) & causal)[:, None]


def doc_cu_seqlens(idx: torch.Tensor, bos_id: int) -> torch.Tensor:
    """int32 (S + 1,) starts of the documents of the flattened (B*T) rows, then B*T: every row start
    and every BOS. Data-dependent length (nonzero): build it outside a compiled graph."""
    starts = idx == bos_id
    starts[:, 0] = True
    pos = torch.nonzero(starts.flatten()).flatten()
    return torch.cat((pos, pos.new_tensor([idx.numel()]))).to(torch.int32)


def attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, backend: str,
           docs: torch.Tensor | None = None, kv_repeat: int = 1) -> torch.Tensor:
    """Causal attention, (B,T,H,D) q and (B,T,Hkv,D) k/v -> (B,T,H,D); GQA without copies but under
    an SDPA mask. `docs`: cu_seqlens for a registered backend, the boolean doc_mask for SDPA, None
    = the whole row. kv_repeat > 1: k and v hold each KV head that many times in a row (H heads; the
    fused training path makes them so for FA4, golf/kernels/fa4.py): the same attention, which a
    registered backend may compute faster knowing it; SDPA and the flash-attn packages see H KV heads."""
    if backend in _REGISTRY:
        if docs is None:
            return _REGISTRY[backend][0](q, k, v, kv_repeat)
        b, t = q.shape[:2]
        y = _REGISTRY[backend][1](*(x.reshape(b * t, *x.shape[2:]) for x in (q, k, v)), docs, t, kv_repeat)
        return y.view(b, t, *y.shape[1:])
    if backend in ("sdpa", "cudnn"):  # cudnn: SDPA with only the cuDNN kernel on (set_sdpa_kernels)
        if docs is not None:  # KV heads repeated: SDPA's kernels that take a mask have no GQA
            g = q.size(2) // k.size(2)
            k, v = k.repeat_interleave(g, 2), v.repeat_interleave(g, 2)
        y = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2),
                                           attn_mask=docs, is_causal=docs is None,
                                           enable_gqa=q.size(2) != k.size(2))
        return y.transpose(1, 2)
    fn = _load(backend)
    if fn is None:
        raise RuntimeError(f"attention backend {backend!r} is not importable here")
    dtype = q.dtype
    if dtype not in (torch.bfloat16, torch.float16):  # flash kernels take half precision only
        q, k, v = (t.to(torch.bfloat16) for t in (q, k, v))
    y = fn(q, k, v, causal=True)
    if isinstance(y, tuple):  # some versions also return the log-sum-exp
        y = y[0]
    return y.to(dtype)


class Rotary(nn.Module):
    """cos/sin tables of partial RoPE for the first `rope_dims` dims of each head.

    The tables for up to TABLE_LEN positions are buffers made once: computed inside a compiled
    graph instead, inductor fuses the cos and sin into every kernel that rotates, and recomputes
    them there for each head and layer (31 ms of a 1,096 ms training step on the H200;
    BENCHMARKS.md, "mix-order"). Longer sequences compute theirs at the call.
    """

    TABLE_LEN = 4096

    def __init__(self, rope_dims: int, base: float):
        super().__init__()
        self.rope_dims = rope_dims
        inv = 1.0 / base ** (torch.arange(0, max(rope_dims, 2), 2, dtype=torch.float32) / max(rope_dims, 2))
        # buffers rebuilt from config, never stored (persistent=False): state dicts and artifacts keep none
        self.register_buffer("inv_freq", inv, persistent=False)
        self.register_buffer("cos_table", None, persistent=False)
        self.register_buffer("sin_table", None, persistent=False)
        self._build_tables()

    def _build_tables(self) -> None:
        self.cos_table, self.sin_table = self._tables(self.TABLE_LEN, self.inv_freq.device)

    def _apply(self, fn, recurse=True):
        """Moves and casts (.to, .double, ...) reach inv_freq; the tables are rebuilt from it on its
        device and in its precision, as a call would compute them, not cast from the old ones."""
        super()._apply(fn, recurse)
        self._build_tables()
        return self

    def _tables(self, seq_len: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        t = torch.arange(seq_len, device=device, dtype=torch.float32)
        freqs = torch.outer(t, self.inv_freq.to(device))
        return freqs.cos()[None, :, None, :], freqs.sin()[None, :, None, :]

    def forward(self, seq_len: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        if seq_len <= self.TABLE_LEN and self.cos_table.device == torch.device(device):
            return self.cos_table[:, :seq_len], self.sin_table[:, :seq_len]
        return self._tables(seq_len, device)


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, rope_dims: int) -> torch.Tensor:
    """Rotate the first rope_dims dims of each head (half-split pairs); the rest pass through."""
    if rope_dims == 0:
        return x
    cos, sin = cos.to(x.dtype), sin.to(x.dtype)
    rot, rest = x[..., :rope_dims], x[..., rope_dims:]
    half = rope_dims // 2
    x1, x2 = rot[..., :half], rot[..., half:]
    rot = torch.cat((x1 * cos + x2 * sin, x2 * cos - x1 * sin), dim=-1)
    return rot if rope_dims == x.size(-1) else torch.cat((rot, rest), dim=-1)


def xsa(y: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Exclusive self-attention: remove from each head's output its component along its own v_t.

    The (B,T,H,D) output is viewed as (B,T,Hkv,group,D) so each KV head broadcasts over the
    query heads it serves: no repeat_interleave, no copy of v.
    """
    b, t, h, d = y.shape
    hkv = v.size(2)
    yg = y.reshape(b, t, hkv, h // hkv, d)
    vn = F.normalize(v, dim=-1).unsqueeze(3)
    return (yg - (yg * vn).sum(-1, keepdim=True) * vn).reshape(b, t, h, d)


def sparse_gate(x_window: torch.Tensor, w: torch.Tensor, scale: float) -> torch.Tensor:
    """(B,T,H) sigmoid(scale * x_window . w_h): each head's gate from the input's first W dims."""
    return torch.sigmoid(scale * F.linear(x_window, w.to(x_window.dtype)))


class CausalSelfAttention(nn.Module):
    """One attention layer; weights are nn.Linear so hooks see each projection's input."""

    def __init__(self, cfg: ModelConfig, layer: int):
        super().__init__()
        d, hd = cfg.model_dim, cfg.head_dim
        self.num_heads, self.num_kv_heads, self.head_dim = cfg.num_heads, cfg.num_kv_heads, hd
        self.rope_dims = cfg.rope_dims
        self.c_q = nn.Linear(d, cfg.num_heads * hd, bias=False)
        self.c_k = nn.Linear(d, cfg.num_kv_heads * hd, bias=False)
        self.c_v = nn.Linear(d, cfg.num_kv_heads * hd, bias=False)
        self.proj = nn.Linear(cfg.num_heads * hd, d, bias=False)
        self.q_gain = nn.Parameter(torch.full((cfg.num_heads,), cfg.qk_gain_init))
        self.use_xsa = layer >= cfg.num_layers - cfg.xsa_last_n
        self.gate_window = cfg.gate_window
        self.gate_kind = ("sparse" if cfg.sparse_attn_gate_enabled
                          else "dense" if cfg.gated_attn_enabled else "")
        self.gate_scale = cfg.sparse_attn_gate_scale
        if self.gate_kind == "sparse":
            self.attn_gate_w = nn.Parameter(torch.zeros(cfg.num_heads, cfg.gate_window))
        elif self.gate_kind == "dense":
            self.attn_gate_w = nn.Parameter(torch.randn(cfg.num_heads, d) * DENSE_GATE_INIT_STD)
        self.backend = "sdpa"
        # training (GPT.use_fused_kernels): qk(x, rope, gain, rope_dims, repeat) does rms_norm, RoPE and the gain
        # at once; xsa_gate(y, v or None, x window or None, w, scale) XSA and the sparse gate; with
        # fused_kv_repeat, attention takes k (from qk) and v with each KV head repeated to the query heads
        self.fused_qk = self.fused_xsa_gate = None
        self.fused_kv_repeat = False

    def _project(self, name: str, x: torch.Tensor, adapter, slot: int) -> torch.Tensor:
        out = getattr(self, name)(x)
        if adapter is not None:
            delta = adapter(f"{slot}.attn.{name}", x)
            if delta is not None:
                out = out + delta
        return out

    def forward(self, x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor],
                ve: torch.Tensor | None = None, adapter=None, slot: int = 0,
                docs: torch.Tensor | None = None, v0: torch.Tensor | None = None,
                lam: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """x: (B,T,d) normed input -> ((B,T,d) output, (B,T,Hkv,D) values attended with).
        ve: value embedding added to v, already scaled. docs: the documents (see `attend`), None
        without document masking. v0, lam: value residual, v <- lam*v + (1-lam)*v0 (model.value_residual)."""
        b, t, _ = x.shape
        q = self._project("c_q", x, adapter, slot).reshape(b, t, self.num_heads, self.head_dim)
        k = self._project("c_k", x, adapter, slot).reshape(b, t, self.num_kv_heads, self.head_dim)
        v = self._project("c_v", x, adapter, slot)
        if ve is not None:
            v = v + ve.to(v.dtype)
        v = v.reshape(b, t, self.num_kv_heads, self.head_dim)
        if v0 is not None:
            v = torch.lerp(v0.to(v.dtype), v, lam.to(v.dtype))
        r = self.num_heads // self.num_kv_heads if self.fused_kv_repeat and self.fused_qk is not None else 1
        if self.fused_qk is not None:
            q, k = self.fused_qk(q, rope, self.q_gain, self.rope_dims), self.fused_qk(k, rope, None, self.rope_dims, r)
        else:
            q = F.rms_norm(q, (self.head_dim,))
            k = F.rms_norm(k, (self.head_dim,))
            q = apply_rotary(q, *rope, self.rope_dims)
            k = apply_rotary(k, *rope, self.rope_dims)
            q = q * self.q_gain.to(q.dtype)[:, None]
        # back to v's dtype (bf16 under autocast) so every kernel sees one dtype
        q, k = q.to(v.dtype), k.to(v.dtype)
        v_attended = v.repeat_interleave(r, 2) if r > 1 else v
        y = self._xsa_and_gate(attend(q, k, v_attended, self.backend, docs, r), v, x)
        return self._project("proj", y.reshape(b, t, self.num_heads * self.head_dim), adapter, slot), v

    def _xsa_and_gate(self, y: torch.Tensor, v: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """The attention output y after XSA (if this layer has it) and the output gate (if any)."""
        sparse = self.gate_kind == "sparse"
        window = x[..., : self.gate_window]
        if self.fused_xsa_gate is not None and self.gate_kind != "dense":
            return self.fused_xsa_gate(y, v if self.use_xsa else None, window if sparse else None,
                                       self.attn_gate_w if sparse else None, self.gate_scale)
        if self.use_xsa:
            y = xsa(y, v)
        if sparse:
            g = sparse_gate(window, self.attn_gate_w, self.gate_scale)
        elif self.gate_kind == "dense":
            g = torch.sigmoid(F.linear(x, self.attn_gate_w.to(x.dtype)))
        else:
            return y
        return y * g.to(y.dtype)[..., None]


def init_linear(module: nn.Linear, zero: bool) -> None:
    """Zero, or orthogonal (gain 1) for matrices at least 64x64; smaller keep torch's default."""
    if zero:
        nn.init.zeros_(module.weight)
    elif min(module.weight.shape) >= 64:
        nn.init.orthogonal_(module.weight, gain=1.0)

