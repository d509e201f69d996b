"""The MLP's up-projection GEMMs with LeakyReLU² in the epilogue, by quack's CuTe DSL GEMMs (issue 17).

quack (quack-kernels, installed with flash-attn-4: pyproject's `gpu` extra) has `gemm_act(A, B,
activation=name)`, which writes pre = A B and post = act(pre) from one GEMM's epilogue, and
`gemm_dact(dout, B, pre, activation=name)`, which writes dpre = (dout B) * act'(pre) and post again.
golf's MLP op keeps the forward's post, so its backward runs quack's dact epilogue through quack's
epilogue framework (`quack.epilogue.frontend.gemm_epilogue`) with dpre as the only output: one
(tokens x hidden) bf16 write less per call, 400 MB at the record shape (`dact_only`).
quack looks activations up by name in quack.activation's maps, so golf registers its LeakyReLU² there:
act(u) = max(u, slope u)^2 (slope in [0, 1]), act'(u) = 2u (u > 0), 2 slope^2 u (u <= 0), the
expressions of golf/kernels/leaky_relu2.py.

Rounding differs from the pair path's in one place: quack takes act and act' of the fp32 accumulator
before rounding, where the pair (and golf/kernels/mlp_gemm.py) rounds C to bf16 first. Within bf16
tolerance of the eager MLP (the GPU test in tests/test_kernels.py).

The two functions have golf/kernels/mlp_gemm.py's signatures (A (M, K), B (N, K), bf16), so its
MLP op runs them when `train.fused_mlp = quack`. CuTe DSL kernels need a Hopper or Blackwell GPU.

quack keys its compile cache by an epilogue function's qualname alone when the function's code sits
under a site-packages/ folder, and otherwise recurses into the function's globals, which fails on
the CUTLASS DSL's own (`TypeError: ... no fail-closed semantic key`; quack/gemm_runtime/identity.py).
pip installs there; bench/device_env.sh unpacks there for that reason. So golf's act and act' are
keyed by qualname alone, and the activation's name, which carries the slope, is what keeps two slopes'
kernels apart: quack's own epilogues carry it in their tag, golf's `dact_only` looks its act' up by it.
"""

from __future__ import annotations

import functools

from torch import Tensor

# quack's default config for the GPU, not its autotuning: on Hopper that tries 44 configs a GEMM, each
# its own JIT compile at the first call, which would cost golf's cold start. At the record shape on the
# H200 the default is within 2.4% of the fastest config for the pair of GEMMs (bench/quack_configs.py;
# BENCHMARKS.md, ninth session).
TUNED = False


@functools.cache
def activation(slope: float) -> str:
    """Register act and act' for `slope` with quack; the name to pass to gemm_act / gemm_dact."""
    if not 0.0 <= slope <= 1.0:
        raise ValueError(f"quack_gemm: slope {slope} outside [0, 1] (max(u, slope u) is leaky_relu only there)")
    import cutlass.cute as cute
    import quack.activation as qa
    import quack.gemm_interface as qg
    import torch
    from cutlass import Boolean, Float32, const_expr
    from cutlass._mlir.dialects import arith
    from cutlass.cutlass_dsl import dsl_user_op

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


def gemm_leaky_relu2(a: Tensor, b: Tensor, slope: float, config=None) -> tuple[Tensor, Tensor]:
    """(pre, post) = (A Bᵀ, leaky_relu(A Bᵀ, slope)^2), both bf16 (M, N); A (M, K), B (N, K) bf16.
    config: a quack GemmConfig to run (bench/quack_configs.py), else quack's default."""
    from quack.gemm_interface import gemm_act

    return gemm_act(a, b.t(), activation=activation(float(slope)), tuned=TUNED, config=config)


@functools.cache
def dact_only(slope: float):
    """quack's dact epilogue (quack.epilogue.library `dact_mod`) without its post output: D = dpre only."""
    import quack.activation as qa
    from quack.epilogue.frontend import gemm_epilogue

    name = activation(slope)

    def golf_dact_only(acc, c):
        """acc = dout W2 (fp32), c = pre: dpre = acc * act'(pre); the post that dact also returns is
        dropped, so the kernel never stores it. Looked up by `name`, as quack's
        dact_mod names it in its tag: quack keys golf's dact by qualname alone (its DSL wrapper sits
        under site-packages), so the name is what keeps two slopes' kernels apart in quack's cache."""
        dpre, _post = qa.dact_fn_map[name](c, acc)
        return {"D": dpre}

    return gemm_epilogue()(golf_dact_only)


def gemm_leaky_relu2_backward(a: Tensor, b: Tensor, pre: Tensor, slope: float, config=None) -> Tensor:
    """dpre = (A Bᵀ) * act'(pre), bf16 (M, N); A = dout (M, K), B = W2ᵀ (N, K), pre (M, N) bf16.
    A dynamic persistent scheduler, as quack's gemm_dact runs it; config as for gemm_leaky_relu2."""
    return dact_only(float(slope))(a, b.t(), pre, tuned=TUNED, dynamic_scheduler=True, config=config)["D"]
