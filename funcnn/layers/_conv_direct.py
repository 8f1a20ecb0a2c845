"""How a float32 stride-1 conv runs: register tiles over a zero-padded copy of each
image (``funcnn.kernels.direct_conv``), no columns. y and dx are the tile's products (dx: the conv of dy,
padded ``HH - 1 - pad``, with the filters flipped and transposed); dw is the product tile's too when C is
whole vectors (each image laid out channels last, its pixels the tile's k: 1.2-1.7x the reduction tile's
speed on the VGG net's convs, benchmarks/README.md), else the reduction tile's. The batch is split over
funcnn's threads in chunks that do not depend on the thread count, dw's parts added in run order.

Non-finite values: a tile multiplies the zeros of the padding as the reference does with x's, except where
it reads past an image: dx's padded dy times a non-finite weight, and the reduction tile's tail lanes
(``out_w`` not whole vectors) times a non-finite x, would put a NaN where the reference has none, so those
two take the columns path (``_conv_fast``) instead. The channels-last dw reads no lane past an image.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from funcnn.kernels.threads import DW_RUNS

# A stride-1 float32 conv runs direct when each output sums at least this many taps (C * HH * WW): below it
# the tiles' set-up and stores outweigh their loop (3 channels of 3x3, 27 taps: the backward pass lost to
# columns by about 1.3x). Measured in benchmarks/README.md.
DIRECT_MIN_TAPS = 32
# The batch is cut into about this many chunks, whatever the thread count: enough for two threads to
# share it evenly, few enough that each chunk's set-up costs little.
CHUNKS = 16
# dw sums its images in min(DW_RUNS, N) runs, fixed whatever the thread count, one sum a run. The reduction
# tile's accumulator of lane-wide partial sums holds at most DW_ACC_BYTES a thread, or one block of filters
# if that is more (more filters: they are done in slabs, each image padded again a slab): all of them at
# once took 4.5 MiB a thread on the VGG net's third conv, at the step's peak (benchmarks/README.md).
DW_ACC_BYTES = 1 << 20

Backward = Callable[[np.ndarray, bool, "np.ndarray | None"], tuple["np.ndarray | None", np.ndarray, np.ndarray]]
_LANES: list[int] = []


def tile_lanes() -> int:
    """The tiles' vector width, read once from ``FUNCNN_CONV_TILE`` or the CPU (see funcnn.kernels.tiles)."""
    if not _LANES:
        from funcnn.kernels.tiles import lanes

        _LANES.append(lanes())
    return _LANES[0]


def set_tile_lanes(lanes: int | None) -> None:
    """Use tiles of ``lanes`` floats (16, 8; 0: never run direct), or None: the CPU's again. For tests and
    benchmarks, which run the AVX2 tile and the columns path on an AVX-512 machine too."""
    _LANES[:] = [] if lanes is None else [int(lanes)]


def _tile(tiles: Sequence[tuple[int, int]], rows: int) -> tuple[int, int] | None:
    return next((tile for tile in tiles if tile[0] <= rows), None)


def uses_direct(x: np.ndarray, w: np.ndarray, stride: int, pad: int) -> bool:
    """Whether the conv of ``x`` with ``w`` runs on the tiles: float32, stride 1, enough taps, enough filters
    for a tile, and a plane of at least a tile's vectors.

    Args:
        x: ``(N, C, H, W)``.
        w: ``(F, C, HH, WW)``.
        stride: the conv's stride.
        pad: the conv's padding.

    Returns:
        True to run :func:`direct_forward`.
    """
    from funcnn.kernels.tiles import PRODUCT_TILES

    f, c, hh, ww = w.shape
    if tile_lanes() not in PRODUCT_TILES or x.dtype != np.float32 or stride != 1 or c * hh * ww < DIRECT_MIN_TAPS:
        return False
    return _product_fits(f, x.shape[2] + 2 * pad - hh + 1, x.shape[3] + 2 * pad - ww + 1)


