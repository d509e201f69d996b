"""Block Walsh–Hadamard rotation of a matrix's input dimension, applied before quantization.

With R = diag(signs) · blockdiag(H_b / sqrt(b)) (n x n, orthogonal), y = W x = (W R)(Rᵀ x): quantize
W' = W R against H' = Rᵀ H R (the Hessian of the rotated inputs Rᵀ x), and undo with W ≈ Q' Rᵀ.
The rotation spreads each row's outliers over b columns, so the std clip wastes less range
(QuIP#, QuaRot). b is the largest power of two dividing n (n = 80 -> 16, n = 512 -> 512); an
odd n has b = 1 and is left as it is. The ±1 signs come from a fixed integer hash of the column
index, so no seed or RNG state has to be stored: the plan entry records only b.
"""

from __future__ import annotations

import torch

from golf.artifact.dequant import hadamard_matrix, signs


def block_size(n: int) -> int:
    """The Hadamard block for an input width n: its largest power-of-two divisor (1 = no rotation)."""
    return n & -n if n > 0 else 1


def rotate(w: torch.Tensor, b: int) -> torch.Tensor:
    """W R along the last dim: signs, then H_b on each block of b columns (inverse: golf.artifact.dequant.unrotate)."""
    n = w.shape[-1]
    if b <= 1:
        return w
    x = (w.float() * signs(n).to(w.device)).reshape(*w.shape[:-1], n // b, b)
    return (x @ hadamard_matrix(b).to(w.device)).reshape(w.shape)


def rotate_hessian(H: torch.Tensor, b: int) -> torch.Tensor:
    """Rᵀ H R, the Hessian of the rotated inputs (H symmetric)."""
    if b <= 1:
        return H
    return rotate(rotate(H.float(), b).T.contiguous(), b)
