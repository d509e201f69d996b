"""`train.fused_kernels`: whether training runs the fused Triton kernels, and installing them.

The model never imports golf/kernels (eval and the bundled artifact runner must run without
Triton): the train loop hands the fused functions to the model (`use_fused_kernels`), which then
takes them in its training loss and its MLPs (golf/kernels/__init__.py).
"""

from __future__ import annotations

import sys

import torch

from golf.errors import GolfError
from golf.kernels import triton_importable

_said_eager = False  # `auto` falling back says so once per process, not once per train() call


def missing(device: torch.device, autocast_bf16: bool) -> str:
    """Why the fused kernels cannot run here ('' when they can)."""
    if device.type != "cuda":
        return f"the device is {device.type}, not CUDA"
    if not triton_importable():
        return "Triton is not installed"
    if not autocast_bf16:
        return "train.autocast_bf16 is off (the kernels compute in bf16)"
    return ""


def resolve(setting: str, device: torch.device, autocast_bf16: bool, announce: bool = True) -> bool:
    """True when training should take the fused kernels for `train.fused_kernels = setting`.

    on: required, a GolfError naming the key when they cannot run; off: never; auto: when they
    can, else the eager path, said once on stderr (by the process that `announce`s: rank 0).
    """
    global _said_eager
    if setting == "off":
        return False
    why = missing(device, autocast_bf16)
    if setting == "on" and why:
        raise GolfError(f"train.fused_kernels = 'on' but {why}; use 'auto' or 'off'")
    if why and announce and not _said_eager:
        print(f"train.fused_kernels = auto: {why}; training uses the eager PyTorch path", file=sys.stderr)
        _said_eager = True
    return not why


def quack_missing() -> str:
    """Why quack's GEMMs cannot run here ('' when quack.gemm_interface imports)."""
    try:
        import quack.gemm_interface  # noqa: F401  (CUTLASS DSL underneath: an install can import but break)
    except Exception as e:  # noqa: BLE001  any failure means no quack, said by the caller
        if isinstance(e, ModuleNotFoundError) and e.name == "quack":
            return "quack-kernels is not installed"
        return f"quack.gemm_interface does not import ({type(e).__name__}: {e})"
    return ""


def resolve_mlp(setting: str, device: torch.device, announce: bool = True) -> str:
    """The MLP path for `train.fused_mlp = setting`: auto = quack on a Hopper GPU (compute capability 9,
    where it was measured: BENCHMARKS.md, seventh session) when quack imports, else pair; a Hopper
    without it says why on stderr (by the process that `announce`s), as the attention fallback does.
    quack asked for by name and missing is a GolfError naming the key."""
    if setting not in ("auto", "quack"):
        return setting
    if setting == "auto" and (device.type != "cuda" or torch.cuda.get_device_capability(device)[0] != 9):
        return "pair"
    why = quack_missing()
    if why and setting == "quack":
        raise GolfError(f"train.fused_mlp = 'quack' but {why} (pip install -e '.[gpu]' on a Hopper or "
                        "Blackwell GPU machine); use 'pair' or 'gemm'")
    if why and announce:
        print(f"train: fused_mlp auto took pair, not quack: {why}; pip install -e '.[gpu]'", file=sys.stderr)
    return "pair" if why else "quack"


def install(model: torch.nn.Module, mlp: str = "pair", qk: bool = False, xsa_gate: bool = False,
            kv_repeat: bool = False) -> bool:
    """Give the model the fused head loss and MLP (golf/kernels; `train.fused_mlp` = mlp: the fused
    activation between cuBLAS matmuls, or the GEMM with it in the epilogue, golf's Triton GEMM or
    quack's, as resolve_mlp picked it) and, with `qk` (train.fused_qk), attention's fused q / k preparation,
    with `xsa_gate` (train.fused_xsa_gate) its fused XSA and sparse gate, with `kv_repeat` (and `qk`;
    train.fused_kv_repeat) its K and V repeated to the query heads; False when the model has no place for them
    (a model other than golf's GPT)."""
    if not hasattr(model, "use_fused_kernels"):
        return False
    from golf.kernels.leaky_relu2 import leaky_relu2
    from golf.kernels.mlp_gemm import mlp_leaky_relu2, mlp_leaky_relu2_quack
    from golf.kernels.qk_rope import qk_rope
    from golf.kernels.softcap_ce import softcap_ce_sum
    from golf.kernels.xsa_gate import xsa_gate as fused_xsa_gate

    whole_mlp = {"gemm": mlp_leaky_relu2, "quack": mlp_leaky_relu2_quack}
    attention = dict(qk=qk_rope if qk else None, xsa_gate=fused_xsa_gate if xsa_gate else None, kv_repeat=kv_repeat)
    if mlp == "pair":
        model.use_fused_kernels(softcap_ce_sum, leaky_relu2, **attention)
    elif mlp in whole_mlp:
        model.use_fused_kernels(softcap_ce_sum, None, whole_mlp[mlp], **attention)
    else:  # 'auto' included: resolve_mlp picks first
        raise ValueError(f"fused.install: MLP path {mlp!r} is not one of pair, gemm, quack")
    return True
