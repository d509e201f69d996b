"""FlashAttention 3's `flash_attn_interface`, served by golf's FA4 custom ops (golf/kernels/fa4.py).

bench/bench_record.py puts this folder first on the record script's PYTHONPATH, so the record's FA3
calls run the same FA4 kernels, through the same torch.compile-safe wrapper, as golf's training:
both sides of the comparison get one attention kernel. Only what the record calls is here (causal,
default scale, no window); anything else fails loudly rather than computing something else.
"""

from __future__ import annotations

from golf.kernels import fa4


def _check(q, causal, softmax_scale, window_size) -> None:
    if not causal:
        raise NotImplementedError("fa3 stand-in: golf's FA4 ops are causal only")
    if softmax_scale is not None and abs(softmax_scale - q.size(-1) ** -0.5) > 1e-12:
        raise NotImplementedError(f"fa3 stand-in: softmax_scale {softmax_scale} is not 1/sqrt(head_dim)")
    if tuple(window_size) not in ((-1, -1), (None, None)):
        raise NotImplementedError(f"fa3 stand-in: window_size {window_size} (sliding windows) is not served")


def flash_attn_func(q, k, v, softmax_scale=None, causal=False, window_size=(-1, -1), **_):
    """q (B, T, H, D), k and v (B, T, Hkv, D) -> (B, T, H, D)."""
    _check(q, causal, softmax_scale, window_size)
    return fa4.attention(q, k, v)


def flash_attn_varlen_func(q, k, v, cu_seqlens_q=None, cu_seqlens_k=None, max_seqlen_q=None, max_seqlen_k=None,
                           softmax_scale=None, causal=False, window_size=(-1, -1), **_):
    """q (N, H, D), k and v (N, Hkv, D) packed by cu_seqlens_q -> (N, H, D). Self-attention: the record
    passes the same packing for k (cu_seqlens_k, max_seqlen_k are not read)."""
    _check(q, causal, softmax_scale, window_size)
    return fa4.varlen_attention(q, k, v, cu_seqlens_q, int(max_seqlen_q))