def _product_fits(rows: int, out_h: int, out_w: int) -> bool:
    """Whether a product tile fits ``rows`` filters and an output plane of ``(out_h, out_w)``."""
    from funcnn.kernels.tiles import PRODUCT_TILES

    lanes = tile_lanes()
    tile = _tile(PRODUCT_TILES[lanes], rows)
    return tile is not None and out_h * -(-out_w // lanes) >= tile[1]


def _starts(total: int, size: int) -> np.ndarray:
    """Starts of blocks of ``size`` covering ``range(total)``, the last moved back to end at ``total``
    (it overlaps the one before: a tile recomputes and stores the same values there)."""
    starts = list(range(0, total - size + 1, size))
    if starts[-1] + size < total:
        starts.append(total - size)
    return np.array(starts, np.int64)


def _chunks(n: int, count: int = CHUNKS) -> list[slice]:
    """``range(n)`` in ``min(count, n)`` near-equal slices."""
    count = min(count, n)
    bounds = [n * i // count for i in range(count + 1)]
    return [slice(bounds[i], bounds[i + 1]) for i in range(count)]


class _Geometry:
    """Where a tile finds things for images ``(C, H, W)`` padded ``(pad_h, pad_w)`` and a kernel ``(HH, WW)``:
    the padded image ``(C, hp, wp)``, the output plane ``(out_h, out_wr)``, each tap's and output vector's
    offsets in them."""

    def __init__(self, shape: tuple[int, ...], kernel: tuple[int, int], pad_h: int, pad_w: int, lanes: int) -> None:
        c, h, w = shape
        hh, ww = kernel
        self.lanes, self.pad_h, self.pad_w = lanes, pad_h, pad_w
        self.out_h, self.out_w = h + 2 * pad_h - hh + 1, w + 2 * pad_w - ww + 1
        self.out_wr = -(-self.out_w // lanes) * lanes
        self.hp, self.wp = h + 2 * pad_h, self.out_wr + ww - 1
        self.offs = ((np.arange(c)[:, None, None] * self.hp + np.arange(hh)[:, None]) * self.wp + np.arange(ww)).ravel()
        rows, cols = np.meshgrid(np.arange(self.out_h), np.arange(0, self.out_wr, lanes), indexing="ij")
        self.xp = (rows * self.wp + cols).ravel().astype(np.int64)  # vector p of the plane is at p * lanes there

    def image_buffer(self, c: int) -> np.ndarray:
        return np.empty((c, self.hp, self.wp), np.float32)


def _product(
    x: np.ndarray, w: np.ndarray, b: np.ndarray, pad_h: int, pad_w: int, out: np.ndarray | None = None
) -> np.ndarray:
    """``y`` ``(N, F, out_h, out_w)``: the stride-1 conv of ``x`` ``(N, C, H, W)`` with ``w`` ``(F, C, HH, WW)``
    padded ``(pad_h, pad_w)``, plus ``b``; by the product tile. Written into ``out``
    when given, which may start at ``x``'s memory when an image of ``y`` takes no more than one of ``x``: a
    chunk is written only once the chunks of ``x`` it overlaps are read (each image is copied out before)."""
    from funcnn.kernels import direct_conv
    from funcnn.kernels.threads import ReadsFirst, map_groups
    from funcnn.kernels.tiles import PRODUCT_TILES

    lanes = tile_lanes()
    n, c = x.shape[:2]
    f = w.shape[0]
    g = _Geometry(x.shape[1:], w.shape[2:], pad_h, pad_w, lanes)
    tile = _tile(PRODUCT_TILES[lanes], f)
    assert tile is not None
    mr, nv = tile
    tiles = _starts(g.xp.size, nv)[:, None] + np.arange(nv)
    xv = np.ascontiguousarray(g.xp[tiles])
    yv = np.ascontiguousarray(tiles * lanes)
    row_starts = _starts(f, mr)
    a = np.ascontiguousarray(w.reshape(f, -1)[row_starts[:, None] + np.arange(mr)].transpose(0, 2, 1))
    bias = np.ascontiguousarray(b, np.float32)
    y = np.empty((n, f, g.out_h, g.out_w), np.float32) if out is None else out
    driver = direct_conv.product_driver(lanes, mr, nv)
    chunks = _chunks(n)
    order = ReadsFirst(chunks, x[0].size, y[0].size if np.may_share_memory(x, y) else 0)

    def group(parts: Sequence[slice]) -> list[None]:
        xbuf, ybuf = g.image_buffer(c), np.empty((f, g.out_h, g.out_wr), np.float32)
        with order.released_on_error():
            for part in parts:
                order.wait(part)
                driver(x, part.start, part.stop, pad_h, pad_w, a, row_starts, bias, g.offs, xv, yv, xbuf,
                       ybuf, y)  # fmt: skip
                order.read(part)
        return []

    map_groups(group, chunks)
    return y


def _dw(x: np.ndarray, dy: np.ndarray, kernel: tuple[int, int], pad: int) -> np.ndarray:
    """``dw`` ``(F, C, HH, WW)`` of the stride-1 conv of ``x`` padded ``pad``, by the reduction tile."""
    from funcnn.kernels import direct_conv
    from funcnn.kernels.threads import map_groups
    from funcnn.kernels.tiles import REDUCTION_TILES

    lanes = tile_lanes()
    n, c = x.shape[:2]
    f = dy.shape[1]
    g = _Geometry(x.shape[1:], kernel, pad, pad, lanes)
    tile = _tile(REDUCTION_TILES[lanes], f)
    assert tile is not None
    mr, nk = tile
    row_starts, tap_starts = _starts(f, mr), _starts(g.offs.size, nk)
    taps = np.ascontiguousarray(g.offs[tap_starts[:, None] + np.arange(nk)])
    driver = direct_conv.reduction_driver(lanes, mr, nk)

    block_bytes = tap_starts.size * mr * nk * lanes * 4
    slab = max(1, min(row_starts.size, DW_ACC_BYTES // block_bytes))

    def group(runs: Sequence[slice]) -> list[np.ndarray]:
        xbuf, dybuf = g.image_buffer(c), np.empty((f, g.out_h, g.out_wr), np.float32)
        acc = np.empty((slab, tap_starts.size, mr, nk, lanes), np.float32)
        sums = [np.empty((f, g.offs.size), np.float32) for _ in runs]
        for run, run_sum in zip(runs, sums):
            driver(x, dy, run.start, run.stop, pad, row_starts, tap_starts, taps, g.xp, xbuf, dybuf, acc, run_sum)
        return sums

    dw = np.zeros((f, g.offs.size), np.float32)
    for run_sum in map_groups(group, _chunks(n, DW_RUNS)):  # in run order, whatever the threads
        dw += run_sum
    return dw.reshape(f, c, *kernel)


def _channels_last_plan(c: int, f: int, kernel: tuple[int, int], lanes: int) -> tuple[int, int] | None:
    """``(mr, nv)``, the product tile of the channels-last dw (:func:`_dw_channels_last`), or None where it
    does not apply: C in whole vectors, and F and the kernel's ``HH * WW * C / lanes`` vectors filling a tile."""
    from funcnn.kernels.tiles import PRODUCT_TILES

    if not lanes or c % lanes:
        return None
    tile = _tile(PRODUCT_TILES[lanes], f)
    if tile is None or kernel[0] * kernel[1] * c // lanes < tile[1]:
        return None
    return tile


def _dw_channels_last(x: np.ndarray, dy: np.ndarray, kernel: tuple[int, int], pad: int) -> np.ndarray:
    """``dw`` ``(F, C, HH, WW)`` of the stride-1 conv of ``x`` padded ``pad``, by the product tile over each
    image laid out channels last (``funcnn.kernels.direct_conv.channels_last_dw_driver``); C in whole vectors."""
    from funcnn.kernels import direct_conv
    from funcnn.kernels.threads import map_groups

    lanes = tile_lanes()
    (n, c, height, width), f, (hh, ww) = x.shape, dy.shape[1], kernel
    plan = _channels_last_plan(c, f, kernel, lanes)
    assert plan is not None
    mr, nv = plan
    hp, wp = height + 2 * pad, width + 2 * pad
    out_h, out_w = dy.shape[2], dy.shape[3]
    columns = hh * ww * c
    pixel_rows, pixel_cols = np.meshgrid(np.arange(out_h), np.arange(out_w), indexing="ij")
    offs = ((pixel_rows * wp + pixel_cols) * c).ravel().astype(np.int64)
    vectors = _starts(columns // lanes, nv)[:, None] + np.arange(nv)  # (tiles, nv): which vector of a dw row
    tap, block = np.divmod(vectors, c // lanes)
    xv = np.ascontiguousarray(((tap // ww) * wp + tap % ww) * c + block * lanes, np.int64)
    yv = np.ascontiguousarray(vectors * lanes, np.int64)
    row_starts = _starts(f, mr)
    driver = direct_conv.channels_last_dw_driver(lanes, mr, nv)
    dy_pixels = dy.reshape(n, f, out_h * out_w)

    def group(runs: Sequence[slice]) -> list[np.ndarray]:
        xbuf = np.empty((hp, wp, c), np.float32)
        a = np.empty((row_starts.size, out_h * out_w, mr), np.float32)
        zeros, part = np.zeros(mr, np.float32), np.empty((f, columns), np.float32)
        sums = [np.empty((f, columns), np.float32) for _ in runs]
        for run, run_sum in zip(runs, sums):
            driver(x, dy_pixels, run.start, run.stop, pad, row_starts, offs, xv, yv, xbuf, a, zeros, part, run_sum)
        return sums

    dw = np.zeros((f, columns), np.float32)
    for run_sum in map_groups(group, _chunks(n, DW_RUNS)):  # in run order, whatever the threads
        dw += run_sum
    return np.ascontiguousarray(dw.reshape(f, hh, ww, c).transpose(0, 3, 1, 2))


def direct_dw_applies(x: np.ndarray, w: np.ndarray, dy_shape: tuple[int, ...]) -> bool:
    """Whether dw may run on the reduction tile: F and ``C * HH * WW`` fill one, and x is finite unless the
    output's rows are whole vectors (see the module's docstring)."""
    from funcnn.kernels.tiles import REDUCTION_TILES

    lanes = tile_lanes()
    tile = _tile(REDUCTION_TILES[lanes], dy_shape[1])
    taps = w[0].size
    return tile is not None and taps >= tile[1] and (dy_shape[3] % lanes == 0 or bool(np.isfinite(x).all()))


def direct_dx_applies(x: np.ndarray, w: np.ndarray, pad: int) -> bool:
    """Whether dx may run on the product tile: dy padded ``HH - 1 - pad >= 0``, C and x's plane filling a
    tile, finite w (see the module's docstring)."""
    f, c, hh, ww = w.shape
    return pad <= min(hh, ww) - 1 and _product_fits(c, *x.shape[2:]) and bool(np.isfinite(w).all())


def direct_forward(
    x: np.ndarray,
    w: np.ndarray,
    b: np.ndarray,
    pad: int,
    fallback: Callable[[], tuple[np.ndarray, Backward]],
    fits: Callable[[np.ndarray, np.ndarray], bool],
) -> tuple[np.ndarray, Backward]:
    """``(y, backward)`` of the stride-1 conv by the tiles (:func:`uses_direct` said yes); ``fallback()`` gives
    the columns path's, whose backward serves the dw or dx the tiles may not compute.

    Args:
        x: ``(N, C, H, W)`` float32, C-contiguous.
        w: ``(F, C, HH, WW)`` float32.
        b: ``(F,)`` float32.
        pad: zeros on each side.
        fallback: makes the columns path's ``(y, backward)``, called only when needed.
        fits: ``fits(into, x)``, whether dx may be written over a handed-over dy ``into``.

    Returns:
        ``y`` ``(N, F, H', W')`` and ``backward(dy, need_dx, into) -> (dx or None, dw, db)``.
    """
    w = np.ascontiguousarray(w)
    y = _product(x, w, b, pad, pad)
    kernel, y_shape = (w.shape[2], w.shape[3]), y.shape  # the backward pass keeps x and w, not y

    def backward(
        dy: np.ndarray, need_dx: bool = True, into: np.ndarray | None = None
    ) -> tuple[np.ndarray | None, np.ndarray, np.ndarray]:
        dy = np.ascontiguousarray(dy, np.float32).reshape(y_shape)
        channels_last = _channels_last_plan(x.shape[1], w.shape[0], kernel, tile_lanes()) is not None
        direct_dw = channels_last or direct_dw_applies(x, w, dy.shape)
        direct_dx = need_dx and direct_dx_applies(x, w, pad)
        if not direct_dw or (need_dx and not direct_dx):
            dx, dw, db = fallback()[1](dy, need_dx and not direct_dx, None)
        if direct_dw:
            dw, db = (_dw_channels_last if channels_last else _dw)(x, dy, kernel, pad), dy.sum(axis=(0, 2, 3))
        if direct_dx:  # in dy's memory when it may (see _product), after dw has read dy
            flipped = np.ascontiguousarray(w[:, :, ::-1, ::-1].transpose(1, 0, 2, 3))
            out = None if into is None or not fits(into, x) else into.reshape(-1)[: x.size].reshape(x.shape)
            dx = _product(dy, flipped, np.zeros(x.shape[1], np.float32), kernel[0] - 1 - pad, kernel[1] - 1 - pad,
                          out=out)  # fmt: skip
        return (dx if need_dx else None), dw, db

    return y, backward
