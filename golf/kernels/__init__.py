"""GPU kernels for training (issue 17), each guarded so a CPU machine imports and tests them.

softcap_ce, leaky_relu2 and mlp_gemm: fused Triton kernels (softcapped cross-entropy, the LeakyReLU²
MLP activation, the MLP's up-projection GEMM with that activation in its epilogue); fa4: FlashAttention 4 as torch.library custom ops (dense and varlen), installed as
the "fa4" attention backend. Training only: the model never imports this package (the train loop
installs the fused functions and registers the backend, golf/train), so eval, the bundled artifact
runner and every later stage run without Triton or FA4. Importing `golf.kernels` itself needs
neither torch nor Triton.
"""

from __future__ import annotations

import importlib.util


def triton_importable() -> bool:
    """True when the `triton` package is installed (found, not imported: importing it is slow)."""
    return importlib.util.find_spec("triton") is not None
