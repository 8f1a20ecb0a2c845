"""A direct dw kernel for the convs that use funcnn's direct forward (few input channels): tried for
issue 9 and measured slower than im2col + BLAS (see ``benchmarks/README.md``), so funcnn does not use it.
Kept for ``benchmarks/bench_direct.py --dw``, which times it and checks it against funcnn's dw.

``dw[f, t] = sum_n sum_q dy[n, f, q] * xq_n[bases[t] + q]`` over the phase-split image of
``funcnn/kernels/direct.py``, over the kept outputs only (a dropped grid column may read a NaN that no
kept output reads, and 0 * NaN is NaN). A float sum does not vectorise without fastmath, so each
(filter, tap) pair keeps ``DW_LANES`` independent partial sums (the loop over lanes is elementwise) added
in a fixed order at the end of each group of ``GROUP`` images; the threads take whole groups and the
groups' sums are added in order, so the result is the same at any thread count.
"""

from __future__ import annotations

from typing import Any

import numba
import numpy as np

from funcnn.kernels._jit import jit
from funcnn.kernels.direct import FILTERS, TAPS, _phase_split, _pool, plan, u

GROUP = 5  # images per dw accumulator: its lanes are added once a group
DW_LANES = 32  # independent partial sums per dw entry (runs of an output row)
ROWS = 4  # output rows summed per update of a dw accumulator


@jit(inline="always")
def _accumulate(  # pragma: no cover - compiled
    acc: np.ndarray,
    k: int,
    xf: np.ndarray,
    b0: int,
    b1: int,
    b2: int,
    b3: int,
    d0: np.ndarray,
    d1: np.ndarray,
    p: int,
) -> None:
    """Add lane ``k`` of two filters' dy times four taps' x to the eight accumulator rows of ``acc``."""
    x0, x1, x2, x3 = xf[u(b0 + k)], xf[u(b1 + k)], xf[u(b2 + k)], xf[u(b3 + k)]
    e0, e1 = d0[u(p + k)], d1[u(p + k)]
    acc[u(k)] += e0 * x0
    acc[u(DW_LANES + k)] += e0 * x1
    acc[u(2 * DW_LANES + k)] += e0 * x2
    acc[u(3 * DW_LANES + k)] += e0 * x3
    acc[u(4 * DW_LANES + k)] += e1 * x0
    acc[u(5 * DW_LANES + k)] += e1 * x1
    acc[u(6 * DW_LANES + k)] += e1 * x2
    acc[u(7 * DW_LANES + k)] += e1 * x3


@jit(inline="always")
def _accumulate_rows(  # pragma: no cover - compiled
    acc: np.ndarray,
    k: int,
    xf: np.ndarray,
    b0: int,
    b1: int,
    b2: int,
    b3: int,
    d0: np.ndarray,
    d1: np.ndarray,
    p: int,
    dy_pitch: int,
    x_pitch: int,
) -> None:
    """:func:`_accumulate` over four rows at once (``ROWS``), their products summed before one update of ``acc``."""
    for tap in range(TAPS):
        b = (b0, b1, b2, b3)[tap]
        x0, x1, x2, x3 = xf[u(b + k)], xf[u(b + x_pitch + k)], xf[u(b + 2 * x_pitch + k)], xf[u(b + 3 * x_pitch + k)]
        for f in range(FILTERS):
            d = (d0, d1)[f]
            e0, e1, e2, e3 = d[u(p + k)], d[u(p + dy_pitch + k)], d[u(p + 2 * dy_pitch + k)], d[u(p + 3 * dy_pitch + k)]
            acc[u((f * TAPS + tap) * DW_LANES + k)] += (e0 * x0 + e1 * x1) + (e2 * x2 + e3 * x3)


