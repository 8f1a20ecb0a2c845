"""ReLU's forward and backward as single passes over contiguous arrays.

NumPy's ``np.where(mask, dy, 0)`` took 6 ms on a (50, 32, 32, 32) float32 array here (its scalar
broadcast takes a slow path) and ``np.maximum(x, 0)`` 0.8 ms; these loops take 0.6 and 0.2 ms.
"""

from __future__ import annotations

import numpy as np

from funcnn.kernels._jit import jit


@jit()
def relu_forward(x: np.ndarray) -> np.ndarray:  # pragma: no cover - compiled
    """``max(x, 0)`` of a contiguous array; NaN stays NaN."""
    y = np.empty_like(x)
    src, dst, zero = x.reshape(-1), y.reshape(-1), x.dtype.type(0)
    for i in range(src.size):
        v = src[i]
        dst[i] = zero if v <= 0 else v
    return y


@jit()
def relu_backward(y: np.ndarray, dy: np.ndarray) -> np.ndarray:  # pragma: no cover - compiled
    """``dy`` where ``y > 0``, else 0 (so ``relu'(0) = 0`` and a NaN input passes no gradient)."""
    dx = np.empty_like(dy)
    mask, src, dst, zero = y.reshape(-1), dy.reshape(-1), dx.reshape(-1), dy.dtype.type(0)
    for i in range(src.size):
        dst[i] = src[i] if mask[i] > 0 else zero
    return dx
