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
    no_params(NAME, params)
    x = float_array(NAME, "x", x)
    y = np.maximum(x, 0)
    positive = x > 0

    def vjp(dy: np.ndarray) -> tuple[PyTree, np.ndarray]:
        dy = cotangent(NAME, dy, y)
        return (), np.where(positive, dy, dy.dtype.type(0))

    return y, vjp


relu = Layer(_relu, NAME, ())
