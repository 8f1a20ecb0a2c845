"""2-D convolution (cross-correlation, NCHW): the layer, and a plain-NumPy reference beside the fast
version (``_conv_fast.py``: im2col or Winograd products by BLAS, chunk by chunk).

``H' = (H + 2 * pad - HH) // stride + 1`` and ``W' = (W + 2 * pad - WW) // stride + 1``.
"""

from __future__ import annotations

from typing import Any, TypedDict

import numpy as np

from funcnn._checks import (
    check_ndim,
    cotangent,
    dict_params,
    example_shape,
    float_array,
    int_at_least,
    like,
    output_size,
    same_dtype,
)
from funcnn.core import VJP, Init, Layer, OutShape, Shape, WeightScale, layer_factory
from funcnn.layers._conv_fast import Backward, Forward, fast_forward
from funcnn.layers._handover import sole, take, takes_handover
from funcnn.layers._weights import weight_std, weights_and_bias
from funcnn.tree import PyTree


class ConvParam(TypedDict, total=False):
    """The keywords of :func:`conv` and :func:`conv_naive`, the course's ``conv_param`` dict: a type checker
    reads ``conv(**conv_param)`` and ``conv_relu(**conv_param)`` against them (a misspelt key is an error)."""

    stride: int
    pad: int
    filters: int | None
    kernel_size: int | tuple[int, int] | None


def _naive_forward(
    x: np.ndarray, w: np.ndarray, b: np.ndarray, stride: int, pad: int, out_h: int, out_w: int
) -> tuple[np.ndarray, Backward]:
    hh, ww = w.shape[2:]
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    y = np.empty((x.shape[0], w.shape[0], out_h, out_w), dtype=x.dtype)
    for i in range(out_h):
        for j in range(out_w):
            window = xp[:, :, i * stride : i * stride + hh, j * stride : j * stride + ww]
            y[:, :, i, j] = np.tensordot(window, w, axes=([1, 2, 3], [1, 2, 3])) + b

    def backward(
        dy: np.ndarray, need_dx: bool = True, into: np.ndarray | None = None
    ) -> tuple[np.ndarray | None, np.ndarray, np.ndarray]:
        dxp = np.zeros_like(xp)
        dw = np.zeros_like(w)
        for i in range(out_h):
            for j in range(out_w):
                rows, cols = slice(i * stride, i * stride + hh), slice(j * stride, j * stride + ww)
                dxp[:, :, rows, cols] += np.tensordot(dy[:, :, i, j], w, axes=([1], [0]))
                dw += np.tensordot(dy[:, :, i, j], xp[:, :, rows, cols], axes=([0], [0]))
        dx = dxp[:, :, pad : pad + x.shape[2], pad : pad + x.shape[3]]
        return dx.copy(), dw, dy.sum(axis=(0, 2, 3))

    return y, backward


def _empty_backward(x: np.ndarray, w: np.ndarray, b: np.ndarray) -> Backward:
    """The backward of a conv on an empty batch: no example, so zero gradients."""

    def backward(
        dy: np.ndarray, need_dx: bool = True, into: np.ndarray | None = None
    ) -> tuple[np.ndarray | None, np.ndarray, np.ndarray]:
        return (np.zeros_like(x) if need_dx else None), np.zeros_like(w), np.zeros_like(b)

    return backward


