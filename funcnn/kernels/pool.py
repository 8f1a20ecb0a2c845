"""Max-pool kernels. Forward records, per output, the flat index (h * W + w) of the first maximum
in row-major order inside its window (the first NaN if there is one, like ``np.argmax``);
backward adds each upstream gradient at that index, so overlapping windows sum correctly."""

from __future__ import annotations

import numpy as np
from numba import prange

from funcnn.kernels._jit import jit


@jit(parallel=True)
def max_pool_forward(x, ph, pw, stride, out_h, out_w):  # pragma: no cover - compiled
    n_batch, channels, height, width = x.shape
    out = np.empty((n_batch, channels, out_h, out_w), dtype=x.dtype)
    argmax = np.empty((n_batch, channels, out_h, out_w), dtype=np.int32)
    for nc in prange(n_batch * channels):
        n = nc // channels
        c = nc % channels
        for oh in range(out_h):
            for ow in range(out_w):
                h0 = oh * stride
                w0 = ow * stride
                best = x[n, c, h0, w0]
                best_at = h0 * width + w0
                for i in range(ph):
                    for j in range(pw):
                        v = x[n, c, h0 + i, w0 + j]
                        if v > best or (v != v and best == best):
                            best = v
                            best_at = (h0 + i) * width + w0 + j
                out[n, c, oh, ow] = best
                argmax[n, c, oh, ow] = best_at
    return out, argmax


@jit(parallel=True)
def max_pool_backward(dy, argmax, height, width):  # pragma: no cover - compiled
    n_batch, channels, out_h, out_w = dy.shape
    dx = np.zeros((n_batch, channels, height * width), dtype=dy.dtype)
    for nc in prange(n_batch * channels):
        n = nc // channels
        c = nc % channels
        for oh in range(out_h):
            for ow in range(out_w):
                dx[n, c, argmax[n, c, oh, ow]] += dy[n, c, oh, ow]
    return dx.reshape(n_batch, channels, height, width)
