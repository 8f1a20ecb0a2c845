"""im2col and col2im for convolution; the arithmetic itself is one BLAS matrix product.

Columns are laid out ``(K, N * P)`` with ``K = C * HH * WW`` (rows ordered c, i, j like ``w``'s
trailing axes) and ``P = H' * W'`` (columns ordered n, h', w'), so ``w.reshape(F, K) @ cols`` is the
whole forward pass. Padding is handled inside the kernels: no padded copy of ``x`` is made.
"""

from __future__ import annotations

import numpy as np
from numba import prange

from funcnn.kernels._jit import jit


@jit(parallel=True)
def im2col(x, hh, ww, stride, pad, out_h, out_w):  # pragma: no cover - compiled
    n_batch, channels, height, width = x.shape
    plane = out_h * out_w
    cols = np.empty((channels * hh * ww, n_batch * plane), dtype=x.dtype)
    for n in prange(n_batch):
        for c in range(channels):
            for i in range(hh):
                for j in range(ww):
                    row = (c * hh + i) * ww + j
                    for oh in range(out_h):
                        h = oh * stride + i - pad
                        base = n * plane + oh * out_w
                        if h < 0 or h >= height:
                            for ow in range(out_w):
                                cols[row, base + ow] = 0
                            continue
                        for ow in range(out_w):
                            w = ow * stride + j - pad
                            cols[row, base + ow] = x[n, c, h, w] if 0 <= w < width else 0
    return cols


@jit(parallel=True)
def col2im(dcols, x_shape, hh, ww, stride, pad, out_h, out_w):  # pragma: no cover - compiled
    n_batch, channels, height, width = x_shape
    plane = out_h * out_w
    dx = np.zeros((n_batch, channels, height, width), dtype=dcols.dtype)
    for n in prange(n_batch):
        for c in range(channels):
            for i in range(hh):
                for j in range(ww):
                    row = (c * hh + i) * ww + j
                    for oh in range(out_h):
                        h = oh * stride + i - pad
                        if h < 0 or h >= height:
                            continue
                        base = n * plane + oh * out_w
                        for ow in range(out_w):
                            w = ow * stride + j - pad
                            if 0 <= w < width:
                                dx[n, c, h, w] += dcols[row, base + ow]
    return dx
