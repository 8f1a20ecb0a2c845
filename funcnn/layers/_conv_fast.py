"""How the conv layer runs fast: its columns (im2col, by a Numba kernel) times the filters by BLAS, or
Winograd F(2x2, 3x3) for 3x3 stride-1 convs with many channels, a chunk of images at a time so that what
the kernels write is still in the caches when the products read it. ``_conv.py`` says what a conv is."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from itertools import pairwise

import numpy as np

from funcnn.kernels.threads import DW_RUNS

# backward(dy, need_dx, into) -> (dx or None, dw, db); a forward returns it with y, closing over what it
# needs. ``into``: None, or dy itself when nobody else sees it: the fast path may then write dx into it.
Backward = Callable[[np.ndarray, bool, "np.ndarray | None"], tuple["np.ndarray | None", np.ndarray, np.ndarray]]
Forward = Callable[[np.ndarray, np.ndarray, np.ndarray, int, int, int, int], tuple[np.ndarray, Backward]]


# Images per chunk: their columns (or Winograd transforms) take at most about this many bytes (one
# image may take more), so they stay in the caches from the Numba kernel to the products that read
# them. Measured on 2 cores (fwd+bwd, float32, 1 and 2 threads): 4 MiB was within 5 % of the best
# of 1-32 MiB on every shape; smaller chunks make many small BLAS calls whose threads keep waking,
# larger ones leave the caches.
CHUNK_BYTES = 4 << 20
# Winograd F(2x2, 3x3) serves 3x3 stride-1 convs with at least this many input and output channels
# (the product's inner size: with fewer, BLAS is far from its peak and the transforms dominate).
WINOGRAD_MIN_CHANNELS = 16


# A Winograd chunk's two buffers (one pair a thread) take at most about this many bytes each: they are
# alive beside the conv's input and output, which is a step's peak (benchmarks/README.md, "Memory").
WINOGRAD_BUFFER_BYTES = 1 << 20


def _chunks(n: int, bytes_per_image: int, budget: int | None = None) -> list[slice]:
    step = max(1, min(n, (CHUNK_BYTES if budget is None else budget) // max(1, bytes_per_image)))
    return [slice(start, min(start + step, n)) for start in range(0, n, step)]


def _uses_winograd(w: np.ndarray, stride: int, pad: int) -> bool:
    f, c, hh, ww = w.shape
    return hh == ww == 3 and stride == 1 and pad <= 2 and min(f, c) >= WINOGRAD_MIN_CHANNELS


Rows = Callable[[np.ndarray, int, int], np.ndarray]


def _winograd_plan(
    n: int, c: int, f: int, out_h: int, out_w: int, dtype: np.dtype
) -> tuple[int, int, list[slice], Callable[..., tuple[np.ndarray, np.ndarray]], Rows]:
    """Tiles of a Winograd conv, its chunks of images, ``buffers()`` that makes two flat buffers
    ``(16 * C * ..., 16 * F * ...)`` for the largest chunk (one pair a thread; ``buffers(True)``: one buffer
    twice when ``F <= C``, for :func:`_products`), and ``rows(buffer, height,
    count)`` that lays a chunk out in one of them."""
    from funcnn.kernels.winograd import ROW_PAD

    tiles_h, tiles_w = (out_h + 1) // 2, (out_w + 1) // 2
    tiles = tiles_h * tiles_w
    chunks = _chunks(n, 16 * max(c, f) * tiles * dtype.itemsize, min(CHUNK_BYTES, WINOGRAD_BUFFER_BYTES))
    most = max(part.stop - part.start for part in chunks) * tiles + ROW_PAD

    def buffers(products_over_v: bool = False) -> tuple[np.ndarray, np.ndarray]:
        if products_over_v and f <= c:  # M over V's memory, through one position's rows (see _products)
            v = np.empty(16 * c * most, dtype)
            return v, v
        return np.empty(16 * c * most, dtype), np.empty(16 * f * most, dtype)

    def rows(buffer: np.ndarray, height: int, count: int) -> np.ndarray:
        # (16, height, count + ROW_PAD): rows padded off power-of-two lengths (see kernels/winograd.py)
        return buffer[: 16 * height * (count + ROW_PAD)].reshape(16, height, count + ROW_PAD)

    return tiles_h, tiles_w, chunks, buffers, rows


def _products(u: np.ndarray, v: np.ndarray, m: np.ndarray, count: int) -> None:
    """``m[k] = u[k] @ v[k]`` over the first ``count`` columns; ``m`` may lie over ``v``'s memory from its
    start with ``F <= C`` rows: then each position goes through a small scratch array, and ``m[k]`` covers
    only ``v[j]`` for ``j <= k``, which are read by then. It saves a buffer the size of ``m`` (per thread,
    beside a conv's input and output: a step's peak) for 16 BLAS calls instead of one."""
    if not np.may_share_memory(v, m):
        np.matmul(u, v[:, :, :count], out=m[:, :, :count])
        return
    scratch = np.empty((m.shape[1], count), m.dtype)
    for k in range(16):
        np.matmul(u[k], v[k, :, :count], out=scratch)
        m[k, :, :count] = scratch


def _winograd_conv(
    x: np.ndarray, w: np.ndarray, b: np.ndarray, pad: int, out_h: int, out_w: int, y: np.ndarray | None = None
) -> np.ndarray:
    """``y`` of a 3x3 stride-1 conv by Winograd F(2x2, 3x3), chunk by chunk (see funcnn.kernels.winograd),
    written into ``y`` when given: it may share memory with ``x`` when an image of ``y`` takes no more
    bytes than one of ``x``, as each chunk of ``x`` is read before that chunk of ``y`` is written."""
    from funcnn.kernels import winograd
    from funcnn.kernels.threads import ReadsFirst, map_groups

    n, c, f = x.shape[0], x.shape[1], w.shape[0]
    tiles_h, tiles_w, chunks, buffers, rows = _winograd_plan(n, c, f, out_h, out_w, x.dtype)
    u = winograd.filter_transform(w)
    y = np.empty((n, f, out_h, out_w), x.dtype) if y is None else y
    # y over x's memory (a dx in its dy): each chunk of y waits until the chunks of x it overlaps are read
    order = ReadsFirst(chunks, x[0].size, y[0].size if np.may_share_memory(x, y) else 0)

    def group(parts: Sequence[slice]) -> list[None]:
        v_buffer, m_buffer = buffers(True)
        with order.released_on_error():
            for part in parts:
                count = (part.stop - part.start) * tiles_h * tiles_w
                v, m = rows(v_buffer, c, count), rows(m_buffer, f, count)
                winograd.input_transform(x[part], pad, tiles_h, tiles_w, v)
                order.read(part)
                _products(u, v, m, count)
                order.wait(part)
                winograd.output_transform(m, b, tiles_h, tiles_w, y[part])
        return []

    map_groups(group, chunks)
    return y


def _winograd_dw(x: np.ndarray, dy: np.ndarray, pad: int, f: int) -> np.ndarray:
    """``dw`` ``(F, C, 3, 3)`` of a 3x3 stride-1 conv by Winograd: ``dU[k] = dM[k] V[k]^T`` summed over
    tiles, with ``dM = A dY A^T`` per tile, then ``dw = G^T dU G``."""
    from funcnn.kernels import winograd
    from funcnn.kernels.threads import map_groups

    n, c = x.shape[:2]
    tiles_h, tiles_w, chunks, buffers, rows = _winograd_plan(n, c, f, dy.shape[2], dy.shape[3], x.dtype)

    # runs of chunks, as slices of the chunk list: each is summed in order, then the runs in order
    bounds = [round(i * len(chunks) / min(DW_RUNS, len(chunks))) for i in range(min(DW_RUNS, len(chunks)) + 1)]

    def group(runs: Sequence[slice]) -> list[np.ndarray]:
        (v_buffer, m_buffer), sums = buffers(), []
        for run in runs:
            for i, part in enumerate(chunks[run]):
                count = (part.stop - part.start) * tiles_h * tiles_w
                v, dm = rows(v_buffer, c, count), rows(m_buffer, f, count)
                winograd.input_transform(x[part], pad, tiles_h, tiles_w, v)
                winograd.output_gradient(dy[part], tiles_h, tiles_w, dm)
                # dU transposed: BLAS's faster layout
                product = np.matmul(v[:, :, :count], dm[:, :, :count].transpose(0, 2, 1))
                if i == 0:
                    sums.append(product)
                else:
                    sums[-1] += product
        return sums

    du_t = np.zeros((16, c, f), x.dtype)
    for run_sum in map_groups(group, [slice(a, b) for a, b in pairwise(bounds)]):  # in order, whatever the threads
        du_t += run_sum
    dw: np.ndarray = winograd.filter_gradient(np.ascontiguousarray(du_t.transpose(0, 2, 1)))
    return dw


def _fits(dy: np.ndarray, x: np.ndarray) -> bool:
    """Whether ``dx`` may be written over ``dy``: its first ``x.size`` elements, image ``i`` of ``dx``
    ending no later than image ``i`` of ``dy``, so a chunk of images of ``dx`` overlaps only images of
    ``dy`` that are already read when it is written. A ``dx`` under 3/4 of ``dy`` gets memory of its own:
    written over ``dy`` it would keep all of ``dy`` alive through the layers below it, where a convnet's
    arrays are largest (the VGG net's third conv: an 8 MiB ``dy`` for a 4 MiB ``dx``)."""
    return dy.dtype == x.dtype and dy.flags.c_contiguous and dy[0].size >= x[0].size >= 3 * dy[0].size // 4


def fast_forward(
    x: np.ndarray, w: np.ndarray, b: np.ndarray, stride: int, pad: int, out_h: int, out_w: int
) -> tuple[np.ndarray, Backward]:
    """``(y, backward)`` of the conv: register tiles without columns for float32 stride-1 convs with few
    input channels (``_conv_direct.py``), else :func:`columns_forward`."""
    from funcnn.layers._conv_direct import direct_forward, uses_direct

    x = np.ascontiguousarray(x)
    if uses_direct(x, w, stride, pad):
        return direct_forward(x, w, b, pad, lambda: columns_forward(x, w, b, stride, pad, out_h, out_w), _fits)
    return columns_forward(x, w, b, stride, pad, out_h, out_w)


def columns_forward(
    x: np.ndarray, w: np.ndarray, b: np.ndarray, stride: int, pad: int, out_h: int, out_w: int
) -> tuple[np.ndarray, Backward]:
    """``(y, backward)`` of the conv: im2col columns (x itself for a 1x1 conv) times the filters, or
    Winograd F(2x2, 3x3) for the 3x3 stride-1 convs with many channels, chunk by chunk of images."""
    from funcnn.kernels import conv as kernels
    from funcnn.kernels.threads import ReadsFirst, map_groups

    x = np.ascontiguousarray(x)
    n, c, f, (hh, ww) = x.shape[0], x.shape[1], w.shape[0], w.shape[2:]
    w2 = np.ascontiguousarray(w.reshape(f, -1))
    k, plane = w2.shape[1], out_h * out_w
    chunks = _chunks(n, k * plane * x.itemsize)
    step = chunks[0].stop
    pointwise = hh == ww == stride == 1 and pad == 0  # a 1x1 conv's columns are x itself
    winograd = _uses_winograd(w, stride, pad)

    def columns(buffer: np.ndarray, part: slice) -> np.ndarray:
        if pointwise:
            return x[part].reshape(-1, k, plane)
        cols = buffer[: k * (part.stop - part.start) * plane].reshape(-1, k, plane)
        filled: np.ndarray = kernels.im2col(x[part], hh, ww, stride, pad, out_h, out_w, cols)
        return filled

    def forward_group(parts: Sequence[slice]) -> list[None]:
        # Buffers are made per call and thread: a live vjp never shares one with a later call.
        buffer = np.empty(0 if pointwise else k * step * plane, x.dtype)
        for part in parts:
            y_part = np.matmul(w2, columns(buffer, part), out=y[part])
            y_part += b[:, None]
        return []

    if winograd:
        y = _winograd_conv(x, w, b, pad, out_h, out_w).reshape(n, f, plane)
    else:
        y = np.empty((n, f, plane), x.dtype)
        map_groups(forward_group, chunks)

    def backward(
        dy: np.ndarray, need_dx: bool = True, into: np.ndarray | None = None
    ) -> tuple[np.ndarray | None, np.ndarray, np.ndarray]:
        dy = np.ascontiguousarray(dy).reshape(n, f, plane)
        db = dy.sum(axis=(0, 2))
        dx = None
        if need_dx:  # in dy's memory when it may: chunks of dy are read before the chunks of dx that overlap them
            dx = np.empty_like(x) if into is None or not _fits(into, x) else into.reshape(-1)[: x.size].reshape(x.shape)
        if winograd:  # dx is the 3x3 conv of dy with the filters flipped and transposed, padded 2 - pad
            dy4 = dy.reshape(n, f, out_h, out_w)
            dw = _winograd_dw(x, dy4, pad, f)  # before dx, which may overwrite dy
            flipped = np.ascontiguousarray(w[:, :, ::-1, ::-1].transpose(1, 0, 2, 3))
            height, width = x.shape[2:]
            if dx is not None:
                _winograd_conv(dy4, flipped, np.zeros(c, x.dtype), 2 - pad, height, width, dx)
            return dx, dw, db
        # dx over dy's memory: each chunk of dx waits until the chunks of dy it overlaps are read
        order = ReadsFirst(chunks, f * plane, x[0].size if dx is not None and np.may_share_memory(dx, dy) else 0)

        def backward_group(parts: Sequence[slice]) -> list[np.ndarray]:
            # Each chunk's columns are recomputed from x, which keeps only x alive and costs little next
            # to the products: the columns are still in the caches when they are read.
            buffer = np.empty(0 if pointwise else k * step * plane, x.dtype)
            dw_parts, sums = np.empty((step, k, f), x.dtype), []
            with order.released_on_error():
                for part in parts:
                    cols, m = columns(buffer, part), part.stop - part.start
                    sums.append(np.matmul(cols, dy[part].transpose(0, 2, 1), out=dw_parts[:m]).sum(axis=0))
                    if dx is not None:
                        if pointwise:
                            order.wait(part)
                            np.matmul(w2.T, dy[part], out=dx[part].reshape(m, k, plane))
                        else:  # the columns are used up: their buffer takes their gradient
                            dcols = np.matmul(w2.T, dy[part], out=cols)
                            order.wait(part)
                            kernels.col2im(dcols, hh, ww, stride, pad, out_h, out_w, dx[part])
                    order.read(part)
            return sums

        dw_t = np.zeros((k, f), x.dtype)  # dw transposed: OpenBLAS runs cols @ dy^T faster than dy @ cols^T
        for chunk_sum in map_groups(backward_group, chunks):  # in chunk order, whatever the threads
            dw_t += chunk_sum
        return dx, np.ascontiguousarray(dw_t.T).reshape(w.shape), db

    return y.reshape(n, f, out_h, out_w), backward
