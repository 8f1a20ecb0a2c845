"""Max-pool kernels. Forward records, per output, the offset ``i * pool_width + j`` of the first
maximum in row-major order inside its window (the first NaN if there is one, like ``np.argmax``),
in the smallest unsigned type that holds ``pool_height * pool_width`` cells (uint8 up to 256: a
quarter of the output's float32 bytes); backward adds each upstream gradient at that cell, so
overlapping windows sum correctly.

Serial, like the conv kernels (see there). Selects instead of branches (random data makes a branch
on each comparison a coin toss for the CPU) and unsigned indices (which spare Numba's
negative-index checks) let LLVM vectorise the forward pass, as long as it compares with a plain
``>``: a plane that holds a NaN is pooled a second time with the NaN rule. The common 2x2 and 3x3
windows with stride 2 get kernels of their own, whose constant bounds LLVM unrolls.
"""

from __future__ import annotations

import numpy as np

from funcnn.kernels._jit import jit

u = np.uint64


@jit(inline="always")
def _pool_plane(
    src: np.ndarray,
    dst: np.ndarray,
    where: np.ndarray,
    plane: int,
    height: int,
    width: int,
    out_h: int,
    out_w: int,
    ph: int,
    pw: int,
    stride: int,
    nan_aware: bool,
) -> bool:  # pragma: no cover - compiled
    """Pools one (image, channel) plane; returns whether it holds a NaN. Only the ``nan_aware``
    pass lets a NaN win; on a plane without NaN both passes give the same result."""
    first, seen_nan = plane * height * width, False
    for oh in range(out_h):
        for ow in range(out_w):
            corner = first + oh * stride * width + ow * stride
            best_at = 0
            best = src[u(corner)]
            for i in range(ph):
                for j in range(pw):
                    at = i * pw + j
                    v = src[u(corner + i * width + j)]
                    seen_nan |= v != v  # noqa: PLR0124 - the NaN test
                    wins = (v > best) | ((v != v) & (best == best)) if nan_aware else v > best  # noqa: PLR0124
                    best = v if wins else best
                    best_at = at if wins else best_at
            o = (plane * out_h + oh) * out_w + ow
            dst[u(o)] = best
            where[u(o)] = best_at
    return seen_nan


@jit(inline="always")
def _forward(
    x: np.ndarray, argmax: np.ndarray, ph: int, pw: int, stride: int, out_h: int, out_w: int
) -> tuple[np.ndarray, np.ndarray]:  # pragma: no cover - compiled
    n_batch, channels, height, width = x.shape
    out = np.empty((n_batch, channels, out_h, out_w), dtype=x.dtype)
    src, dst, where = x.reshape(-1), out.reshape(-1), argmax.reshape(-1)
    for plane in range(n_batch * channels):
        if _pool_plane(src, dst, where, plane, height, width, out_h, out_w, ph, pw, stride, False):
            _pool_plane(src, dst, where, plane, height, width, out_h, out_w, ph, pw, stride, True)
    return out, argmax


@jit()
def _forward_2x2_s2(
    x: np.ndarray, argmax: np.ndarray, out_h: int, out_w: int
) -> tuple[np.ndarray, np.ndarray]:  # pragma: no cover - compiled
    return _forward(x, argmax, 2, 2, 2, out_h, out_w)


@jit()
def _forward_3x3_s2(
    x: np.ndarray, argmax: np.ndarray, out_h: int, out_w: int
) -> tuple[np.ndarray, np.ndarray]:  # pragma: no cover - compiled
    return _forward(x, argmax, 3, 3, 2, out_h, out_w)


@jit()
def _forward_any(
    x: np.ndarray, argmax: np.ndarray, ph: int, pw: int, stride: int, out_h: int, out_w: int
) -> tuple[np.ndarray, np.ndarray]:  # pragma: no cover - compiled
    return _forward(x, argmax, ph, pw, stride, out_h, out_w)


def max_pool_forward(
    x: np.ndarray, argmax: np.ndarray, ph: int, pw: int, stride: int, out_h: int, out_w: int
) -> tuple[np.ndarray, np.ndarray]:
    """``(y, argmax)``: fills ``argmax`` (N, C, H', W'), of an unsigned type, with the winners' offsets
    inside their windows. Each kernel is compiled on its first use."""
    if stride == 2 and ph == pw and ph in (2, 3):
        return (_forward_2x2_s2 if ph == 2 else _forward_3x3_s2)(x, argmax, out_h, out_w)
    return _forward_any(x, argmax, ph, pw, stride, out_h, out_w)


@jit()
def max_pool_backward(
    dy: np.ndarray, argmax: np.ndarray, height: int, width: int, pw: int, stride: int
) -> np.ndarray:  # pragma: no cover - compiled
    n_batch, channels, out_h, out_w = dy.shape
    dx = np.empty((n_batch, channels, height, width), dtype=dy.dtype)
    src, where, dst = dy.reshape(-1), argmax.reshape(-1), dx.reshape(-1)
    size = height * width
    for plane in range(n_batch * channels):
        for k in range(plane * size, (plane + 1) * size):
            dst[u(k)] = 0
        for oh in range(out_h):
            for ow in range(out_w):
                o = (plane * out_h + oh) * out_w + ow
                at = np.int64(where[u(o)])
                i, j = at // pw, at % pw
                dst[u(plane * size + (oh * stride + i) * width + ow * stride + j)] += src[u(o)]
    return dx
