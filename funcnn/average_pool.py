"""Average pooling (NCHW): over windows, like :func:`funcnn.max_pool`, and over the whole image.

``avg_pool`` shares max_pool's checks, output size ``H' = (H - pool_height) // stride + 1`` and
error messages. Windows may overlap; their gradients add up.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from funcnn._checks import check_ndim, cotangent, float_array, no_params
from funcnn.layer import VJP, Layer
from funcnn.pool import _make_pool
from funcnn.tree import PyTree


def _offsets(ph: int, pw: int, stride: int, out_h: int, out_w: int) -> list[tuple[slice, ...]]:
    """For each offset (a, b) inside the window, the strided slice of x holding that element of
    every window: pooling takes ph * pw NumPy operations, whatever the size of the image."""
    rows = [slice(a, a + stride * (out_h - 1) + 1, stride) for a in range(ph)]
    cols = [slice(b, b + stride * (out_w - 1) + 1, stride) for b in range(pw)]
    return [(slice(None), slice(None), r, c) for r in rows for c in cols]


def _avg_forward(
    x: np.ndarray, ph: int, pw: int, stride: int, out_h: int, out_w: int
) -> tuple[np.ndarray, Callable[[np.ndarray], np.ndarray]]:
    offsets = _offsets(ph, pw, stride, out_h, out_w)
    y = np.zeros((*x.shape[:2], out_h, out_w), dtype=x.dtype)
    for s in offsets:
        y += x[s]
    y /= ph * pw

    def backward(dy: np.ndarray) -> np.ndarray:
        dx = np.zeros_like(x)
        share = dy / (ph * pw)
        for s in offsets:
            dx[s] += share
        return dx

    return y, backward


def avg_pool(pool_height: int = 2, pool_width: int = 2, stride: int = 2) -> Layer:
    """An average-pool layer (plain NumPy); params ``()``.

    x: ``(N, C, H, W)``; y: ``(N, C, H', W')`` with ``H' = (H - pool_height) // stride + 1``, each
    the mean of its window. ``avg_pool(**pool_param)`` takes the course's dict.
    """
    return _make_pool(pool_height, pool_width, stride, _avg_forward, "avg_pool")


def _global_avg_pool(params: PyTree, x: np.ndarray) -> tuple[np.ndarray, VJP]:
    """``y[n, c] = mean(x[n, c])``: x ``(N, C, H, W)`` -> y ``(N, C)``; params ``()``.

    Returns ``y`` and ``vjp(dy) -> ((), dx)``, where every pixel gets ``dy[n, c] / (H * W)``.
    """
    name = "global_avg_pool"
    no_params(name, params)
    x = float_array(name, "x", x)
    check_ndim(name, "x", x, 4, "(N, C, H, W)")
    if x.shape[2] == 0 or x.shape[3] == 0:
        raise ValueError(f"{name}: x must have H, W >= 1, got shape {x.shape}")
    y = x.mean(axis=(2, 3))

    def vjp(dy: np.ndarray) -> tuple[PyTree, np.ndarray]:
        dy = cotangent(name, dy, y)
        share = dy / (x.shape[2] * x.shape[3])
        return (), np.broadcast_to(share[:, :, None, None], x.shape).copy()

    return y, vjp


global_avg_pool = Layer(_global_avg_pool, "global_avg_pool", ())
