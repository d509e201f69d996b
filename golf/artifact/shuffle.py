"""Byte shuffle with stride N: all bytes at offset 0 mod N, then 1 mod N, ... (any length).

fp16 values put their sign/exponent bytes in one run and their mantissa bytes in another, so the
coder sees two sources with very different statistics instead of one interleaved mixture.
"""

from __future__ import annotations

import numpy as np


def shuffle(data: bytes, stride: int) -> bytes:
    if stride <= 1 or len(data) <= stride:
        return bytes(data)
    a = np.frombuffer(data, dtype=np.uint8)
    return b"".join(a[i::stride].tobytes() for i in range(stride))


def unshuffle(data: bytes, stride: int) -> bytes:
    if stride <= 1 or len(data) <= stride:
        return bytes(data)
    a = np.frombuffer(data, dtype=np.uint8)
    out = np.empty_like(a)
    n, pos = len(a), 0
    for i in range(stride):
        k = (n - i + stride - 1) // stride  # how many offsets i mod stride exist
        out[i::stride] = a[pos:pos + k]
        pos += k
    return out.tobytes()