def _make_conv(stride: Any, pad: Any, filters: Any, kernel_size: Any, forward: Forward, naive: bool) -> Layer:
    given = "" if filters is None else f", filters={filters}, kernel_size={kernel_size}"
    name = f"{'conv_naive' if naive else 'conv'}(stride={stride}, pad={pad}{given})"
    stride = int_at_least(name, "stride", stride, 1)
    pad = int_at_least(name, "pad", pad, 0)
    sizes = None if filters is None and kernel_size is None else _filter_sizes(name, filters, kernel_size)

    def apply(params: PyTree, x: np.ndarray) -> tuple[np.ndarray, VJP]:
        w, b = dict_params(name, params, ("w", "b")).values()
        x = float_array(name, "x", x)
        check_ndim(name, "x", x, 4, "(N, C, H, W)")
        check_ndim(name, "params['w']", w, 4, "(F, C, HH, WW)")
        if sizes is not None and (w.shape[0], *w.shape[2:]) != sizes:
            raise ValueError(
                f"{name}: params['w'] has shape {w.shape}, but the layer was declared with filters={sizes[0]}, "
                f"kernel_size={sizes[1:]} (w must be ({sizes[0]}, C, {sizes[1]}, {sizes[2]}))"
            )
        if x.shape[1] != w.shape[1]:
            raise ValueError(
                f"{name}: x has {x.shape[1]} channels (shape {x.shape}) but params['w'] expects {w.shape[1]} "
                f"(shape {w.shape})"
            )
        if b.shape != (w.shape[0],):
            raise ValueError(
                f"{name}: params['b'] must have shape ({w.shape[0]},) to match params['w'] {w.shape}, got {b.shape}"
            )
        same_dtype(name, x=x, w=w, b=b)
        out_h, out_w = output_size(name, x.shape, w.shape[2:], stride, pad, "kernel")
        if 0 in w.shape[:2]:
            raise ValueError(f"{name}: x must have C >= 1 channels and params['w'] F >= 1 filters, got x of "
                             f"shape {x.shape} and params['w'] of shape {w.shape}")  # fmt: skip
        if x.shape[0] == 0:  # an empty batch: the empty output conv_naive gives, on every path
            y, backward = np.zeros((0, w.shape[0], out_h, out_w), x.dtype), _empty_backward(x, w, b)
        else:
            y, backward = forward(x, w, b, stride, pad, out_h, out_w)
        out = like(y)  # the backward pass needs x and w, not y

        @takes_handover
        def vjp(
            dy: Any, need_dx: bool = True, handed: bool = False, last: bool = False
        ) -> tuple[PyTree, np.ndarray | None]:
            dy = cotangent(name, take(dy, handed), out)
            into = dy if handed and sole(dy) else None  # a dy nobody else sees may take dx
            dx, dw, db = backward(dy, need_dx, into)
            return {"w": dw, "b": db}, dx

        return y, vjp

    def out_shape(in_shape: Shape) -> Shape:
        shape = example_shape(name, in_shape, 3, "(C, H, W)")
        if sizes is None:
            raise ValueError(
                f"{name}: the output shape for input shape {tuple(in_shape)} needs the filters and the kernel size: "
                "give filters=F, kernel_size=K"
            )
        return sizes[0], *output_size(name, shape, sizes[1:], stride, pad, "kernel")

    hparams = {
        "stride": stride,
        "pad": pad,
        "filters": None if sizes is None else sizes[0],
        "kernel_size": None if sizes is None else sizes[1:],
        "naive": naive,
    }
    init = _conv_init(name, sizes, out_shape)
    return Layer(apply, name, param_keys=("w", "b"), init=init, out_shape=out_shape, op="conv", hparams=hparams)


def _conv_init(name: str, sizes: tuple[int, int, int] | None, out_shape: OutShape) -> Init | None:
    """He or fixed-scale weights ``(F, C, HH, WW)`` and zero biases ``(F,)``; ``None`` without the sizes."""
    if sizes is None:
        return None
    f, hh, ww = sizes

    def init(
        rng: np.random.Generator, shape: Shape, dtype: np.dtype, weight_scale: WeightScale
    ) -> tuple[Shape, PyTree]:
        out = out_shape(shape)
        c = shape[0]
        return out, weights_and_bias(rng, (f, c, hh, ww), f, dtype, weight_std(name, weight_scale, c * hh * ww))

    return init