@jit()
def weight_gradient(  # pragma: no cover - compiled
    x: np.ndarray,
    dy: np.ndarray,
    bases: np.ndarray,
    filters: int,
    stride: int,
    pad: int,
    hq: int,
    wq: int,
    out: np.ndarray,
) -> np.ndarray:
    """Fill ``out`` ``(g, F', T')`` with the ``dw`` of each group of ``GROUP`` images (the last may be
    short): ``out[g, f, t] = sum_n sum_q dy[n, f, q] * xq_n[bases[t] + q]`` over the group's images and
    the kept outputs ``q`` only (a dropped grid column may read a NaN that no kept output reads);
    ``bases`` ``(T',)`` from :func:`plan`, ``filters`` = ``F'``; returns ``out``."""
    out_h, out_w = dy.shape[2:]
    planes = x.shape[1] * stride * stride + 1
    xq = np.empty((GROUP, planes, hq, wq), x.dtype)
    acc = np.empty(FILTERS * TAPS * DW_LANES, x.dtype)  # flat: the rows' constant distances let LLVM vectorise
    dyf = np.zeros((GROUP, filters, out_h * out_w), x.dtype)  # dy's filters padded with zeros to F'
    for g in range(out.shape[0]):
        images = min(GROUP, x.shape[0] - g * GROUP)
        for i in range(images):
            _phase_split(x, g * GROUP + i, pad, stride, wq, xq[i])
            dyf[i, : dy.shape[1]] = dy[g * GROUP + i].reshape(dy.shape[1], -1)
        for f0 in range(0, filters, FILTERS):
            for t in range(0, bases.size, TAPS):
                acc[:] = 0
                for i in range(images):
                    xf, d0, d1 = xq[i].reshape(-1), dyf[i, f0], dyf[i, f0 + 1]
                    for oh in range(0, out_h, ROWS):
                        rows = min(ROWS, out_h - oh)
                        for ow0 in range(0, out_w, DW_LANES):
                            p, r = oh * out_w + ow0, oh * wq + ow0
                            b0, b1, b2, b3 = bases[t] + r, bases[t + 1] + r, bases[t + 2] + r, bases[t + 3] + r
                            if out_w - ow0 >= DW_LANES and rows == ROWS:
                                for k in range(DW_LANES):  # lane k: elementwise over lanes, so it vectorises
                                    _accumulate_rows(acc, k, xf, b0, b1, b2, b3, d0, d1, p, out_w, wq)
                            else:
                                for row in range(rows):
                                    for k in range(min(DW_LANES, out_w - ow0)):
                                        _accumulate(
                                            acc,
                                            k,
                                            xf,
                                            b0 + row * wq,
                                            b1 + row * wq,
                                            b2 + row * wq,
                                            b3 + row * wq,
                                            d0,
                                            d1,
                                            p + row * out_w,
                                        )
                for pair in range(FILTERS * TAPS):
                    total = acc[pair * DW_LANES]
                    for k in range(1, DW_LANES):
                        total += acc[pair * DW_LANES + k]
                    out[g, f0 + pair // TAPS, t + pair % TAPS] = total
    return out


def conv_dw(x: np.ndarray, dy: np.ndarray, w_shape: tuple[int, ...], stride: int, pad: int) -> np.ndarray:
    """``dw`` ``(F, C, HH, WW)`` of the conv of contiguous ``x`` ``(n, C, H, W)`` given contiguous ``dy``
    ``(n, F, H', W')``. The threads take whole groups of ``GROUP`` images and the groups' sums are added in
    order, so the result does not depend on the thread count."""
    f, taps = w_shape[0], int(np.prod(w_shape[1:]))
    _, _, bases, hq, wq = plan(x.shape, np.zeros(w_shape, x.dtype), np.zeros(f, x.dtype), stride, pad, dy.shape[2])
    groups = -(-x.shape[0] // GROUP)
    out = np.empty((groups, -(-f // FILTERS) * FILTERS, bases.size), x.dtype)
    parts = [part for part in np.array_split(np.arange(groups), numba.get_num_threads()) if part.size]
    runs: list[tuple[Any, ...]] = [
        (
            x[p[0] * GROUP : (p[-1] + 1) * GROUP],
            dy[p[0] * GROUP : (p[-1] + 1) * GROUP],
            bases,
            out.shape[1],
            stride,
            pad,
            hq,
            wq,
            out[p[0] : p[-1] + 1],
        )
        for p in parts
    ]
    pending = [_pool().submit(weight_gradient, *run) for run in runs[1:]]
    weight_gradient(*runs[0])
    for job in pending:
        job.result()
    dw: np.ndarray = out.sum(axis=0)[:f, :taps].reshape(w_shape)
    return dw
