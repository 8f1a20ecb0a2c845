"""Rectified linear unit."""

from __future__ import annotations

import numpy as np

from funcnn._checks import cotangent, float_array, no_params
from funcnn.layer import VJP, Layer
from funcnn.tree import PyTree

NAME = "relu"


def _relu(params: PyTree, x: np.ndarray) -> tuple[np.ndarray, VJP]:
    """``y = max(x, 0)`` elementwise, any shape; params ``()``. ``relu'(0) = 0``; NaN stays NaN.

    Returns ``y`` (shape of ``x``) and ``vjp(dy) -> ((), dx)``.
    """
    from funcnn.kernels import elementwise as kernels  # Numba is imported on the first fast call

    no_params(NAME, params)
    x = float_array(NAME, "x", x)
    y = kernels.relu_forward(np.asarray(x, order="C"))

    def vjp(dy: np.ndarray) -> tuple[PyTree, np.ndarray]:
        dy = cotangent(NAME, dy, y)
        return (), kernels.relu_backward(y, np.asarray(dy, order="C"))

    return y, vjp


relu = Layer(_relu, NAME, ())
