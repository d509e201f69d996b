"""FA4's varlen backward with dQ and dK left in its fp32 accumulators, and where each element sits in them.

FlashAttention 4's backward (flash_attn_4 4.0.0b36, `flash_attn/cute/interface.py` `_flash_attn_bwd`) adds
dQ, and under GQA dK and dV, into zeroed fp32 accumulators, then runs a postprocess kernel per gradient
that scales it (softmax_scale for dQ and dK) and writes it in bf16. golf's q / k preparation backward
(golf/kernels/qk_rope.py) then reads that bf16 dq / dk again. Reading the accumulators instead skips a
bf16 write and read of dq and dk: 3 KB a token a layer at the record's shape (8 + 4 heads of 64 dims),
and two of FA4's three postprocess launches.

The accumulators' layout, as FA4's SM90 postprocess reads it (`flash_bwd_postprocess.py`,
`seqlen_info.py` `SeqlenInfoQK.create`): one fp32 plane per head; packed sequence i starts at padded row
(cu_seqlens[i] + i * tile) // tile * tile, so every sequence starts on a tile of `tile` rows; tile m of a
plane holds rows [m * tile, (m + 1) * tile) as tile * tile_hdim floats in the order of the MMA's register
fragments, not row-major. That order is read off FA4's own postprocess here: run on a tile whose floats
hold their own offsets, it writes each offset to the (row, column) that reads it (`tile_order`).

`backward(...)` runs FA4's backward with its dq / dk postprocess calls intercepted (the module attribute
`_bwd_postprocess_convert` swapped for the call, the way a test patches one): everything else, dV
included, runs as FA4 runs it. A gradient whose postprocess is not the plain one (a 2-CTA or clustered
tile), or that FA4 writes directly (dK without GQA), comes back as FA4's bf16 tensor.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import functools
import inspect

import torch
from torch import Tensor


@dataclasses.dataclass(frozen=True)
class Accum:
    """A gradient left in FA4's accumulator: `data` (heads, padded rows * tile_hdim) fp32, `order`
    (tile, head_dim) int32 offsets of each (row, column) within a tile, `scale` to multiply it by."""
    data: Tensor
    order: Tensor
    tile: int
    tile_hdim: int
    scale: float


def _postprocess():
    from flash_attn.cute import interface

    return interface, interface._bwd_postprocess_convert


# the postprocess's arguments that are data, not configuration (left out of tile_order's key)
_DATA = ("accum", "output", "scale", "cu_seqlens", "seqused", "cu_total_m_blocks", "sink_tensors", "fake_mode")


def _plain_call(args: dict) -> bool:
    """A varlen postprocess of a one-CTA, unclustered tile: the layout the module docstring describes."""
    return (args["cluster_size"] == 1 and not args["use_2cta_instrs"] and args["accum_order"] is None
            and args["sink_tensors"] is None and args["cu_seqlens"] is not None and args["seqused"] is None)


def _tile_hdim(config: dict) -> int:
    return -(-config["hdim"] // config["hdim_multiple_of"]) * config["hdim_multiple_of"]


@functools.cache
def tile_order(key: tuple, dtype: torch.dtype) -> Tensor:
    """(tile, head_dim) int32: the offset within a tile that FA4's postprocess reads for each (row, column),
    for the postprocess compiled for `key` (its configuration arguments as sorted (name, value) pairs) and
    writing `dtype`. Two runs on one sequence of one full tile holding offset % 256 and offset // 256
    (integers to 256 are exact in bf16 and fp16), scale 1. Launches and synchronizes: the first call of
    each configuration must come outside a CUDA graph capture (training's warm-up steps)."""
    # in a thread of its own: under CUDA graphs the first call comes in a warm-up run of cudagraph trees, which
    # puts the calling thread's allocations in the graphs' private pool, and a cached tensor left there fails the
    # pool's check ("1 tensor(s) in the cudagraph pool not tracked as outputs": the H200, twenty-first session,
    # when this ran on a side stream of the calling thread; the thread is the fix, not yet run on a GPU)
    device = torch.cuda.current_device()
    with concurrent.futures.ThreadPoolExecutor(1) as worker:
        return worker.submit(_probe, key, dtype, device).result()


def _probe(key: tuple, dtype: torch.dtype, device: int) -> Tensor:
    torch.cuda.set_device(device)
    _, convert = _postprocess()
    config = dict(key)
    tile, hdim, tile_hdim = config["block_size"], config["hdim"], _tile_hdim(config)
    cu = torch.tensor([0, tile], dtype=torch.int32, device="cuda")
    offsets = torch.arange(tile * tile_hdim, device="cuda")
    digits = []
    for digit in (offsets % 256, offsets // 256):
        accum = torch.zeros(1, 3 * tile * tile_hdim, device="cuda")  # FA4's padding for one sequence
        accum[0, : tile * tile_hdim] = digit.float()
        out = torch.zeros(tile, 1, hdim, dtype=dtype, device="cuda")
        convert(accum, out, 1.0, cu, None, **config, fake_mode=False)
        digits.append(out[:, 0].to(torch.int32))
    order = (digits[0] + 256 * digits[1]).contiguous()
    flat = order.flatten()
    if flat.unique().numel() != flat.numel() or int(flat.max()) >= tile * tile_hdim:
        raise RuntimeError("FA4's backward postprocess did not read a permutation of its tile: golf/kernels/"
                           "fa4_accum.py does not know this flash_attn_4 version's accumulator layout")
    torch.cuda.synchronize()
    return order


def _accum(args: dict) -> Accum:
    config = {k: v for k, v in args.items() if k not in _DATA}
    order = tile_order(tuple(sorted(config.items())), args["output"].dtype)
    return Accum(args["accum"], order, config["block_size"], _tile_hdim(config), float(args["scale"]))


def backward(q: Tensor, k: Tensor, v: Tensor, out: Tensor, dout: Tensor, lse: Tensor, cu_seqlens: Tensor,
             max_seqlen: int) -> tuple[Accum | Tensor, Accum | Tensor, Tensor]:
    """Causal varlen FA4 backward on bf16 / fp16 (N, H, D) q and (N, Hkv, D) k, v: (dQ, dK, dv), dQ and dK
    as `Accum`s where FA4 accumulates them with its plain postprocess, else as FA4's tensors."""
    interface, convert = _postprocess()
    signature = inspect.signature(convert)
    dq, dk = torch.empty_like(q), torch.empty_like(k)
    taken: dict[str, Accum] = {}

    def intercept(*args, **kwargs):
        bound = signature.bind(*args, **kwargs)
        bound.apply_defaults()
        output = bound.arguments["output"]
        name = "q" if output is dq else "k" if output is dk else None
        if name is None or not _plain_call(bound.arguments):
            return convert(*args, **kwargs)
        taken[name] = _accum(bound.arguments)

    intercept.compile_cache = convert.compile_cache  # the function looks its cache up by its module name
    interface._bwd_postprocess_convert = intercept
    try:
        dv = interface._flash_attn_bwd(q, k, v, out, dout, lse, causal=True, cu_seqlens_q=cu_seqlens,
                                       cu_seqlens_k=cu_seqlens, max_seqlen_q=max_seqlen, max_seqlen_k=max_seqlen,
                                       dq=dq, dk=dk)[2]
    finally:
        interface._bwd_postprocess_convert = convert
    return taken.get("q", dq), taken.get("k", dk), dv
