"""A stride-1 float32 conv without columns: register tiles (``funcnn.kernels.tiles``) read a zero-padded
copy of each image straight from the caches. With few input channels im2col writes and BLAS reads a
column matrix ``HH * WW`` times the size of ``x``; here each image's padded copy (17 KiB for the course's
3 x 38 x 38) is the only thing made.

A conv's dw is the product tile's too where C is whole vectors (:func:`channels_last_dw_driver`: each
image copied channels last, its output pixels the tile's k), the reduction tile's otherwise.

Layouts (all C-contiguous, flat indices): an image padded to ``(C, hp, wp)`` with ``wp = out_wr + WW - 1``,
where ``out_wr`` is ``out_w`` rounded up to whole vectors, so every vector a tile loads lies inside it;
an output plane ``(F, out_h, out_wr)``. The tables (made by ``funcnn.layers._conv_direct``): ``offs[k]``, the
offset of tap ``k = (c, i, j)`` in the padded image; per tile of output vectors, ``xv`` and ``yv``, each
vector's offset in the padded image and in the output plane.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Callable
from pathlib import Path

import numpy as np

from funcnn.kernels import tiles
from funcnn.kernels._jit import jit
from funcnn.kernels.tiles import product, reduction


@functools.cache
def _tiles_stamp() -> str:
    """A hash of tiles.py: Numba keys a kernel's disk cache on its own file and its closure's values, not on
    the files its intrinsics come from, so each driver holds this to be compiled again when the tiles change."""
    return hashlib.sha256(Path(tiles.__file__).read_bytes()).hexdigest()


@jit(inline="always")
def _pad_into(x: np.ndarray, pad_h: int, pad_w: int, buffer: np.ndarray) -> None:  # pragma: no cover - compiled
    """Copy image ``x`` ``(C, H, W)`` into ``buffer`` ``(C, hp, wp)`` at ``(pad_h, pad_w)``; the rest stays."""
    channels, height, width = x.shape
    for c in range(channels):
        for h in range(height):
            for w in range(width):
                buffer[c, pad_h + h, pad_w + w] = x[c, h, w]


@functools.cache
def product_driver(lanes: int, mr: int, nv: int) -> Callable[..., None]:
    """``driver(x, start, stop, pad_h, pad_w, a, row_starts, bias, offs, xv, yv, xbuf, ybuf, y)``: for
    images ``start <= i < stop`` of ``x`` ``(n, C, H, W)``, ``y[i] = bias + the direct conv of x[i]`` (then
    by the product tile of ``lanes`` floats a vector, ``mr`` filters by ``nv`` vectors.

    ``a`` ``(blocks, K, mr)``, block ``b`` holding the filters ``row_starts[b] + r`` (the last block may
    overlap the one before); ``xv`` and ``yv`` ``(tiles, nv)``; ``xbuf`` ``(C, hp, wp)`` and ``ybuf`` ``(F,
    out_h, out_wr)`` buffers; ``y`` ``(n, F, out_h, out_w)``, written straight when ``out_w == out_wr``, else
    through ``ybuf``. Each tile is a kernel of its own, cached on disk by its constants."""
    stamp = _tiles_stamp()

    @jit()
    def driver(x, start, stop, pad_h, pad_w, a, row_starts, bias, offs, xv, yv, xbuf, ybuf, y):  # type: ignore[no-untyped-def]  # pragma: no cover - compiled
        tiles_version = stamp  # noqa: F841 - in the closure, so in the cache's key
        out_h, out_w, out_wr = y.shape[2], y.shape[3], ybuf.shape[2]
        plane = out_h * out_wr
        block = a.shape[1] * mr
        xbuf[:] = 0
        for i in range(start, stop):
            _pad_into(x[i], pad_h, pad_w, xbuf)
            target = y[i] if out_w == out_wr else ybuf
            for b in range(row_starts.shape[0]):
                first = row_starts[b]
                for t in range(xv.shape[0]):
                    product(lanes, mr, nv, a, b * block, xbuf, 0, offs, xv[t], target, first * plane, yv[t], plane,
                            bias, first)  # fmt: skip
            if out_w != out_wr:
                y[i] = ybuf[:, :, :out_w]

    return driver


@functools.cache
def reduction_driver(lanes: int, mr: int, nk: int) -> Callable[..., None]:
    """``driver(x, dy, start, stop, pad, row_starts, tap_starts, taps, xp, xbuf, dybuf, acc, dw)``: ``dw[f, k]
    = sum dy[i, f] * x[i]`` at tap k over images ``start <= i < stop``, by the reduction tile of ``lanes``
    floats a vector, ``mr`` filters by ``nk`` taps (each lane summed on its own, then the lanes).

    ``x`` ``(n, C, H, W)``, ``dy`` ``(n, F, out_h, out_w)``; ``taps`` ``(tiles, nk)``: the offsets in the
    padded image of the taps ``tap_starts[t] + j`` of each tile; ``acc`` ``(slab, tiles, mr, nk, lanes)``,
    the sums of ``slab`` blocks at a time, block ``b`` holding the filters ``row_starts[b] + r`` (blocks and
    tiles may overlap the one before);
    ``xp[p]`` the offset of output vector ``p`` (at ``p * lanes`` in the plane) in the padded image;
    ``dybuf`` ``(F, out_h, out_wr)``, used (its padding zero) when ``out_w != out_wr``; ``dw`` ``(F, K)``."""
    stamp = _tiles_stamp()

    @jit()
    def driver(x, dy, start, stop, pad, row_starts, tap_starts, taps, xp, xbuf, dybuf, acc, dw):  # type: ignore[no-untyped-def]  # pragma: no cover - compiled
        tiles_version = stamp  # noqa: F841 - in the closure, so in the cache's key
        out_h, out_w, out_wr = dy.shape[2], dy.shape[3], dybuf.shape[2]
        plane = out_h * out_wr
        xbuf[:] = 0
        dybuf[:] = 0
        blocks, slab = row_starts.shape[0], acc.shape[0]
        for first in range(0, blocks, slab):  # acc holds a slab of blocks: each image is padded once a slab
            last = min(first + slab, blocks)
            acc[:] = 0
            for i in range(start, stop):
                _pad_into(x[i], pad, pad, xbuf)
                if out_w != out_wr:
                    dybuf[:, :, :out_w] = dy[i]
                source = dy[i] if out_w == out_wr else dybuf
                for b in range(first, last):
                    for t in range(taps.shape[0]):
                        reduction(lanes, mr, nk, source, row_starts[b] * plane, plane, xbuf, 0, taps[t], xp, acc,
                                  ((b - first) * taps.shape[0] + t) * mr * nk * lanes)  # fmt: skip
            for b in range(first, last):  # overlapping tiles hold the same sums: either may write them
                for t in range(taps.shape[0]):
                    for r in range(mr):
                        for j in range(nk):
                            total = acc[b - first, t, r, j, 0]
                            for lane in range(1, lanes):
                                total += acc[b - first, t, r, j, lane]
                            dw[row_starts[b] + r, tap_starts[t] + j] = total

    return driver


@functools.cache
def channels_last_dw_driver(lanes: int, mr: int, nv: int) -> Callable[..., None]:
    """``driver(x, dy, start, stop, pad, row_starts, offs, xv, yv, xbuf, a, zeros, part, dw)``: ``dw[f, q]``,
    ``q = (u * WW + v) * C + c``, the sum over images ``start <= i < stop`` and their output pixels of
    ``dy[i, f, pixel] * x[i, c, pixel + (u, v)]``, by the product tile (``lanes``, ``mr`` filters by ``nv``
    vectors): the pixels are its k, the filters its rows, and ``(tap, channel)`` pairs, ``lanes`` channels a
    vector (C is whole vectors), its columns. Nothing is left over to add across lanes, and the long k loop
    keeps the accumulators in registers.

    ``x`` ``(n, C, H, W)``; ``dy`` ``(n, F, P)``; ``xbuf`` ``(hp, wp, C)``, an image padded and channels last;
    ``offs[k]`` the offset of output pixel k in it, ``xv`` and ``yv`` ``(tiles, nv)`` each vector's offset
    from there and in a row of ``dw``; ``a`` ``(blocks, P, mr)``, an image's ``dy`` transposed, block ``b``
    holding the filters ``row_starts[b] + r``; ``zeros`` ``(mr,)``; ``part`` and ``dw`` ``(F, HH * WW * C)``
    (``part``: one image's sums)."""
    stamp = _tiles_stamp()

    @jit()
    def driver(x, dy, start, stop, pad, row_starts, offs, xv, yv, xbuf, a, zeros, part, dw):  # type: ignore[no-untyped-def]  # pragma: no cover - compiled
        tiles_version = stamp  # noqa: F841 - in the closure, so in the cache's key
        channels, height, width = x.shape[1], x.shape[2], x.shape[3]
        pixels, columns = dy.shape[2], dw.shape[1]
        xbuf[:] = 0
        dw[:] = 0
        for i in range(start, stop):
            for h in range(height):  # a row of the padded image at a time: it stays in L1 while written
                for c in range(channels):
                    for w in range(width):
                        xbuf[pad + h, pad + w, c] = x[i, c, h, w]
            for b in range(row_starts.shape[0]):
                for p in range(pixels):
                    for r in range(mr):
                        a[b, p, r] = dy[i, row_starts[b] + r, p]
            for b in range(row_starts.shape[0]):
                for t in range(xv.shape[0]):
                    product(lanes, mr, nv, a, b * pixels * mr, xbuf, 0, offs, xv[t], part, row_starts[b] * columns,
                            yv[t], columns, zeros, 0)  # fmt: skip
            for f in range(dw.shape[0]):
                for q in range(columns):
                    dw[f, q] += part[f, q]

    return driver
