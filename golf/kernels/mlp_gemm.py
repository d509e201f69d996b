"""The LeakyReLU² MLP with its activation in the up-projection's GEMM epilogue (issue 17).

The MLP is out = act(x W1ᵀ) W2ᵀ, act(u) = leaky_relu(u, slope)^2 (golf/artifact/model/layers.py `MLP`).
The pair path (golf/kernels/leaky_relu2.py) lets cuBLAS write u = x W1ᵀ and reads it back to write
act(u); its backward lets cuBLAS write g = dout W2 and reads it back with u to write du. Here one
Triton GEMM C = A Bᵀ (bf16 in, fp32 accumulate) does the elementwise work in its epilogue, which
saves one (tokens x hidden) bf16 write and read each way:

  forward  (A = x, B = W1):     pre = bf16(C), post = bf16(act(pre));
  backward (A = dout, B = W2ᵀ): dpre = bf16(bf16(C) * act'(pre)), act'(u) = 2u (u > 0), 2 slope^2 u (u <= 0).

Rounding: the epilogue rounds C to bf16 first, as cuBLAS rounds its output for the pair path, and
then evaluates the very fp32 expressions of golf_leaky_relu2_fwd / _bwd; so for the same bf16 C,
post and dpre are bit-for-bit the pair's. C itself is summed in another order than cuBLAS sums it,
so pre (and with it post, dpre) can differ from the pair path's by one bf16 unit where the two fp32
sums round to different neighbours (tests/test_kernels.py checks both statements).

The kernel is the usual persistent Hopper GEMM: one program per SM walks the output tiles in grouped
order (GROUP_M row tiles share each sweep over the columns, so their A rows and B stay in L2);
operands come in by TMA through host-built TensorDescriptors (rows past M read as zero and are never
stored, so any M works); the k loop is flattened into the tile loop, so the compiler's pipeline
fetches the next tile's operands during this tile's epilogue; the epilogue stores the tile in column
slices, which keeps fewer values live and the staging buffers small. Triton's interpreter runs the
same descriptors on the CPU (the tests).

`mlp_leaky_relu2` is the whole MLP as one `torch.library.custom_op` (fake implementation, registered
autograd: torch.compile(fullgraph=True) traces it with no graph break): the fused forward GEMM, then
out = post W2ᵀ, dW2 = doutᵀ post, the fused backward GEMM, dW1 = dpreᵀ x, dx = dpre W1 (cuBLAS).
It computes in bf16 (training's autocast dtype) and saves x, pre and post, as the eager path does.
Its `kernels` argument picks the two fused GEMMs: this file's Triton kernel ("triton") or quack's
CuTe DSL GEMMs ("quack", golf/kernels/quack_gemm.py, the same signatures); on the CPU both are the
PyTorch epilogues below (or the Triton kernel under the interpreter).
"""

from __future__ import annotations

import dataclasses
import functools
import os

import torch
import triton
import triton.language as tl
from torch import Tensor
from triton.tools.tensor_descriptor import TensorDescriptor

from golf.errors import GolfError
from golf.kernels.mm import mm_fp32

COMPUTE_DTYPE = torch.bfloat16
INTERPRETER_PROGRAMS = 3  # "SMs" under Triton's interpreter: few, so each program walks several tiles


@dataclasses.dataclass(frozen=True)
class Tiles:
    """One launch configuration of the GEMM (bench/bench_kernels.py --mlp-tiles compares some)."""

    m: int = 128
    """Output tile rows (tokens)."""
    n: int = 256
    """Output tile columns (hidden units)."""
    k: int = 64
    """Reduction step."""
    group_m: int = 8
    """Row tiles that sweep the columns together (L2 reuse)."""
    stages: int = 3
    """Software pipeline depth (operand buffers in shared memory)."""
    warps: int = 8
    split: int = 2
    """Column slices the epilogue stores one after the other (1 or 2)."""
    flatten: bool = True
    """Flatten the k loop into the tile loop (overlaps the next tile's loads with this epilogue)."""

    def label(self) -> str:
        return f"{self.m}x{self.n}x{self.k} g{self.group_m} s{self.stages} w{self.warps} split{self.split}" + \
            ("" if self.flatten else " noflat")


TILES = Tiles()  # what the op launches; 128x256x64, 8 warps, 3 stages: the usual fast bf16 shape on Hopper


