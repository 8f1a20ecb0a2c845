"""One conv forward+backward in a fresh process, for bench_layers.py's memory table.

``setup(impl, key, dtype)`` warms the implementation up on a tiny conv (compiling kernels and
loading libraries, so that the measured run pays only for its arrays) and returns ``fwd_bwd()``,
which runs one forward and backward pass on the real shape and returns the bytes that NumPy
allocations held between the two passes besides ``y`` (what the vjp closure keeps).
"""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import im2col_baseline as base
import numpy as np

import funcnn as fn

CONV_SHAPES = {  # x, w, stride, pad
    "a": ((100, 3, 31, 31), (25, 3, 3, 3), 2, 1),
    "b": ((64, 32, 32, 32), (64, 32, 3, 3), 1, 1),
    "c": ((64, 128, 16, 16), (128, 128, 3, 3), 1, 1),
    "d": ((8, 3, 64, 64), (16, 3, 5, 5), 1, 2),
    "e": ((50, 3, 32, 32), (32, 3, 7, 7), 1, 3),  # the course's convnet's conv
}


def rss_mib(reset_peak=False, peak=False):
    """Resident memory (VmRSS), or its peak since the last reset (VmHWM), in MiB; Linux only."""
    if reset_peak:
        Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current VmRSS
    field = "VmHWM:" if peak else "VmRSS:"
    line = next(line for line in Path("/proc/self/status").read_text().splitlines() if line.startswith(field))
    return int(line.split()[1]) / 1024


def keep_cols_conv(stride, pad):
    """funcnn's kernels without the recompute: the full columns are made once and kept for backward."""
    from funcnn.kernels import conv as kernels

    def forward(x, w, b):
        n, f, (hh, ww) = x.shape[0], w.shape[0], w.shape[2:]
        out_h, out_w = (x.shape[2] + 2 * pad - hh) // stride + 1, (x.shape[3] + 2 * pad - ww) // stride + 1
        w2, plane = w.reshape(f, -1), out_h * out_w
        cols = kernels.im2col(x, hh, ww, stride, pad, out_h, out_w, np.empty((n, w2.shape[1], plane), x.dtype))
        y = (np.matmul(w2, cols) + b[:, None]).reshape(n, f, out_h, out_w)

        def backward(dy):
            dy3 = dy.reshape(n, f, plane)
            dx = kernels.col2im(np.matmul(w2.T, dy3), hh, ww, stride, pad, out_h, out_w, np.empty_like(x))
            return dx, np.matmul(dy3, cols.transpose(0, 2, 1)).sum(axis=0).reshape(w.shape), dy3.sum(axis=(0, 2))

        return y, backward

    return forward


def _runner(impl, stride, pad):
    """(x, w, b, dy) -> (forward result kept alive, backward thunk) for each implementation."""
    if impl == "funcnn":
        layer = fn.conv(stride=stride, pad=pad)

        def run(x, w, b):
            y, vjp = layer({"w": w, "b": b}, x)
            return y, vjp

        return run, lambda vjp, dy: vjp(dy)
    if impl == "keep-cols":
        return keep_cols_conv(stride, pad), lambda backward, dy: backward(dy)
    if impl == "im2col":
        return (lambda x, w, b: base.conv_forward(x, w, b, stride, pad)), lambda cache, dy: base.conv_backward(
            dy, cache
        )
    if impl == "torch":
        import torch
        import torch.nn.functional as F

        def run(x, w, b):
            tx, tw, tb = (torch.from_numpy(a).requires_grad_() for a in (x, w, b))
            ty = F.conv2d(tx, tw, tb, stride, pad)
            return ty, (ty, tx, tw, tb)

        return run, lambda saved, dy: torch.autograd.grad(saved[0], saved[1:], torch.from_numpy(dy))
    if impl == "jax":
        import jax

        jax.config.update("jax_enable_x64", True)

        def jconv(x, w, b):
            out = jax.lax.conv_general_dilated(
                x, w, (stride, stride), [(pad, pad)] * 2, dimension_numbers=("NCHW", "OIHW", "NCHW")
            )
            return out + b[None, :, None, None]

        def run(x, w, b):
            y, vjp = jax.vjp(jconv, x, w, b)
            return jax.block_until_ready(y), vjp

        return run, lambda vjp, dy: jax.block_until_ready(vjp(dy))
    raise ValueError(impl)


def setup(impl, key, dtype):
    xs, ws, stride, pad = CONV_SHAPES[key]
    forward, backward = _runner(impl, stride, pad)
    rng = np.random.default_rng(0)

    def data(xs, ws):
        x, w, b = rng.standard_normal(xs).astype(dtype), rng.standard_normal(ws).astype(dtype), np.zeros(ws[0], dtype)
        out_h, out_w = (xs[2] + 2 * pad - ws[2]) // stride + 1, (xs[3] + 2 * pad - ws[3]) // stride + 1
        return x, w, b, np.ones((xs[0], ws[0], out_h, out_w), dtype)

    small = data((2, ws[1], xs[2], xs[3]), ws)
    _, saved = forward(*small[:3])
    backward(saved, small[3])
    x, w, b, dy = data(xs, ws)

    def fwd_bwd():
        start = tracemalloc.get_traced_memory()[0]
        y_and_saved = forward(x, w, b)  # y stays alive until backward has run, as in training
        held = tracemalloc.get_traced_memory()[0] - start - dy.nbytes  # y has dy's size
        backward(y_and_saved[1], dy)
        return held

    return fwd_bwd
