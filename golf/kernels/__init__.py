"""Fused Triton kernels for training (issue 17): softcapped cross-entropy and the LeakyReLU² MLP.

Training only. The model never imports this package: the train loop installs the fused functions
into the model (golf/train), so eval, the bundled artifact runner and every later stage run the
eager PyTorch path without Triton. Importing `golf.kernels` itself needs neither torch nor Triton;
`softcap_ce` and `leaky_relu2` need both.
"""

from __future__ import annotations

import importlib.util


def triton_importable() -> bool:
    """True when the `triton` package is installed (found, not imported: importing it is slow)."""
    return importlib.util.find_spec("triton") is not None
