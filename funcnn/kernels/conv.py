"""im2col and col2im for convolution; the arithmetic itself is BLAS matrix products.

Columns are laid out ``(n, K, P)`` with ``K = C * HH * WW`` (rows ordered c, i, j like ``w``'s
trailing axes) and ``P = H' * W'``, one ``(K, P)`` matrix per image, so ``np.matmul(w.reshape(F, K),
cols)`` is the forward pass of ``n`` images written straight into ``y``'s ``(n, F, P)`` layout, with
no transpose. Padding is handled inside the kernels: no padded copy of ``x`` is made. Both kernels
fill an array the caller gives them, so one small buffer serves every chunk of a batch while it is
still in the caches.

The kernels are serial; BLAS runs the matrix products, most of the time, on every core. Numba's
parallel loops were tried: between them and the BLAS calls, idle OpenMP threads spin on the cores
that BLAS needs next, which made a conv several times slower (tens of times when another library,
such as PyTorch, had loaded its own OpenMP runtime).

The kernels index flat views with unsigned integers: Numba then skips its negative-index check,
which otherwise keeps LLVM from vectorising the row copies.
"""

from __future__ import annotations

import numpy as np

from funcnn.kernels._jit import jit

u = np.uint64


@jit(inline="always")
def _valid(size: int, j: int, stride: int, pad: int, out_size: int) -> tuple[int, int]:  # pragma: no cover - compiled
    """The outputs ``o`` in ``[lo, hi)`` read an input ``o * stride + j - pad`` inside ``[0, size)``."""
    lo = min(out_size, max(0, (pad - j + stride - 1) // stride))
    hi = max(lo, min(out_size, (size - 1 + pad - j) // stride + 1))
    return lo, hi


@jit()
def im2col(
    x: np.ndarray, hh: int, ww: int, stride: int, pad: int, out_h: int, out_w: int, cols: np.ndarray
) -> np.ndarray:  # pragma: no cover - compiled
    """Fill ``cols`` ``(n, C * hh * ww, out_h * out_w)`` from ``x`` ``(n, C, H, W)``; returns ``cols``."""
    n_batch, channels, height, width = x.shape
    plane = out_h * out_w
    src, dst = x.reshape(-1), cols.reshape(-1)
    for nc in range(n_batch * channels):
        for i in range(hh):
            for j in range(ww):
                lo, hi = _valid(width, j, stride, pad, out_w)
                row = nc * hh * ww + i * ww + j  # (n, c, i, j) is row n * K + (c * hh + i) * ww + j
                for oh in range(out_h):
                    h = oh * stride + i - pad
                    d = row * plane + oh * out_w
                    if h < 0 or h >= height:
                        lo_h, hi_h = out_w, out_w
                    else:
                        lo_h, hi_h = lo, hi
                    s = (nc * height + h) * width + j - pad
                    for ow in range(lo_h):
                        dst[u(d + ow)] = 0
                    if stride == 1:
                        for ow in range(lo_h, hi_h):
                            dst[u(d + ow)] = src[u(s + ow)]
                    else:
                        for ow in range(lo_h, hi_h):
                            dst[u(d + ow)] = src[u(s + ow * stride)]
                    for ow in range(hi_h, out_w):
                        dst[u(d + ow)] = 0
    return cols


@jit()
def col2im(
    dcols: np.ndarray, hh: int, ww: int, stride: int, pad: int, out_h: int, out_w: int, dx: np.ndarray
) -> np.ndarray:  # pragma: no cover - compiled
    """Overwrite ``dx`` ``(n, C, H, W)`` with the sum of ``dcols`` ``(n, C * hh * ww, out_h * out_w)``
    over the positions each input feeds; returns ``dx``."""
    n_batch, channels, height, width = dx.shape
    plane = out_h * out_w
    src, dst = dcols.reshape(-1), dx.reshape(-1)
    for nc in range(n_batch * channels):
        for k in range(height * width):
            dst[u(nc * height * width + k)] = 0
        for i in range(hh):
            for j in range(ww):
                lo, hi = _valid(width, j, stride, pad, out_w)
                row = nc * hh * ww + i * ww + j
                for oh in range(out_h):
                    h = oh * stride + i - pad
                    if h < 0 or h >= height:
                        continue
                    s = row * plane + oh * out_w
                    d = (nc * height + h) * width + j - pad
                    if stride == 1:
                        for ow in range(lo, hi):
                            dst[u(d + ow)] += src[u(s + ow)]
                    else:
                        for ow in range(lo, hi):
                            dst[u(d + ow * stride)] += src[u(s + ow)]
    return dx
