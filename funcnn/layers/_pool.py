"""Pooling (NCHW): max pooling (a Numba version and a plain-NumPy reference), average pooling over
windows and over the whole image.

``H' = (H - pool_height) // stride + 1``. Windows may overlap. In a tie the whole gradient goes to
the first maximum in row-major order inside the window (PyTorch's rule); a NaN wins its window.
Average pooling shares max pooling's checks and output size; overlapping windows' gradients add up.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypedDict

import numpy as np

from funcnn._checks import (
    check_ndim,
    cotangent,
    example_shape,
    float_array,
    int_at_least,
    like,
    no_params,
    output_size,
)
from funcnn.core import VJP, Layer, Shape, layer_factory
from funcnn.tree import PyTree


class PoolParam(TypedDict, total=False):
    """The keywords of :func:`max_pool`, :func:`max_pool_naive` and :func:`avg_pool`, the course's ``pool_param``
    dict, for a type checker to read ``max_pool(**pool_param)`` against."""

    pool_height: int
    pool_width: int
    stride: int


Forward = Callable[[np.ndarray, int, int, int, int, int], tuple[np.ndarray, Callable[[np.ndarray], np.ndarray]]]


def offset_dtype(ph: int, pw: int) -> np.dtype[Any]:
    """The smallest unsigned type that holds an offset inside a ``ph x pw`` window: what a max-pool
    keeps per output for its backward pass (uint8 up to 256 cells)."""
    return np.min_scalar_type(ph * pw - 1)


def _fast_forward(
    x: np.ndarray, ph: int, pw: int, stride: int, out_h: int, out_w: int
) -> tuple[np.ndarray, Callable[[np.ndarray], np.ndarray]]:
    from funcnn.kernels import pool as kernels

    argmax = np.empty((*x.shape[:2], out_h, out_w), dtype=offset_dtype(ph, pw))
    y, argmax = kernels.max_pool_forward(np.ascontiguousarray(x), argmax, ph, pw, stride, out_h, out_w)
    height, width = x.shape[2:]
    return y, lambda dy: kernels.max_pool_backward(np.ascontiguousarray(dy), argmax, height, width, pw, stride)


def _naive_forward(
    x: np.ndarray, ph: int, pw: int, stride: int, out_h: int, out_w: int
) -> tuple[np.ndarray, Callable[[np.ndarray], np.ndarray]]:
    n, c = x.shape[:2]
    shape, dtype = x.shape, x.dtype  # not x itself: the backward pass needs only the winners
    y = np.empty((n, c, out_h, out_w), dtype=x.dtype)
    winners = np.empty((n, c, out_h, out_w), dtype=offset_dtype(ph, pw))  # index inside the flattened window
    for i in range(out_h):
        for j in range(out_w):
            window = x[:, :, i * stride : i * stride + ph, j * stride : j * stride + pw].reshape(n, c, -1)
            winners[:, :, i, j] = np.argmax(window, axis=2)
            y[:, :, i, j] = np.take_along_axis(window, winners[:, :, i, j, None], axis=2)[..., 0]

    def backward(dy: np.ndarray) -> np.ndarray:
        dx = np.zeros(shape, dtype)
        for i in range(out_h):
            for j in range(out_w):
                at = winners[:, :, i, j].astype(np.intp)
                rows, cols = i * stride + at // pw, j * stride + at % pw
                np.add.at(dx, (np.arange(n)[:, None], np.arange(c)[None, :], rows, cols), dy[:, :, i, j])
        return dx

    return y, backward


def _empty_backward(x: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    """The backward of a pool on an empty batch: its empty gradient."""

    def backward(dy: np.ndarray) -> np.ndarray:
        return np.zeros_like(x)

    return backward


def _make_pool(
    pool_height: Any, pool_width: Any, stride: Any, forward: Forward, kind: str, naive: bool | None
) -> Layer:
    """A pool layer; ``naive`` (``None`` for average pools, which have one version) goes to hparams."""
    name = f"{kind}(pool_height={pool_height}, pool_width={pool_width}, stride={stride})"
    ph = int_at_least(name, "pool_height", pool_height, 1)
    pw = int_at_least(name, "pool_width", pool_width, 1)
    stride = int_at_least(name, "stride", stride, 1)

    def apply(params: PyTree, x: np.ndarray) -> tuple[np.ndarray, VJP]:
        no_params(name, params)
        x = float_array(name, "x", x)
        check_ndim(name, "x", x, 4, "(N, C, H, W)")
        out_h, out_w = output_size(name, x.shape, (ph, pw), stride, 0, "pool")
        if x.shape[0] == 0:  # an empty batch: an empty output, the same for every version of the kernels
            y, backward = np.zeros((*x.shape[:2], out_h, out_w), x.dtype), _empty_backward(x)
        else:
            y, backward = forward(x, ph, pw, stride, out_h, out_w)

        out = like(y)

        def vjp(dy: np.ndarray) -> tuple[PyTree, np.ndarray]:
            return (), backward(cotangent(name, dy, out))

        return y, vjp

    def out_shape(in_shape: Shape) -> Shape:
        shape = example_shape(name, in_shape, 3, "(C, H, W)")
        return shape[0], *output_size(name, shape, (ph, pw), stride, 0, "pool")

    hparams: dict[str, Any] = {"pool_height": ph, "pool_width": pw, "stride": stride}
    if naive is not None:
        hparams["naive"] = naive
    op = kind.removesuffix("_naive")
    return Layer(apply, name, param_keys=(), out_shape=out_shape, op=op, hparams=hparams)


@layer_factory
def max_pool(pool_height: int = 2, pool_width: int = 2, stride: int = 2) -> Layer:
    """A max-pool layer on Numba kernels; params ``()``.

    x: ``(N, C, H, W)``; y: ``(N, C, H', W')`` with ``H' = (H - pool_height) // stride + 1``.
    ``max_pool(**pool_param)`` takes the course's dict.

    Args:
        pool_height: the window's height.
        pool_width: the window's width.
        stride: the step between windows (windows overlap when it is smaller than the window).

    Returns:
        The layer: call it as ``layer(params, x) -> (y, vjp)``, with ``vjp(dy) -> (dparams, dx)``.

    >>> x = np.arange(16.0).reshape(1, 1, 4, 4)
    >>> y, vjp = fn.max_pool(pool_height=2, pool_width=2, stride=2)((), x)
    >>> y
    array([[[[ 5.,  7.],
             [13., 15.]]]])
    >>> vjp(np.ones_like(y))[1][0, 0]                         # each window's gradient goes to its maximum
    array([[0., 0., 0., 0.],
           [0., 1., 0., 1.],
           [0., 0., 0., 0.],
           [0., 1., 0., 1.]])
    >>> fn.max_pool(3, 3, 2).out_shape((8, 7, 7))             # H' = (7 - 3) // 2 + 1 = 3
    (8, 3, 3)
    """
    return _make_pool(pool_height, pool_width, stride, _fast_forward, "max_pool", False)


@layer_factory
def max_pool_naive(pool_height: int = 2, pool_width: int = 2, stride: int = 2) -> Layer:
    """The plain-NumPy reference for :func:`max_pool`: same contract, same results, ties included.

    Args:
        pool_height: as in :func:`max_pool`.
        pool_width: as in :func:`max_pool`.
        stride: as in :func:`max_pool`.

    Returns:
        The layer: call it as ``layer(params, x) -> (y, vjp)``, with ``vjp(dy) -> (dparams, dx)``.

    >>> y, vjp = fn.max_pool_naive(2, 2, 2)((), np.zeros((1, 1, 2, 2)))   # a tie: the first maximum wins
    >>> vjp(np.ones_like(y))[1][0, 0]
    array([[1., 0.],
           [0., 0.]])
    """
    return _make_pool(pool_height, pool_width, stride, _naive_forward, "max_pool_naive", True)


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

    shape, dtype = x.shape, x.dtype

    def backward(dy: np.ndarray) -> np.ndarray:
        dx = np.zeros(shape, dtype)
        share = dy / (ph * pw)
        for s in offsets:
            dx[s] += share
        return dx

    return y, backward


@layer_factory
def avg_pool(pool_height: int = 2, pool_width: int = 2, stride: int = 2) -> Layer:
    """An average-pool layer (plain NumPy); params ``()``.

    x: ``(N, C, H, W)``; y: ``(N, C, H', W')`` with ``H' = (H - pool_height) // stride + 1``, each
    the mean of its window. ``avg_pool(**pool_param)`` takes the course's dict.

    Args:
        pool_height: the window's height.
        pool_width: the window's width.
        stride: the step between windows.

    Returns:
        The layer: call it as ``layer(params, x) -> (y, vjp)``, with ``vjp(dy) -> (dparams, dx)``.

    >>> x = np.arange(16.0).reshape(1, 1, 4, 4)
    >>> y, vjp = fn.avg_pool(2, 2, 2)((), x)
    >>> y
    array([[[[ 2.5,  4.5],
             [10.5, 12.5]]]])
    >>> vjp(np.ones_like(y))[1][0, 0, 0]                      # each pixel gets 1 / (2 * 2) of its window's
    array([0.25, 0.25, 0.25, 0.25])
    """
    return _make_pool(pool_height, pool_width, stride, _avg_forward, "avg_pool", None)


def _global_avg_pool(params: PyTree, x: np.ndarray) -> tuple[np.ndarray, VJP]:
    """``y[n, c] = mean(x[n, c])``: x ``(N, C, H, W)`` -> y ``(N, C)``; params ``()``.

    Returns ``y`` and ``vjp(dy) -> ((), dx)``, where every pixel gets ``dy[n, c] / (H * W)``.

    >>> y, vjp = fn.global_avg_pool((), np.arange(8.0).reshape(1, 2, 2, 2))
    >>> y
    array([[1.5, 5.5]])
    >>> vjp(np.ones_like(y))[1][0, 0]
    array([[0.25, 0.25],
           [0.25, 0.25]])
    """
    name = "global_avg_pool"
    no_params(name, params)
    x = float_array(name, "x", x)
    check_ndim(name, "x", x, 4, "(N, C, H, W)")
    if x.shape[2] == 0 or x.shape[3] == 0:
        raise ValueError(f"{name}: x must have H, W >= 1, got shape {x.shape}")
    y, shape = x.mean(axis=(2, 3)), x.shape
    out = like(y)

    def vjp(dy: np.ndarray) -> tuple[PyTree, np.ndarray]:
        dy = cotangent(name, dy, out)
        share = dy / (shape[2] * shape[3])
        return (), np.broadcast_to(share[:, :, None, None], shape).copy()

    return y, vjp


def _global_avg_pool_shape(in_shape: Shape) -> Shape:
    c, height, width = example_shape("global_avg_pool", in_shape, 3, "(C, H, W)")
    if height == 0 or width == 0:
        raise ValueError(f"global_avg_pool: the input shape must have H, W >= 1, got {(c, height, width)}")
    return (c,)


global_avg_pool = Layer(
    _global_avg_pool, "global_avg_pool", param_keys=(), out_shape=_global_avg_pool_shape, op="global_avg_pool"
)