@triton.jit
def _tile_origin(tile, num_pid_m, num_pid_n, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, GROUP_M: tl.constexpr):
    """(first row, first column) of output tile `tile` in grouped order."""
    per_group = GROUP_M * num_pid_n
    first_m = (tile // per_group) * GROUP_M
    rows = tl.minimum(num_pid_m - first_m, GROUP_M)
    pid_m = first_m + (tile % per_group) % rows
    pid_n = (tile % per_group) // rows
    return pid_m * BLOCK_M, pid_n * BLOCK_N


@triton.jit
def _epilogue(c, pre_desc, out_desc, row, col, slope, BACKWARD: tl.constexpr):
    """One fp32 slice c of the accumulator at (row, col): forward stores pre and act(pre), backward
    stores C * act'(pre) (the expressions of golf/kernels/leaky_relu2.py, on C rounded to bf16)."""
    if BACKWARD:
        g = c.to(tl.bfloat16).to(tl.float32)
        u = pre_desc.load([row, col]).to(tl.float32)
        d = tl.where(u > 0, 2.0 * u, (2.0 * slope * slope) * u)
        out_desc.store([row, col], (g * d).to(tl.bfloat16))
    else:
        pre = c.to(tl.bfloat16)
        u = pre.to(tl.float32)
        a = tl.where(u > 0, u, u * slope)
        pre_desc.store([row, col], pre)
        out_desc.store([row, col], (a * a).to(tl.bfloat16))


@triton.jit
def golf_mlp_gemm(a_desc, b_desc, pre_desc, out_desc, M, N, K, slope, BACKWARD: tl.constexpr,
                  BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, GROUP_M: tl.constexpr,
                  SPLIT: tl.constexpr, FLATTEN: tl.constexpr, NUM_SMS: tl.constexpr, UPCAST: tl.constexpr):
    """C = A Bᵀ, A (M, K), B (N, K), through `_epilogue`; launched on min(NUM_SMS, tiles) programs.
    UPCAST: under Triton's interpreter (CPU tensors) only."""
    num_pid_m = tl.cdiv(M, BLOCK_M)
    num_pid_n = tl.cdiv(N, BLOCK_N)
    k_steps = tl.cdiv(K, BLOCK_K)
    # the epilogue derives its tile from a counter of its own, so the flattened loop need not carry
    # the prologue's (row, col) across the pipeline stages
    done = tl.program_id(0) - NUM_SMS
    for tile in tl.range(tl.program_id(0), num_pid_m * num_pid_n, NUM_SMS, flatten=FLATTEN):
        row, col = _tile_origin(tile, num_pid_m, num_pid_n, BLOCK_M, BLOCK_N, GROUP_M)
        acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
        for ks in range(k_steps):
            a = a_desc.load([row, ks * BLOCK_K])
            b = b_desc.load([col, ks * BLOCK_K])
            if UPCAST:  # the interpreter's dot multiplies bf16 operands as raw 16-bit integers
                acc = tl.dot(a.to(tl.float32), b.to(tl.float32).T, acc)  # products of bf16 are exact in fp32
            else:
                acc = tl.dot(a, b.T, acc)
        done += NUM_SMS
        row, col = _tile_origin(done, num_pid_m, num_pid_n, BLOCK_M, BLOCK_N, GROUP_M)
        if SPLIT == 2:
            left, right = tl.split(tl.permute(tl.reshape(acc, (BLOCK_M, 2, BLOCK_N // 2)), (0, 2, 1)))
            _epilogue(left, pre_desc, out_desc, row, col, slope, BACKWARD)
            _epilogue(right, pre_desc, out_desc, row, col + BLOCK_N // 2, slope, BACKWARD)
        else:
            _epilogue(acc, pre_desc, out_desc, row, col, slope, BACKWARD)


@functools.cache
def _num_sms(device_index: int) -> int:
    return torch.cuda.get_device_properties(device_index).multi_processor_count


def _operand(t: Tensor) -> Tensor:
    """t as a TMA operand: contiguous rows whose start is 16-byte aligned."""
    t = t.contiguous()
    return t if t.data_ptr() % 16 == 0 else t.clone()


def _check(a: Tensor, b: Tensor) -> None:
    if a.dtype != COMPUTE_DTYPE or b.dtype != COMPUTE_DTYPE:
        raise GolfError(f"mlp_gemm: A and B must be bf16, got {a.dtype} and {b.dtype}")
    if a.dim() != 2 or b.dim() != 2 or a.shape[1] != b.shape[1]:
        raise GolfError(f"mlp_gemm: A (M, K) and B (N, K) must share K, got {tuple(a.shape)} and {tuple(b.shape)}")
    if a.shape[1] % 16 or b.shape[0] % 16:
        raise GolfError(f"mlp_gemm: K = {a.shape[1]} and N = {b.shape[0]} must be multiples of 16 (TMA rows)")


def _launch(a: Tensor, b: Tensor, pre: Tensor, out: Tensor, slope: float, backward: bool) -> None:
    t = TILES
    (m, k), n = a.shape, b.shape[0]
    if m == 0:
        return
    sms = _num_sms(a.device.index or 0) if a.is_cuda else INTERPRETER_PROGRAMS
    programs = min(sms, triton.cdiv(m, t.m) * triton.cdiv(n, t.n))
    desc = TensorDescriptor.from_tensor
    golf_mlp_gemm[(programs,)](
        desc(a, [t.m, t.k]), desc(b, [t.n, t.k]), desc(pre, [t.m, t.n // t.split]), desc(out, [t.m, t.n // t.split]),
        m, n, k, slope, BACKWARD=backward, BLOCK_M=t.m, BLOCK_N=t.n, BLOCK_K=t.k, GROUP_M=t.group_m,
        SPLIT=t.split, FLATTEN=t.flatten, NUM_SMS=sms, UPCAST=not a.is_cuda, num_warps=t.warps, num_stages=t.stages)


def gemm_leaky_relu2(a: Tensor, b: Tensor, slope: float) -> tuple[Tensor, Tensor]:
    """(pre, post) = (A Bᵀ, leaky_relu(A Bᵀ, slope)^2), both bf16 (M, N); A (M, K), B (N, K) bf16."""
    _check(a, b)
    a, b = _operand(a), _operand(b)
    pre = a.new_empty((a.shape[0], b.shape[0]))
    post = torch.empty_like(pre)
    _launch(a, b, pre, post, float(slope), backward=False)
    return pre, post


def gemm_leaky_relu2_backward(a: Tensor, b: Tensor, pre: Tensor, slope: float) -> Tensor:
    """dpre = (A Bᵀ) * act'(pre), bf16 (M, N); A = dout (M, K), B = W2ᵀ (N, K), pre (M, N) bf16."""
    _check(a, b)
    if pre.shape != (a.shape[0], b.shape[0]) or pre.dtype != COMPUTE_DTYPE:
        raise GolfError(f"mlp_gemm: pre must be bf16 {(a.shape[0], b.shape[0])}, got {pre.dtype} {tuple(pre.shape)}")
    a, b, pre = _operand(a), _operand(b), _operand(pre)
    dpre = torch.empty_like(pre)
    _launch(a, b, pre, dpre, float(slope), backward=True)
    return dpre


# ---- the same epilogues in PyTorch (the op's CPU kernel without the interpreter; the tests' reference) --

def gemm_leaky_relu2_reference(a: Tensor, b: Tensor, slope: float) -> tuple[Tensor, Tensor]:
    pre = a @ b.t()
    u = pre.float()
    return pre, torch.where(u > 0, u, u * slope).square().to(pre.dtype)


def gemm_leaky_relu2_backward_reference(a: Tensor, b: Tensor, pre: Tensor, slope: float) -> Tensor:
    g = (a @ b.t()).float()
    u = pre.float()
    return (g * torch.where(u > 0, 2.0 * u, (2.0 * slope * slope) * u)).to(pre.dtype)


KERNELS = ("triton", "quack")


def _cuda_gemms(kernels: str):
    """(forward GEMM, backward GEMM) on CUDA: golf's Triton kernel or quack's (module docstring)."""
    if kernels == "quack":
        from golf.kernels import quack_gemm

        return quack_gemm.gemm_leaky_relu2, quack_gemm.gemm_leaky_relu2_backward
    if kernels != "triton":
        raise GolfError(f"mlp_gemm: kernels must be one of {', '.join(KERNELS)}, got {kernels!r}")
    return gemm_leaky_relu2, gemm_leaky_relu2_backward


def _cpu_gemms():
    """The kernel under Triton's interpreter where it is on (tests), else the PyTorch epilogues."""
    if os.environ.get("TRITON_INTERPRET") == "1":
        return gemm_leaky_relu2, gemm_leaky_relu2_backward
    return gemm_leaky_relu2_reference, gemm_leaky_relu2_backward_reference


# ---- the MLP as one op ------------------------------------------------------------------------------

def _bf16(*ts: Tensor) -> list[Tensor]:
    return [t.to(COMPUTE_DTYPE).contiguous() for t in ts]


def _forward(x: Tensor, w_fc: Tensor, w_proj: Tensor, slope: float, gemm) -> tuple[Tensor, Tensor, Tensor]:
    with torch.autocast(x.device.type, enabled=False):
        x, w_fc, w_proj = _bf16(x, w_fc, w_proj)
        pre, post = gemm(x, w_fc, slope)
        return post @ w_proj.t(), pre, post


def _backward(dout, x, w_fc, w_proj, pre, post, slope, gemm_backward) -> tuple[Tensor, Tensor, Tensor]:
    with torch.autocast(dout.device.type, enabled=False):
        g, x16, w1, w2 = _bf16(dout, x, w_fc, w_proj)
        dw_proj = mm_fp32(g.t(), post)  # fp32 on the GPU, as the weights' .grad sums them
        dpre = gemm_backward(g, w2.t(), pre, slope)  # a view: quack reads W2 as is, Triton copies (_operand)
        dw_fc = mm_fp32(dpre.t(), x16)
        dx = dpre @ w1
        return dx.to(x.dtype), dw_fc.to(w_fc.dtype), dw_proj.to(w_proj.dtype)


@torch.library.custom_op("golf::mlp_leaky_relu2", mutates_args=(), device_types="cuda")
def mlp_leaky_relu2_op(x: Tensor, w_fc: Tensor, w_proj: Tensor, slope: float,
                       kernels: str) -> tuple[Tensor, Tensor, Tensor]:
    """(out, pre, post): x (M, d), w_fc (H, d), w_proj (d, H) -> out (M, d), pre and post (M, H), bf16."""
    return _forward(x, w_fc, w_proj, slope, _cuda_gemms(kernels)[0])


@mlp_leaky_relu2_op.register_kernel("cpu")
def _(x, w_fc, w_proj, slope, kernels):
    return _forward(x, w_fc, w_proj, slope, _cpu_gemms()[0])


@mlp_leaky_relu2_op.register_fake
def _(x, w_fc, w_proj, slope, kernels):
    hidden = x.new_empty((x.shape[0], w_fc.shape[0]), dtype=COMPUTE_DTYPE)
    return x.new_empty((x.shape[0], w_proj.shape[0]), dtype=COMPUTE_DTYPE), hidden, torch.empty_like(hidden)


@torch.library.custom_op("golf::mlp_leaky_relu2_backward", mutates_args=(), device_types="cuda")
def mlp_leaky_relu2_backward_op(dout: Tensor, x: Tensor, w_fc: Tensor, w_proj: Tensor, pre: Tensor, post: Tensor,
                                slope: float, kernels: str) -> tuple[Tensor, Tensor, Tensor]:
    """(dx, dw_fc, dw_proj), each in its input's dtype."""
    return _backward(dout, x, w_fc, w_proj, pre, post, slope, _cuda_gemms(kernels)[1])


@mlp_leaky_relu2_backward_op.register_kernel("cpu")
def _(dout, x, w_fc, w_proj, pre, post, slope, kernels):
    return _backward(dout, x, w_fc, w_proj, pre, post, slope, _cpu_gemms()[1])


@mlp_leaky_relu2_backward_op.register_fake
def _(dout, x, w_fc, w_proj, pre, post, slope, kernels):
    return x.new_empty(x.shape), w_fc.new_empty(w_fc.shape), w_proj.new_empty(w_proj.shape)


def _setup_context(ctx, inputs, output) -> None:
    x, w_fc, w_proj, slope, kernels = inputs
    ctx.save_for_backward(x, w_fc, w_proj, output[1], output[2])
    ctx.slope, ctx.kernels = slope, kernels


def _backward_formula(ctx, dout, _dpre, _dpost):
    dx, dw_fc, dw_proj = mlp_leaky_relu2_backward_op(dout, *ctx.saved_tensors, ctx.slope, ctx.kernels)
    return dx, dw_fc, dw_proj, None, None


mlp_leaky_relu2_op.register_autograd(_backward_formula, setup_context=_setup_context)


def mlp_leaky_relu2(x: Tensor, w_fc: Tensor, w_proj: Tensor, slope: float, kernels: str = "triton") -> Tensor:
    """leaky_relu(x W_fcᵀ, slope)^2 W_projᵀ in bf16, fused (differentiable): x (..., d) -> (..., d_out).

    x goes in as bf16 (a cast the compiler fuses into whatever wrote x, and the bf16 copy is what
    the backward keeps, as under autocast); the weights are cast inside, and each input's gradient
    comes back in its dtype. A plain function, so a model holding it can be deep-copied."""
    out = mlp_leaky_relu2_op(x.reshape(-1, x.shape[-1]).to(COMPUTE_DTYPE), w_fc, w_proj, float(slope), kernels)[0]
    return out.view(*x.shape[:-1], w_proj.shape[0])


def mlp_leaky_relu2_quack(x: Tensor, w_fc: Tensor, w_proj: Tensor, slope: float) -> Tensor:
    """mlp_leaky_relu2 through quack's GEMMs (`train.fused_mlp = quack`)."""
    return mlp_leaky_relu2(x, w_fc, w_proj, slope, "quack")


def mlp_leaky_relu2_reference(x: Tensor, w_fc: Tensor, w_proj: Tensor, slope: float) -> Tensor:
    """The eager MLP as golf/artifact/model/layers.py computes it under bf16 autocast."""
    u = torch.nn.functional.linear(x.to(COMPUTE_DTYPE), w_fc.to(COMPUTE_DTYPE))
    a = torch.nn.functional.leaky_relu(u, slope) if slope else torch.relu(u)
    return torch.nn.functional.linear(a.square(), w_proj.to(COMPUTE_DTYPE))
