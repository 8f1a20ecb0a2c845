"""2x2-style max pooling (NCHW): a Numba version and a plain-NumPy reference.

``H' = (H - pool_height) // stride + 1``. Windows may overlap. In a tie the whole gradient goes to
the first maximum in row-major order inside the window (PyTorch's rule); a NaN wins its window.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from funcnn._checks import check_ndim, cotangent, float_array, int_at_least, no_params, output_size
from funcnn.layer import VJP, Layer
from funcnn.tree import PyTree

Forward = Callable[[np.ndarray, int, int, int, int, int], tuple[np.ndarray, Callable[[np.ndarray], np.ndarray]]]


def _fast_forward(x, ph, pw, stride, out_h, out_w):
    from funcnn.kernels import pool as kernels

    y, argmax = kernels.max_pool_forward(np.ascontiguousarray(x), ph, pw, stride, out_h, out_w)
    height, width = x.shape[2:]
    return y, lambda dy: kernels.max_pool_backward(np.ascontiguousarray(dy), argmax, height, width)


def _naive_forward(x, ph, pw, stride, out_h, out_w):
    n, c = x.shape[:2]
    y = np.empty((n, c, out_h, out_w), dtype=x.dtype)
    winners = np.empty((n, c, out_h, out_w), dtype=np.intp)  # index inside the flattened window
    for i in range(out_h):
        for j in range(out_w):
            window = x[:, :, i * stride : i * stride + ph, j * stride : j * stride + pw].reshape(n, c, -1)
            winners[:, :, i, j] = np.argmax(window, axis=2)
            y[:, :, i, j] = np.take_along_axis(window, winners[:, :, i, j, None], axis=2)[..., 0]

    def backward(dy):
        dx = np.zeros_like(x)
        for i in range(out_h):
            for j in range(out_w):
                rows = i * stride + winners[:, :, i, j] // pw
                cols = j * stride + winners[:, :, i, j] % pw
                np.add.at(dx, (np.arange(n)[:, None], np.arange(c)[None, :], rows, cols), dy[:, :, i, j])
        return dx

    return y, backward


def _make_pool(pool_height: Any, pool_width: Any, stride: Any, forward: Forward, kind: str) -> Layer:
    name = f"{kind}(pool_height={pool_height}, pool_width={pool_width}, stride={stride})"
    ph = int_at_least(name, "pool_height", pool_height, 1)
    pw = int_at_least(name, "pool_width", pool_width, 1)
    stride = int_at_least(name, "stride", stride, 1)

    def apply(params: PyTree, x: np.ndarray) -> tuple[np.ndarray, VJP]:
        no_params(name, params)
        x = float_array(name, "x", x)
        check_ndim(name, "x", x, 4, "(N, C, H, W)")
        out_h = output_size(name, x.shape[2], ph, stride, 0, "pool height")
        out_w = output_size(name, x.shape[3], pw, stride, 0, "pool width")
        y, backward = forward(x, ph, pw, stride, out_h, out_w)

        def vjp(dy: np.ndarray) -> tuple[PyTree, np.ndarray]:
            return (), backward(cotangent(name, dy, y))

        return y, vjp

    return Layer(apply, name, ())


def max_pool(pool_height: int = 2, pool_width: int = 2, stride: int = 2) -> Layer:
    """A max-pool layer on Numba kernels; params ``()``.

    x: ``(N, C, H, W)``; y: ``(N, C, H', W')`` with ``H' = (H - pool_height) // stride + 1``.
    ``max_pool(**pool_param)`` takes the course's dict.
    """
    return _make_pool(pool_height, pool_width, stride, _fast_forward, "max_pool")


def max_pool_naive(pool_height: int = 2, pool_width: int = 2, stride: int = 2) -> Layer:
    """The plain-NumPy reference for :func:`max_pool`: same contract, same results, ties included."""
    return _make_pool(pool_height, pool_width, stride, _naive_forward, "max_pool_naive")
