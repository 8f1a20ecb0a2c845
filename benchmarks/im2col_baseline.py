"""A plain-NumPy im2col baseline in the style of the cs231n course's ``im2col.py``: the columns come
from one fancy-indexing gather of a padded copy of x, the gradient goes back with ``np.add.at``,
and the forward keeps the padded input and the full columns for the backward pass.

Only for the benchmarks: funcnn never imports it. Layouts follow cs231n: columns are
``(C * HH * WW, H' * W' * N)`` with the image index fastest.
"""

from __future__ import annotations

import numpy as np


def _indices(x_shape, hh, ww, pad, stride):
    _, c, h, w = x_shape
    out_h, out_w = (h + 2 * pad - hh) // stride + 1, (w + 2 * pad - ww) // stride + 1
    i0 = np.tile(np.repeat(np.arange(hh), ww), c)
    i1 = stride * np.repeat(np.arange(out_h), out_w)
    j0 = np.tile(np.arange(ww), hh * c)
    j1 = stride * np.tile(np.arange(out_w), out_h)
    i = i0.reshape(-1, 1) + i1.reshape(1, -1)
    j = j0.reshape(-1, 1) + j1.reshape(1, -1)
    k = np.repeat(np.arange(c), hh * ww).reshape(-1, 1)
    return k, i, j, out_h, out_w


def im2col(x, hh, ww, pad, stride):
    x_padded = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    k, i, j, _, _ = _indices(x.shape, hh, ww, pad, stride)
    cols = x_padded[:, k, i, j]  # (N, K, P)
    return cols.transpose(1, 2, 0).reshape(hh * ww * x.shape[1], -1), x_padded


def col2im(cols, x_shape, hh, ww, pad, stride):
    n, c, h, w = x_shape
    x_padded = np.zeros((n, c, h + 2 * pad, w + 2 * pad), dtype=cols.dtype)
    k, i, j, _, _ = _indices(x_shape, hh, ww, pad, stride)
    cols_reshaped = cols.reshape(c * hh * ww, -1, n).transpose(2, 0, 1)
    np.add.at(x_padded, (slice(None), k, i, j), cols_reshaped)
    return x_padded[:, :, pad : pad + h, pad : pad + w] if pad else x_padded


def conv_forward(x, w, b, stride, pad):
    """Returns ``y`` and a cache, as the course does: ``(x, w, b, stride, pad, cols, x_padded)``."""
    n, f, (hh, ww) = x.shape[0], w.shape[0], w.shape[2:]
    cols, x_padded = im2col(x, hh, ww, pad, stride)
    out_h, out_w = (x.shape[2] + 2 * pad - hh) // stride + 1, (x.shape[3] + 2 * pad - ww) // stride + 1
    y = (w.reshape(f, -1) @ cols + b.reshape(-1, 1)).reshape(f, out_h, out_w, n).transpose(3, 0, 1, 2)
    return np.ascontiguousarray(y), (x, w, b, stride, pad, cols, x_padded)


def conv_backward(dy, cache):
    x, w, _, stride, pad, cols, _ = cache
    f, (hh, ww) = w.shape[0], w.shape[2:]
    db = dy.sum(axis=(0, 2, 3))
    dy2 = dy.transpose(1, 2, 3, 0).reshape(f, -1)
    dw = (dy2 @ cols.T).reshape(w.shape)
    dx = col2im(w.reshape(f, -1).T @ dy2, x.shape, hh, ww, pad, stride)
    return dx, dw, db


def max_pool_forward(x, ph, pw, stride):
    """cs231n's ``max_pool_forward_im2col``: every channel as its own image, argmax over columns."""
    n, c, h, w = x.shape
    cols, _ = im2col(x.reshape(n * c, 1, h, w), ph, pw, 0, stride)
    winners = np.argmax(cols, axis=0)
    out_h, out_w = (h - ph) // stride + 1, (w - pw) // stride + 1
    y = cols[winners, np.arange(cols.shape[1])].reshape(out_h, out_w, n, c).transpose(2, 3, 0, 1)
    return np.ascontiguousarray(y), (x.shape, cols.shape, winners, ph, pw, stride)


def max_pool_backward(dy, cache):
    (n, c, h, w), cols_shape, winners, ph, pw, stride = cache
    dcols = np.zeros(cols_shape, dtype=dy.dtype)
    dcols[winners, np.arange(cols_shape[1])] = dy.transpose(2, 3, 0, 1).reshape(-1)
    return col2im(dcols, (n * c, 1, h, w), ph, pw, 0, stride).reshape(n, c, h, w)