def _filter_sizes(name: str, filters: Any, kernel_size: Any) -> tuple[int, int, int]:
    """``(F, HH, WW)`` from ``filters`` and ``kernel_size`` (one int for both sides, or a pair)."""
    f = int_at_least(name, "filters", filters, 1)
    if isinstance(kernel_size, (int, np.integer)):
        kernel_size = (kernel_size, kernel_size)
    if not isinstance(kernel_size, (tuple, list)) or len(kernel_size) != 2:
        raise TypeError(f"{name}: kernel_size must be an int or a pair (HH, WW), got {kernel_size!r}")
    hh, ww = kernel_size
    return f, int_at_least(name, "kernel_size", hh, 1), int_at_least(name, "kernel_size", ww, 1)


@layer_factory
def conv(
    stride: int = 1, pad: int = 0, filters: int | None = None, kernel_size: int | tuple[int, int] | None = None
) -> Layer:
    """A convolution layer on Numba/BLAS kernels (im2col, BLAS matrix products, col2im), chunk by chunk.

    params: ``{"w": (F, C, HH, WW), "b": (F,)}``; x: ``(N, C, H, W)``; y: ``(N, F, H', W')`` with
    ``H' = (H + 2 * pad - HH) // stride + 1``. ``conv(**conv_param)`` takes the course's dict.
    ``filters`` (F) and ``kernel_size`` (HH, WW, or one int for both) are needed only by
    :func:`funcnn.init_params`.

    Args:
        stride: the step between windows, an int ``>= 1``.
        pad: zeros added on each side of H and W, an int ``>= 0``.
        filters: F, the number of filters (only for :func:`funcnn.init_params`).
        kernel_size: HH and WW, one int for both or a pair (only for :func:`funcnn.init_params`).

    Returns:
        The layer: call it as ``layer(params, x) -> (y, vjp)``, with ``vjp(dy) -> (dparams, dx)``.

    >>> x = np.ones((1, 1, 3, 3))                             # N=1, C=1, H=W=3
    >>> params = {"w": np.ones((2, 1, 2, 2)), "b": np.array([0.0, 1.0])}   # F=2 filters of 2x2
    >>> y, vjp = fn.conv(stride=1, pad=0)(params, x)
    >>> y.shape                                               # H' = (3 + 2*0 - 2) // 1 + 1 = 2
    (1, 2, 2, 2)
    >>> y[0, 1]
    array([[5., 5.],
           [5., 5.]])
    >>> dparams, dx = vjp(np.ones_like(y))
    >>> dparams["b"]                                          # 4 output pixels per filter
    array([4., 4.])
    >>> dx[0, 0]                                              # the windows covering each pixel, times 2 filters
    array([[2., 4., 2.],
           [4., 8., 4.],
           [2., 4., 2.]])
    >>> fn.conv(stride=2, pad=1, filters=8, kernel_size=3).out_shape((3, 32, 32))
    (8, 16, 16)
    """
    return _make_conv(stride, pad, filters, kernel_size, fast_forward, False)


@layer_factory
def conv_naive(
    stride: int = 1, pad: int = 0, filters: int | None = None, kernel_size: int | tuple[int, int] | None = None
) -> Layer:
    """The plain-NumPy reference for :func:`conv`: same contract, same results, a loop per output pixel.

    Args:
        stride: as in :func:`conv`.
        pad: as in :func:`conv`.
        filters: as in :func:`conv`.
        kernel_size: as in :func:`conv`.

    Returns:
        The layer: call it as ``layer(params, x) -> (y, vjp)``, with ``vjp(dy) -> (dparams, dx)``.

    >>> rng = np.random.default_rng(0)
    >>> x, params = rng.standard_normal((2, 3, 5, 5)), {"w": rng.standard_normal((4, 3, 3, 3)), "b": np.zeros(4)}
    >>> y, _ = fn.conv_naive(pad=1)(params, x)
    >>> y.shape, np.allclose(y, fn.conv(pad=1)(params, x)[0])
    ((2, 4, 5, 5), True)
    """
    return _make_conv(stride, pad, filters, kernel_size, _naive_forward, True)
