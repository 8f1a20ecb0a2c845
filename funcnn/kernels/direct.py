"""A direct convolution forward pass for few input channels, register-blocked, with no columns.

Each image is copied once into a zero-padded, stride-phase-split buffer ``xq`` ``(C * s * s + 1, Hq, Wq)``
(plane ``(c, a, b)`` holds the padded input's rows ``a, a + s, ...`` and columns ``b, b + s, ...``; the
last plane is all zeros). Every tap ``(c, i, j)`` of the filter then reads one plane at a fixed
offset, and output ``(oh, ow)`` sits at the flat position ``q = oh * Wq + ow`` of a grid ``Wq`` wide:
tap ``t`` adds ``w[f, t] * xq.flat[base[t] + q]`` to output ``q``, a contiguous run at any stride.
The grid's columns past ``W'`` are computed and dropped (they read into the next row, which is in
bounds and never reaches a kept output): ``Wq / W'`` more work (1.06-1.2 on the benchmarks' shapes)
for one long innermost loop.

The inner loop adds four taps into two filters' accumulator rows at once: 4 multiplications per load
and store of an accumulator, where a plain loop nest does one. (Four filters by four taps spilled
weights to the stack and ran 10 % slower, two by eight 30 % slower.) The accumulators stay in L1,
not in registers, which keeps the kernel at about OpenBLAS's rate on one core: it wins by using
every core with no BLAS call.
Filters are padded to a multiple of two with zero weights (their outputs are dropped) and taps to a
multiple of four with zero weights that read the zero plane, so a NaN reaches exactly the outputs
whose window holds it. No fastmath: plain float adds in a fixed order, ``(w0 x0 + w1 x1) + (w2 x2 +
w3 x3)`` per group of taps.

The kernel is serial and releases the GIL; :func:`conv` splits the batch over plain threads (no BLAS
runs inside, so the cores are free; Numba's parallel loops are not used, see ``kernels/conv.py``).
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numba
import numpy as np

from funcnn.kernels._jit import jit

u = np.uint64
FILTERS, TAPS = 2, 4  # per block: the inner loop is written out for 2 x 4
GRID_BLOCK = 1024  # grid positions per accumulator row: the rows stay in L1
LANES = 16  # runs are rounded up to whole vectors of this many (read past the grid: see plan's hq)
_pools: dict[int, ThreadPoolExecutor] = {}  # by process id: a forked child has none of its parent's threads


@jit(inline="always")
def _phase_split(
    x: np.ndarray, n: int, pad: int, stride: int, wq: int, xq: np.ndarray
) -> None:  # pragma: no cover - compiled
    """Fill ``xq`` ``(C * stride * stride + 1, hq, wq)`` with image ``n`` of ``x``, zero-padded and
    phase-split, and zeros in the last plane."""
    channels, height, width = x.shape[1:]
    xq[:] = 0
    for c in range(channels):
        for a in range(stride):
            for b in range(stride):
                plane = (c * stride + a) * stride + b
                lo = max(0, (pad - b + stride - 1) // stride)  # the first grid column inside x
                hi = max(lo, min(wq, (width - 1 + pad - b) // stride + 1))
                for r in range(xq.shape[1]):
                    h = r * stride + a - pad
                    if 0 <= h < height:
                        src, dst = x[n, c, h], xq[plane, r]
                        for col in range(lo, hi):
                            dst[col] = src[col * stride + b - pad]


@jit()
def forward(
    x: np.ndarray,
    wt: np.ndarray,
    bias: np.ndarray,
    bases: np.ndarray,
    stride: int,
    pad: int,
    hq: int,
    wq: int,
    y: np.ndarray,
) -> np.ndarray:  # pragma: no cover - compiled
    """Fill ``y`` ``(n, F, H', W')`` with the conv of ``x`` ``(n, C, H, W)``; ``wt`` ``(F', T')``,
    ``bias`` ``(F',)`` and ``bases`` ``(T',)`` come from :func:`plan`; returns ``y``."""
    filters, out_h, out_w = y.shape[1:]
    grid = out_h * wq
    xq = np.empty((x.shape[1] * stride * stride + 1, hq, wq), x.dtype)
    xf = xq.reshape(-1)
    acc = np.empty((FILTERS, GRID_BLOCK), x.dtype)
    a0, a1 = acc[0], acc[1]
    for n in range(x.shape[0]):
        _phase_split(x, n, pad, stride, wq, xq)
        for f0 in range(0, wt.shape[0], FILTERS):
            for q0 in range(0, grid, GRID_BLOCK):
                end = min(grid, q0 + GRID_BLOCK)
                count = -(-(end - q0) // LANES) * LANES  # whole vectors: no scalar remainder loop runs
                for q in range(count):
                    a0[q], a1[q] = bias[f0], bias[f0 + 1]
                for t in range(0, bases.size, TAPS):
                    b0, b1, b2, b3 = bases[t] + q0, bases[t + 1] + q0, bases[t + 2] + q0, bases[t + 3] + q0
                    w00, w01, w02, w03 = wt[f0, t], wt[f0, t + 1], wt[f0, t + 2], wt[f0, t + 3]
                    w10, w11, w12, w13 = wt[f0 + 1, t], wt[f0 + 1, t + 1], wt[f0 + 1, t + 2], wt[f0 + 1, t + 3]
                    for q in range(count):
                        x0, x1, x2, x3 = xf[u(b0 + q)], xf[u(b1 + q)], xf[u(b2 + q)], xf[u(b3 + q)]
                        a0[u(q)] += (w00 * x0 + w01 * x1) + (w02 * x2 + w03 * x3)
                        a1[u(q)] += (w10 * x0 + w11 * x1) + (w12 * x2 + w13 * x3)
                for k in range(min(FILTERS, filters - f0)):
                    src = acc[k]
                    for oh in range(q0 // wq, (end - 1) // wq + 1):
                        out, row = y[n, f0 + k, oh], oh * wq - q0
                        for col in range(max(0, -row), min(out_w, end - q0 - row)):
                            out[col] = src[row + col]
    return y


def plan(
    x_shape: tuple[int, ...], w: np.ndarray, b: np.ndarray, stride: int, pad: int, out_h: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, int, int]:
    """``(wt, bias, bases, hq, wq)`` for :func:`forward`: filters, bias and taps padded to multiples of
    ``FILTERS`` and ``TAPS`` with zeros, each tap's flat offset in the phase-split image (padding taps: the zero
    plane), and that image's plane size."""
    f, c, hh, ww = w.shape
    height, width = x_shape[2] + 2 * pad, x_shape[3] + 2 * pad
    wq = -(-width // stride)
    # the dropped columns read one row on, and a run rounded up to LANES up to LANES more positions
    hq = max(-(-height // stride), out_h + (hh - 1) // stride + 1 + -(-LANES // wq))
    taps = c * hh * ww
    wt = np.zeros((-(-f // FILTERS) * FILTERS, -(-taps // TAPS) * TAPS), w.dtype)
    wt[:f, :taps] = w.reshape(f, taps)
    bias = np.zeros(wt.shape[0], b.dtype)
    bias[:f] = b
    ci, ii, jj = np.meshgrid(np.arange(c), np.arange(hh), np.arange(ww), indexing="ij")
    planes = (ci * stride + ii % stride) * stride + jj % stride
    bases = np.full(wt.shape[1], c * stride * stride * hq * wq, np.int64)  # the zero plane
    bases[:taps] = (planes * hq * wq + (ii // stride) * wq + jj // stride).reshape(-1)
    return wt, bias, bases, hq, wq


def conv(x: np.ndarray, w: np.ndarray, b: np.ndarray, stride: int, pad: int, out_h: int, out_w: int) -> np.ndarray:
    """``y`` ``(n, F, out_h, out_w)`` of the conv of contiguous ``x`` ``(n, C, H, W)`` with ``w`` ``(F, C, HH, WW)``
    and ``b`` ``(F,)``; the images are split over ``numba.get_num_threads()`` threads."""
    wt, bias, bases, hq, wq = plan(x.shape, w, b, stride, pad, out_h)
    y = np.empty((x.shape[0], w.shape[0], out_h, out_w), x.dtype)
    parts = [part for part in np.array_split(np.arange(x.shape[0]), numba.get_num_threads()) if part.size]
    runs: list[tuple[Any, ...]] = [
        (x[p[0] : p[-1] + 1], wt, bias, bases, stride, pad, hq, wq, y[p[0] : p[-1] + 1]) for p in parts
    ]
    pending = [_pool().submit(forward, *run) for run in runs[1:]]
    forward(*runs[0])
    for job in pending:
        job.result()
    return y


def _pool() -> ThreadPoolExecutor:
    pid = os.getpid()
    if pid not in _pools:
        _pools[pid] = ThreadPoolExecutor(max(1, (os.cpu_count() or 1) - 1), "funcnn-conv")
    return _pools[pid]
