"""2-D convolution (cross-correlation, NCHW): a Numba/BLAS version and a plain-NumPy reference.

``H' = (H + 2 * pad - HH) // stride + 1`` and ``W' = (W + 2 * pad - WW) // stride + 1``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from funcnn.core import VJP, Init, Layer, OutShape, Shape, WeightScale, skips_dx
from funcnn.layers._weights import weight_std, weights_and_bias
from funcnn.tree import PyTree
from funcnn.validation import (
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

# backward(dy, need_dx) -> (dx or None, dw, db); a forward returns it with y, closing over what it needs.
Backward = Callable[[np.ndarray, bool], tuple["np.ndarray | None", np.ndarray, np.ndarray]]
Forward = Callable[[np.ndarray, np.ndarray, np.ndarray, int, int, int, int], tuple[np.ndarray, Backward]]


# Images per chunk: their columns (or Winograd transforms) take at most about this many bytes (one
# image may take more), so they stay in the caches from the Numba kernel to the products that read
# them. Measured on 2 cores (fwd+bwd, float32, 1 and 2 threads): 4 MiB was within 5 % of the best
# of 1-32 MiB on every shape; smaller chunks make many small BLAS calls whose threads keep waking,
# larger ones leave the caches.
CHUNK_BYTES = 4 << 20
# Winograd F(2x2, 3x3) serves 3x3 stride-1 convs with at least this many input and output channels
# (the product's inner size: with fewer, BLAS is far from its peak and the transforms dominate).
WINOGRAD_MIN_CHANNELS = 16


def _chunks(n: int, bytes_per_image: int) -> list[slice]:
    step = max(1, min(n, CHUNK_BYTES // max(1, bytes_per_image)))
    return [slice(start, min(start + step, n)) for start in range(0, n, step)]


def _uses_winograd(w: np.ndarray, stride: int, pad: int) -> bool:
    f, c, hh, ww = w.shape
    return hh == ww == 3 and stride == 1 and pad <= 2 and min(f, c) >= WINOGRAD_MIN_CHANNELS


Rows = Callable[[np.ndarray, int, int], np.ndarray]


def _winograd_plan(
    n: int, c: int, f: int, out_h: int, out_w: int, dtype: np.dtype
) -> tuple[int, int, list[slice], Callable[[], tuple[np.ndarray, np.ndarray]], Rows]:
    """Tiles of a Winograd conv, its chunks of images, ``buffers()`` that makes two flat buffers
    ``(16 * C * ..., 16 * F * ...)`` for the largest chunk (one pair a thread), and ``rows(buffer, height,
    count)`` that lays a chunk out in one of them."""
    from funcnn.kernels.winograd import ROW_PAD

    tiles_h, tiles_w = (out_h + 1) // 2, (out_w + 1) // 2
    tiles = tiles_h * tiles_w
    chunks = _chunks(n, 16 * max(c, f) * tiles * dtype.itemsize)
    most = max(part.stop - part.start for part in chunks) * tiles + ROW_PAD

    def buffers() -> tuple[np.ndarray, np.ndarray]:
        return np.empty(16 * c * most, dtype), np.empty(16 * f * most, dtype)

    def rows(buffer: np.ndarray, height: int, count: int) -> np.ndarray:
        # (16, height, count + ROW_PAD): rows padded off power-of-two lengths (see kernels/winograd.py)
        return buffer[: 16 * height * (count + ROW_PAD)].reshape(16, height, count + ROW_PAD)

    return tiles_h, tiles_w, chunks, buffers, rows


def _winograd_conv(x: np.ndarray, w: np.ndarray, b: np.ndarray, pad: int, out_h: int, out_w: int) -> np.ndarray:
    """``y`` of a 3x3 stride-1 conv by Winograd F(2x2, 3x3), chunk by chunk (see funcnn.kernels.winograd)."""
    from funcnn.kernels import winograd
    from funcnn.kernels.threads import map_groups

    n, c, f = x.shape[0], x.shape[1], w.shape[0]
    tiles_h, tiles_w, chunks, buffers, rows = _winograd_plan(n, c, f, out_h, out_w, x.dtype)
    u = winograd.filter_transform(w)
    y = np.empty((n, f, out_h, out_w), x.dtype)

    def group(parts: Sequence[slice]) -> list[None]:
        v_buffer, m_buffer = buffers()
        for part in parts:
            count = (part.stop - part.start) * tiles_h * tiles_w
            v, m = rows(v_buffer, c, count), rows(m_buffer, f, count)
            winograd.input_transform(x[part], pad, tiles_h, tiles_w, v)
            np.matmul(u, v[:, :, :count], out=m[:, :, :count])
            winograd.output_transform(m, b, tiles_h, tiles_w, y[part])
        return []

    map_groups(group, chunks)
    return y


def _winograd_dw(x: np.ndarray, dy: np.ndarray, pad: int, f: int) -> np.ndarray:
    """``dw`` ``(F, C, 3, 3)`` of a 3x3 stride-1 conv by Winograd: ``dU[k] = dM[k] V[k]^T`` summed over
    tiles, with ``dM = A dY A^T`` per tile, then ``dw = G^T dU G``."""
    from funcnn.kernels import winograd
    from funcnn.kernels.threads import map_groups

    n, c = x.shape[:2]
    tiles_h, tiles_w, chunks, buffers, rows = _winograd_plan(n, c, f, dy.shape[2], dy.shape[3], x.dtype)

    def group(parts: Sequence[slice]) -> list[np.ndarray]:
        (v_buffer, m_buffer), products = buffers(), []
        for part in parts:
            count = (part.stop - part.start) * tiles_h * tiles_w
            v, dm = rows(v_buffer, c, count), rows(m_buffer, f, count)
            winograd.input_transform(x[part], pad, tiles_h, tiles_w, v)
            winograd.output_gradient(dy[part], tiles_h, tiles_w, dm)
            # dU transposed: BLAS's faster layout
            products.append(np.matmul(v[:, :, :count], dm[:, :, :count].transpose(0, 2, 1)))
        return products

    du_t = np.zeros((16, c, f), x.dtype)
    for product in map_groups(group, chunks):  # summed in chunk order, whatever the threads
        du_t += product
    dw: np.ndarray = winograd.filter_gradient(np.ascontiguousarray(du_t.transpose(0, 2, 1)))
    return dw


def _fast_forward(
    x: np.ndarray, w: np.ndarray, b: np.ndarray, stride: int, pad: int, out_h: int, out_w: int
) -> tuple[np.ndarray, Backward]:
    from funcnn.kernels import conv as kernels
    from funcnn.kernels.threads import map_groups

    x = np.ascontiguousarray(x)
    n, c, f, (hh, ww) = x.shape[0], x.shape[1], w.shape[0], w.shape[2:]
    w2 = np.ascontiguousarray(w.reshape(f, -1))
    k, plane = w2.shape[1], out_h * out_w
    chunks = _chunks(n, k * plane * x.itemsize)
    step = chunks[0].stop
    pointwise = hh == ww == stride == 1 and pad == 0  # a 1x1 conv's columns are x itself
    winograd = _uses_winograd(w, stride, pad)

    def columns(buffer: np.ndarray, part: slice) -> np.ndarray:
        if pointwise:
            return x[part].reshape(-1, k, plane)
        cols = buffer[: k * (part.stop - part.start) * plane].reshape(-1, k, plane)
        filled: np.ndarray = kernels.im2col(x[part], hh, ww, stride, pad, out_h, out_w, cols)
        return filled

    def forward_group(parts: Sequence[slice]) -> list[None]:
        # Buffers are made per call and thread: a live vjp never shares one with a later call.
        buffer = np.empty(0 if pointwise else k * step * plane, x.dtype)
        for part in parts:
            y_part = np.matmul(w2, columns(buffer, part), out=y[part])
            y_part += b[:, None]
        return []

    if winograd:
        y = _winograd_conv(x, w, b, pad, out_h, out_w).reshape(n, f, plane)
    else:
        y = np.empty((n, f, plane), x.dtype)
        map_groups(forward_group, chunks)

    def backward(dy: np.ndarray, need_dx: bool = True) -> tuple[np.ndarray | None, np.ndarray, np.ndarray]:
        dy = np.ascontiguousarray(dy).reshape(n, f, plane)
        db = dy.sum(axis=(0, 2))
        if winograd:  # dx is the 3x3 conv of dy with the filters flipped and transposed, padded 2 - pad
            dy4 = dy.reshape(n, f, out_h, out_w)
            flipped = np.ascontiguousarray(w[:, :, ::-1, ::-1].transpose(1, 0, 2, 3))
            height, width = x.shape[2:]
            dx = _winograd_conv(dy4, flipped, np.zeros(c, x.dtype), 2 - pad, height, width) if need_dx else None
            return dx, _winograd_dw(x, dy4, pad, f), db
        dx = np.empty_like(x) if need_dx else None

        def backward_group(parts: Sequence[slice]) -> list[np.ndarray]:
            # Each chunk's columns are recomputed from x, which keeps only x alive and costs little next
            # to the products: the columns are still in the caches when they are read.
            buffer = np.empty(0 if pointwise else k * step * plane, x.dtype)
            dw_parts, sums = np.empty((step, k, f), x.dtype), []
            for part in parts:
                cols, m = columns(buffer, part), part.stop - part.start
                sums.append(np.matmul(cols, dy[part].transpose(0, 2, 1), out=dw_parts[:m]).sum(axis=0))
                if dx is not None:
                    if pointwise:
                        np.matmul(w2.T, dy[part], out=dx[part].reshape(m, k, plane))
                    else:  # the columns are used up: their buffer takes their gradient
                        dcols = np.matmul(w2.T, dy[part], out=cols)
                        kernels.col2im(dcols, hh, ww, stride, pad, out_h, out_w, dx[part])
            return sums

        dw_t = np.zeros((k, f), x.dtype)  # dw transposed: OpenBLAS runs cols @ dy^T faster than dy @ cols^T
        for chunk_sum in map_groups(backward_group, chunks):  # in chunk order, whatever the threads
            dw_t += chunk_sum
        return dx, np.ascontiguousarray(dw_t.T).reshape(w.shape), db

    return y.reshape(n, f, out_h, out_w), backward


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

    def backward(dy: np.ndarray, need_dx: bool = True) -> tuple[np.ndarray | None, np.ndarray, np.ndarray]:
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

    def backward(dy: np.ndarray, need_dx: bool = True) -> tuple[np.ndarray | None, np.ndarray, np.ndarray]:
        return (np.zeros_like(x) if need_dx else None), np.zeros_like(w), np.zeros_like(b)

    return backward


def _make_conv(
    stride: Any, pad: Any, filters: Any, kernel_size: Any, forward: Forward, naive: bool, doc: str | None
) -> Layer:
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

        @skips_dx
        def vjp(dy: np.ndarray, need_dx: bool = True) -> tuple[PyTree, np.ndarray | None]:
            dx, dw, db = backward(cotangent(name, dy, out), need_dx)
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
    return Layer(apply, name, ("w", "b"), init, out_shape=out_shape, op="conv", hparams=hparams, doc=doc)


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


def conv(
    stride: int = 1, pad: int = 0, filters: int | None = None, kernel_size: int | tuple[int, int] | None = None
) -> Layer:
    """A convolution layer on Numba/BLAS kernels (im2col, BLAS matrix products, col2im), chunk by chunk.

    params: ``{"w": (F, C, HH, WW), "b": (F,)}``; x: ``(N, C, H, W)``; y: ``(N, F, H', W')`` with
    ``H' = (H + 2 * pad - HH) // stride + 1``. ``conv(**conv_param)`` takes the course's dict.
    ``filters`` (F) and ``kernel_size`` (HH, WW, or one int for both) are needed only by
    :func:`funcnn.init_params`.

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
    return _make_conv(stride, pad, filters, kernel_size, _fast_forward, False, conv.__doc__)


def conv_naive(
    stride: int = 1, pad: int = 0, filters: int | None = None, kernel_size: int | tuple[int, int] | None = None
) -> Layer:
    """The plain-NumPy reference for :func:`conv`: same contract, same results, a loop per output pixel.

    >>> rng = np.random.default_rng(0)
    >>> x, params = rng.standard_normal((2, 3, 5, 5)), {"w": rng.standard_normal((4, 3, 3, 3)), "b": np.zeros(4)}
    >>> y, _ = fn.conv_naive(pad=1)(params, x)
    >>> y.shape, np.allclose(y, fn.conv(pad=1)(params, x)[0])
    ((2, 4, 5, 5), True)
    """
    return _make_conv(stride, pad, filters, kernel_size, _naive_forward, True, conv_naive.__doc__)
