"""One configurable GPT: the BASE model plus every component of the REC3 -> LQER stack.

Data flow (docs/techniques.md §2.1, §2.2):
  tok_emb (+ bigram) -> SmearGate -> RMSNorm = x0
  -> virtual layer sequence (depth recurrence when `looping`), split into U-Net encoder and
     decoder halves with gated skips; from `parallel_start_layer` on, two residual lanes;
     with model.value_residual every attention after the first mixes in the first one's values
  -> final RMSNorm -> logits = h @ E^T (tied) -> softcap.

Every weight matrix is an `nn.Linear` under its contract name, so forward hooks see its input;
the `adapter(site, x)` protocol (docs/contracts.md) is only consulted when an adapter is given,
so the plain path is unchanged. Control flow depends only on config and the Python flag
`looping`, which keeps `torch.compile(fullgraph=True)` happy (one recompile when it flips).

With model.doc_masked_attention every attention layer stays inside the BOS-delimited documents
of its row: `hidden` builds the documents once per forward (attention.doc_mask, or the
cu_seqlens a varlen backend takes, which the train loop passes in built on the host).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from golf.artifact.model.attention import (
    BACKENDS,
    DOC_MASK_BACKENDS,
    Rotary,
    _load,
    doc_cu_seqlens,
    doc_mask,
    init_linear,
    registered,
    set_sdpa_kernels,
)
from golf.artifact.model.config import ModelConfig
from golf.artifact.model.layers import BigramHash, Block, RMSNorm, SmearGate, ValueEmbedding

NLL_CHUNK_ELEMENTS = 1 << 26  # fp32 logits materialised at once by `nll` (256 MiB)


class GPT(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.looping = False
        d, L = cfg.model_dim, cfg.num_layers
        e = cfg.embed_dim or d
        self.tok_emb = nn.Embedding(cfg.vocab_size, e)
        # factorized embedding: lift e -> d on the way in; the tied head goes d -> e first
        self.embed_proj = nn.Linear(e, d, bias=False) if cfg.embed_dim else None
        self.head_proj = nn.Linear(d, e, bias=False) if cfg.embed_dim and cfg.tie_embeddings else None
        self.bigram = BigramHash(cfg) if cfg.bigram_vocab_size else None
        self.smear = SmearGate(cfg) if cfg.smear_gate_enabled else None
        self.ve = ValueEmbedding(cfg) if cfg.ve_dim else None
        self.ve_index = {layer: i for i, layer in enumerate(cfg.ve_layers)} if cfg.ve_dim else {}
        self.rotary = Rotary(cfg.rope_dims, cfg.rope_base)
        self.blocks = nn.ModuleList(Block(cfg, i) for i in range(L))
        # U-Net skips: sized for the longest sequence; the plain graph uses the first rows
        n_skips = max(self._split(False)[2], self._split(True)[2])
        self.skip_weights = nn.Parameter(torch.ones(n_skips, d)) if n_skips else None
        self.skip_gates = nn.Parameter(torch.zeros(n_skips, d)) if n_skips and cfg.skip_gates_enabled else None
        if cfg.parallel_start_layer >= 0:
            # one row per physical layer, as LQER stores them (rows before the start stay unused)
            self.parallel_resid_lambdas = nn.Parameter(torch.full((L, 2), 1.1))
            self.parallel_post_lambdas = nn.Parameter(torch.ones(L, 2, 2))
        if cfg.value_residual:
            # one lam per physical layer (looped layers reuse theirs); the first slot's row mixes nothing.
            # One convex weight rather than two free scalars: it keeps v's scale, and c_v can learn any scale itself.
            self.value_lambdas = nn.Parameter(torch.full((L,), 0.5))
        self.final_norm = RMSNorm()
        self.lm_head = None if cfg.tie_embeddings else nn.Linear(d, cfg.vocab_size, bias=False)
        # multi-token prediction (train only): h_t -> norm(h_t + W h_t) -> the same head, predicts t+2;
        # W starts at zero, so the t+2 head starts as the t+1 head
        self.mtp = nn.ModuleList(nn.Linear(d, d, bias=False) for _ in range(cfg.mtp_heads))
        self._init_weights()
        self.attention_backend = "sdpa"
        self.fused_head_loss = None  # training only: see use_fused_kernels
        # train.bf16_residual: under autocast, the residual stream in the autocast dtype (bf16), as the
        # record keeps it, instead of the embedding's fp32; set and cleared by the train loop
        self.autocast_residual = False

    # ---- structure -------------------------------------------------------------------------

    def _init_weights(self) -> None:
        nn.init.normal_(self.tok_emb.weight, std=self.cfg.tied_embed_init_std)
        for name, m in self.named_modules():
            if isinstance(m, nn.Linear) and not name.startswith("smear"):
                zero = (name.endswith("attn.proj") or ".mlp.proj" in name or name == "lm_head"
                        or (".mlp.experts." in name and name.endswith(".proj")) or name.startswith("mtp."))
                init_linear(m, zero)

    def _split(self, looping: bool) -> tuple[list[int], int, int]:
        """(virtual sequence, encoder length, number of skips) for one graph."""
        seq = self.cfg.layer_sequence(looping)
        if not self.cfg.unet_skips:
            return seq, 0, 0
        n_enc = len(seq) // 2
        return seq, n_enc, min(n_enc, len(seq) - n_enc)

    @property
    def num_virtual_layers(self) -> int:
        """Layers the current graph runs (adapter slots): 17 for the record with looping on."""
        return len(self.cfg.layer_sequence(self.looping))

    def set_attention_backend(self, backend: str) -> None:
        """Use `backend` (see attention.select_backend) in every layer; checked able and importable."""
        if backend not in BACKENDS:
            raise ValueError(f"unknown attention backend {backend!r}; known: {', '.join(BACKENDS)}")
        if self.cfg.doc_masked_attention and backend not in DOC_MASK_BACKENDS:
            raise ValueError(f"model.doc_masked_attention = true needs a backend that masks documents "
                             f"({', '.join(DOC_MASK_BACKENDS)}); {backend!r} cannot")
        if backend != "sdpa" and _load(backend) is None:
            raise RuntimeError(f"attention backend {backend!r} is not importable here")
        set_sdpa_kernels(backend)
        self.attention_backend = backend
        for block in self.blocks:
            block.attn.backend = backend

    def use_fused_kernels(self, head_loss, activation, mlp=None, qk=None, xsa_gate=None, kv_repeat=False) -> None:
        """Training: `train_loss` takes head_loss(h, W, targets, softcap) -> summed NLL for the head,
        every MLP takes activation(u, slope), or mlp(x, W_fc, W_proj, slope) for all of it, and every
        attention qk(x, rope, gain, rope_dims, repeat) for its q / k norm, RoPE and gain and xsa_gate(y, v,
        window, w, scale) for its XSA and sparse gate; with kv_repeat (and qk) attention gets k and v with
        each KV head repeated to the query heads (attention.attend's kv_repeat). golf/train/fused.py passes
        golf/kernels' (this package never imports them, so eval and the artifact runner stay eager)."""
        self.fused_head_loss = head_loss
        for m in self.modules():
            if hasattr(m, "fused_act"):
                m.fused_act, m.fused_mlp = activation, mlp
            if hasattr(m, "fused_qk"):
                m.fused_qk, m.fused_xsa_gate, m.fused_kv_repeat = qk, xsa_gate, kv_repeat

    @property
    def doc_varlen(self) -> bool:
        """Documents go to attention as cu_seqlens (a registered varlen backend), not as a mask."""
        return self.cfg.doc_masked_attention and registered(self.attention_backend)

    def _documents(self, idx: torch.Tensor, cu_seqlens: torch.Tensor | None) -> torch.Tensor | None:
        """What every attention layer gets for document masking (None when it is off)."""
        if not self.cfg.doc_masked_attention:
            return None
        if self.doc_varlen:
            return cu_seqlens if cu_seqlens is not None else doc_cu_seqlens(idx, self.cfg.bos_id)
        return doc_mask(idx, self.cfg.bos_id)

    def compile_blocks(self, **compile_kwargs) -> None:
        """Regional compilation: torch.compile each block's two forms and the loss head, not the loop.

        Blocks of the same structure share one graph (their weights are graph inputs; the per-layer
        LN scale is a buffer, the slot is not passed without an adapter), so the record model
        compiles a few small graphs instead of two whole unrolled ones, and switching depth
        recurrence on recompiles nothing. The glue between blocks (embedding, skips) runs eagerly.
        """
        for block in self.blocks:
            block.forward = torch.compile(block.forward, **compile_kwargs)
            block.forward_parallel = torch.compile(block.forward_parallel, **compile_kwargs)
        self._chunked_nll = torch.compile(self._chunked_nll, **compile_kwargs)

    # ---- forward ---------------------------------------------------------------------------

    def _embed(self, idx: torch.Tensor) -> torch.Tensor:
        x, dev = self.tok_emb(idx), idx.device.type
        if self.autocast_residual and torch.is_autocast_enabled(dev):
            # the looked-up rows in bf16, as the record's bf16 table gives them: smear and norm then run on
            # bf16 too, so the tensors the backward keeps for x0 (which every layer's resid_mix reads, in the
            # forward and again in the backward) are bf16. From the fp32 rows inductor kept the fp32 pre-norm
            # embedding and recomputed x0 from it at each read: twice the bytes (BENCHMARKS.md, eighteenth session)
            x = x.to(torch.get_autocast_dtype(dev))
        if self.embed_proj is not None:
            x = self.embed_proj(x)
        if self.bigram is not None:
            x = x + self.bigram(idx).to(x.dtype)
        if self.smear is not None:
            x = self.smear(x, idx)
        return F.rms_norm(x, (x.size(-1),))

    def _skip(self, x: torch.Tensor, skip: torch.Tensor, i: int) -> torch.Tensor:
        s = self.skip_weights[i].to(skip.dtype) * skip
        if self.skip_gates is None:
            return x + s
        return torch.lerp(s, x, torch.sigmoid(self.skip_gates[i]).to(x.dtype))

    def hidden(self, idx: torch.Tensor, adapter=None, cu_seqlens: torch.Tensor | None = None) -> torch.Tensor:
        """(B,T) token ids -> (B,T,d) final-norm output. cu_seqlens: the documents of idx
        (attention.doc_cu_seqlens) when a varlen backend masks them; found from idx when not given."""
        cfg = self.cfg
        docs = self._documents(idx, cu_seqlens)
        for m in self._moe_layers():
            m.aux_losses.clear()
        x = x0 = self._embed(idx)
        rope = self.rotary(idx.size(1), idx.device)
        ve = self.ve(idx) if self.ve is not None else None
        seq, n_enc, n_skips = self._split(self.looping)
        psl = cfg.parallel_start_layer
        skips: list[torch.Tensor] = []
        lane0 = lane1 = v0 = None
        for slot, layer in enumerate(seq):
            # the slot is only for the adapter: passing it always would make a compiled block
            # specialize on it (one graph per virtual layer)
            tail = (adapter, slot) if adapter is not None else ()
            block = self.blocks[layer]
            # value residual: the first slot returns its values, every later one mixes them in
            vres = {} if not cfg.value_residual else {"return_v": True} if v0 is None else {
                "v0": v0, "lam": self.value_lambdas[layer]}
            ve_l = ve * self.ve.layer_scales[self.ve_index[layer]] if layer in self.ve_index else None
            dec = slot - n_enc  # decoder position (negative in the encoder)
            if 0 <= psl <= layer:
                # config checks guarantee these layers form the tail of the (decoder) sequence
                if lane0 is None:
                    lane0 = lane1 = x
                if 0 <= dec < n_skips:
                    lane0 = self._skip(lane0, skips.pop(), dec)
                out = block.forward_parallel(lane0, lane1, x0, rope, self.parallel_resid_lambdas[layer],
                                             self.parallel_post_lambdas[layer], ve_l, *tail, docs=docs, **vres)
                lane0, lane1, v0 = out if "return_v" in vres else (*out, v0)
                continue
            if 0 <= dec < n_skips:
                x = self._skip(x, skips.pop(), dec)
            out = block(x, x0, rope, ve_l, *tail, docs=docs, **vres)
            x, v0 = out if "return_v" in vres else (out, v0)
            if slot < n_enc:
                skips.append(x)
        if lane0 is not None:
            x = 0.5 * (lane0 + lane1)
        return self.final_norm(x)

    def _logits(self, h: torch.Tensor, adapter=None) -> torch.Tensor:
        """Softcapped fp32 logits from final-norm output h."""
        # tied: the embedding matrix itself (no duplicate parameter); untied: call the module,
        # so a hook on lm_head sees its input
        if self.lm_head is not None:
            z = self.lm_head(h)
        else:
            z = F.linear(h if self.head_proj is None else self.head_proj(h), self.tok_emb.weight)
        if adapter is not None:
            delta = adapter("head", h)
            if delta is not None:
                z = z + delta
        c = self.cfg.logit_softcap
        return c * torch.tanh(z.float() / c)

    def forward(self, idx: torch.Tensor, adapter=None) -> torch.Tensor:
        """(B,T) ids -> (B,T,V) float32 softcapped logits."""
        return self._logits(self.hidden(idx, adapter), adapter)

    def nll(self, idx: torch.Tensor, targets: torch.Tensor, adapter=None,
            cu_seqlens: torch.Tensor | None = None) -> torch.Tensor:
        """(B,T) per-token NLL in nats, float32, full-vocabulary log-softmax in fp32 (cu_seqlens: `hidden`).

        Without an adapter the head runs over row chunks, so at most NLL_CHUNK_ELEMENTS fp32
        logits exist at once in inference (autograd still keeps each chunk for backward).
        """
        b, t = idx.shape
        h = self.hidden(idx, adapter, cu_seqlens)
        if adapter is not None:
            z = self._logits(h, adapter)
            return F.cross_entropy(z.flatten(0, 1), targets.flatten(), reduction="none").view(b, t)
        return self._chunked_nll(h, targets)

    def _chunked_nll(self, h: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        hf, tf = h.flatten(0, 1), targets.flatten()
        rows = max(1, NLL_CHUNK_ELEMENTS // self.cfg.vocab_size)
        parts = [F.cross_entropy(self._logits(hf[s:s + rows]), tf[s:s + rows], reduction="none")
                 for s in range(0, hf.size(0), rows)]
        return (parts[0] if len(parts) == 1 else torch.cat(parts)).view(targets.shape)

    # ---- training-only objectives (MoE balance, multi-token prediction) ---------------------

    def _moe_layers(self) -> list[nn.Module]:
        return [b.mlp for b in self.blocks if hasattr(b.mlp, "aux_losses")]  # golf.artifact.model.moe.MoEMLP

    def aux_loss(self) -> torch.Tensor:
        """MoE load-balancing loss of the last forward: the mean over every MoE call (looped layers
        count once per pass) of E * sum_e f_e * P_e; 1.0 when perfectly balanced, 0.0 without MoE.
        The train loop adds `train.moe_aux_weight * aux_loss()` to the loss after the forward."""
        losses = [a for m in self._moe_layers() for a in m.aux_losses]
        if not losses:
            return torch.zeros((), device=self.tok_emb.weight.device)
        return torch.stack(losses).mean()

    def _mtp_nll(self, h: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """(B, T-1) NLL of the t+2 head: position t (< T-1) predicts targets[:, t+1]."""
        b, t = targets.shape
        g = h[:, :-1]
        g = self.final_norm(g + self.mtp[0](g))
        z = self._logits(g)
        return F.cross_entropy(z.flatten(0, 1), targets[:, 1:].flatten(), reduction="none").view(b, t - 1)

    def nll_and_mtp(self, idx: torch.Tensor, targets: torch.Tensor,
                    cu_seqlens: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(nll (B, T) as `nll(idx, targets)`, mtp_nll (B, T-1) or None when mtp_heads = 0), one trunk pass.

        targets[:, t] is token t+1 (the usual shifted window), so targets[:, t+1] is token t+2: the
        t+2 head is scored at positions 0..T-2 with no extra data. The train loop's loss is
        nll.mean() + train.mtp_weight * mtp_nll.mean().
        """
        h = self.hidden(idx, cu_seqlens=cu_seqlens)
        nll = self._chunked_nll(h, targets)
        if not len(self.mtp) or idx.size(1) < 2:
            return nll, None
        return nll, self._mtp_nll(h, targets)

    def train_loss(self, idx: torch.Tensor, targets: torch.Tensor, mtp: bool = False,
                   cu_seqlens: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(mean NLL, mean t+2 NLL when `mtp` and the model has the head, else None), one trunk pass:
        the means of `nll_and_mtp`, through the fused head when installed (use_fused_kernels);
        cu_seqlens: `hidden`."""
        h = self.hidden(idx, cu_seqlens=cu_seqlens)
        nll = self._mean_nll(h, targets)
        if not (mtp and len(self.mtp) and idx.size(1) >= 2):
            return nll, None
        g = h[:, :-1]
        return nll, self._mean_nll(self.final_norm(g + self.mtp[0](g)), targets[:, 1:])

    def _mean_nll(self, h: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        if self.fused_head_loss is None:
            return self._chunked_nll(h, targets).mean()
        w = self.tok_emb.weight if self.lm_head is None else self.lm_head.weight
        if self.head_proj is not None:
            h = self.head_proj(h)
        return self.fused_head_loss(h, w, targets, self.cfg.logit_softcap) / targets.numel()

    def mtp_loss(self, idx: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Mean NLL of the t+2 head (its own trunk pass; the loop uses `nll_and_mtp` instead)."""
        if not len(self.mtp):
            raise ValueError("mtp_loss: the model has no MTP head (model.mtp_heads = 0)")
        return self._mtp_nll(self.hidden(idx), targets).mean()

    # ---- what other stages need ------------------------------------------------------------

    def hessian_sites(self) -> dict[str, tuple[nn.Module, str]]:
        """{weight name: (module, "input" | "output")} whose X gives that weight's H = X^T X.

        Covers every 2-D matrix GPTQ quantizes: the block linears (six; eight with the KAN MLP), bigram.proj, ve.proj,
        the MoE routers and experts (each expert's H from the tokens routed to it), embed_proj /
        head_proj of a factorized embedding, and the LM head (the tied tok_emb.weight via the
        final norm's output, or head_proj's output when factorized). Left out, as
        they have no matmul input or are tiny: the lookup tables bigram.embed / ve.embed (and
        tok_emb when untied), the SmearGate's 1 x gate_window vector and the attention gates'
        attn_gate_w (heads x gate_window / model_dim); these stay unquantized or use RTN. The
        train-only MTP head is left out too (it never runs in forward; save_model drops it).
        """
        sites: dict[str, tuple[nn.Module, str]] = {}
        for name, m in self.named_modules():
            if (isinstance(m, nn.Linear) and not name.startswith(("smear", "mtp.")) and name != "lm_head"):
                sites[f"{name}.weight"] = (m, "input")
        if self.lm_head is None:
            # factorized: the tied head's input is head_proj's output
            sites["tok_emb.weight"] = (self.final_norm, "output") if self.head_proj is None else (self.head_proj, "output")
        else:
            sites["lm_head.weight"] = (self.lm_head, "input")
        return sites

    def param_groups(self) -> dict[str, list[nn.Parameter]]:
        """Optimizer groups: Muon "matrix" (hidden 2-D weights), AdamW "embed", AdamW "scalar"."""
        groups: dict[str, list[nn.Parameter]] = {"matrix": [], "embed": [], "scalar": []}
        for name, p in self.named_parameters():
            if name.endswith("embed.weight") or name in ("tok_emb.weight", "lm_head.weight"):
                groups["embed"].append(p)
            elif p.ndim == 2 and name.endswith(".weight") and not name.startswith("smear"):
                groups["matrix"].append(p)  # block linears, bigram.proj, ve.proj
            else:
                groups["scalar"].append(p)  # scales, mixes, gains, gates, lambdas
        return groups
