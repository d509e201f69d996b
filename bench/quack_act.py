"""golf's LeakyReLU² as an activation of quack's CuTe GEMMs (quack-kernels, installed with flash-attn-4).

quack's `gemm_act(A, B, activation=name)` writes pre = A B and post = act(pre) from one GEMM's epilogue,
and `gemm_dact(dout, W2, pre, activation=name)` writes dpre = (dout W2) * act'(pre) and post again (so
the forward need not keep post). It looks activations up by name in quack.activation's maps, so golf's
LeakyReLU² can be registered there: act(u) = max(u, slope u)^2 (slope in [0, 1]),
act'(u) = 2u (u > 0), 2 slope^2 u (u <= 0), the expressions of golf/kernels/leaky_relu2.py. A bench
candidate for the MLP (bench/bench_kernels.py --quack); CuTe DSL kernels need a Hopper or Blackwell GPU.
"""

from __future__ import annotations

import functools


@functools.cache
def register(slope: float) -> str:
    """Register act and act' for `slope` with quack; the activation name to pass to gemm_act / gemm_dact."""
    import cutlass.cute as cute
    import quack.activation as qa
    import quack.gemm_interface as qg
    import torch
    from cutlass import Boolean, Float32, const_expr
    from cutlass._mlir.dialects import arith
    from cutlass.cutlass_dsl import dsl_user_op

    if not 0.0 <= slope <= 1.0:
        raise ValueError(f"quack_act: slope {slope} outside [0, 1] (max(u, slope u) is leaky_relu only there)")
    d_neg = 2.0 * slope * slope

    @dsl_user_op
    def act(x, *, loc=None, ip=None):
        if const_expr(isinstance(x, tuple)):  # quack's packed pairs
            return act(x[0], loc=loc, ip=ip), act(x[1], loc=loc, ip=ip)
        a = Float32(arith.maxnumf(Float32(x).ir_value(loc=loc, ip=ip), Float32(x * slope).ir_value(loc=loc, ip=ip),
                                  loc=loc, ip=ip))
        return a * a

    @dsl_user_op
    @cute.jit
    def dact(x, dout, *, loc=None, ip=None):
        """(dout * act'(x), act(x)), as quack's d-activations return them."""
        if const_expr(isinstance(x, tuple)):
            dx0, out0 = dact(x[0], dout[0])
            dx1, out1 = dact(x[1], dout[1])
            return (dx0, dx1), (out0, out1)
        pos = Boolean(x > 0)
        a = x if pos else x * slope
        return dout * (2.0 * x if pos else d_neg * x), a * a

    name = f"golf_leaky_relu_sq_{slope:g}"
    qa.act_fn_map[name], qa.dact_fn_map[name] = act, dact
    qg.act_to_pytorch_fn_map[name] = lambda u: torch.where(u > 0, u, u * slope).square()
    return name


def mlp(x, w_fc, w_proj, slope: float):
    """The whole MLP leaky_relu(x W_fcᵀ, slope)^2 W_projᵀ in bf16 through quack: gemm_act forward (keeps
    x and pre only), gemm_dact backward (dpre and post again), cuBLAS for the other four GEMMs; the
    counterpart of golf.kernels.mlp_gemm.mlp_leaky_relu2 for bench/bench_kernels.py --quack."""
    return _quack_mlp_function().apply(x, w_fc, w_proj, register(float(slope)))


@functools.cache
def _quack_mlp_function():
    """The autograd Function, made on first use: quack imports only where it runs."""
    import quack.gemm_interface as qg
    import torch

    class QuackMLP(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x, w_fc, w_proj, act):
            x16, w1, w2 = (t.to(torch.bfloat16) for t in (x.reshape(-1, x.shape[-1]), w_fc, w_proj))
            pre, post = qg.gemm_act(x16, w1.t(), activation=act)
            ctx.save_for_backward(x16, w1, w2, pre)
            ctx.act, ctx.x_shape, ctx.dtypes = act, x.shape, (x.dtype, w_fc.dtype, w_proj.dtype)
            return (post @ w2.t()).view(*x.shape[:-1], w2.shape[0])

        @staticmethod
        def backward(ctx, dout):
            x16, w1, w2, pre = ctx.saved_tensors
            g = dout.reshape(-1, dout.shape[-1]).to(torch.bfloat16).contiguous()
            dpre, post = qg.gemm_dact(g, w2, pre, activation=ctx.act)
            dx, dw1, dw2 = dpre @ w1, dpre.t() @ x16, g.t() @ post
            return (dx.view(ctx.x_shape).to(ctx.dtypes[0]), dw1.to(ctx.dtypes[1]), dw2.to(ctx.dtypes[2]), None)

    return QuackMLP
