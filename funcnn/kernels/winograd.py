"""Winograd F(2x2, 3x3) convolution for 3x3 filters at stride 1 (Lavin and Gray, 2015).

Each 2x2 block ("tile") of outputs is computed from the 4x4 input patch under it: the patch is
transformed to ``V = B^T d B`` and each filter to ``U = G g G^T``; the 16 positions of the 4x4
transforms are then 16 independent matrix products ``M[k] = U[k] (F, C) @ V[k] (C, T)`` over all
``T`` tiles, run by BLAS, and each tile's outputs are ``A^T M A``. That is 16 multiplications per
tile and channel pair where a direct 3x3 conv needs 36: 2.25 times fewer. The transforms add only
additions, done here in Numba, one pass over the input and one over the output.

Layouts: ``V`` is ``(16, C, T')`` and ``M`` is ``(16, F, T')`` with tiles ordered (n, tile row, tile
column) in the first ``T`` columns of rows of ``T' = T + ROW_PAD``, so each product is one BLAS call.
The padding keeps rows off power-of-two lengths, whose cache-set conflicts cost BLAS 20-30 % here. Padding and
the ragged last tile of an odd output size are handled in the kernels (zeros in, nothing out).
"""

from __future__ import annotations

import numpy as np

from funcnn.kernels._jit import jit

u = np.uint64
ROW_PAD = 24

# U = G g G^T for every (F, C) filter: (4, 3) @ (3, 3) @ (3, 4)
G = np.array([[1.0, 0.0, 0.0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0.0, 0.0, 1.0]])


def filter_transform(w: np.ndarray) -> np.ndarray:
    """``w`` ``(F, C, 3, 3)`` -> ``U`` ``(16, F, C)`` in ``w``'s dtype."""
    f, c = w.shape[:2]
    u_ = np.einsum("ai,fcij,bj->abfc", G.astype(w.dtype), w, G.astype(w.dtype), optimize=True)
    return np.ascontiguousarray(u_.reshape(16, f, c))


@jit(inline="always")
def _padded_row(
    src: np.ndarray, base: int, r: int, height: int, width: int, pad: int, row: np.ndarray
) -> None:  # pragma: no cover - compiled
    """``row[col] = plane[r, col - pad]`` of the (height, width) plane at ``src[base:]``, 0 outside it."""
    for col in range(row.size):
        row[col] = 0
    if 0 <= r < height:
        for col in range(pad, min(row.size, width + pad)):
            row[col] = src[u(base + r * width + col - pad)]


@jit()
def input_transform(
    x: np.ndarray, pad: int, tiles_h: int, tiles_w: int, v: np.ndarray
) -> np.ndarray:  # pragma: no cover - compiled
    """Fill ``v`` ``(16, C, n * tiles_h * tiles_w)`` with ``B^T d B`` of every 4x4 patch of ``x`` ``(n, C, H, W)``
    (the patch of tile (i, j) starts at row ``2 i - pad``, column ``2 j - pad``; zeros outside ``x``).

    Row-wise: for each row of tiles, the four input rows (zero-padded in a buffer) give ``t = B^T d``
    for every column at once; each of the 16 outputs is then a contiguous run over the tile row."""
    n_batch, channels, height, width = x.shape
    src, dst = x.reshape(-1), v.reshape(-1)
    row = v.shape[2]  # at least n * tiles_h * tiles_w: rows may be padded
    stride_k = channels * row
    span = 2 * tiles_w + 2  # padded columns that the tile row reads
    rows = np.zeros((4, span), x.dtype)
    t = np.empty((4, span), x.dtype)
    for n in range(n_batch):
        for c in range(channels):
            base = (n * channels + c) * height * width
            for ti in range(tiles_h):
                for a in range(4):
                    _padded_row(src, base, 2 * ti - pad + a, height, width, pad, rows[a])
                for col in range(span):
                    d0, d1, d2, d3 = rows[0, col], rows[1, col], rows[2, col], rows[3, col]
                    t[0, col], t[1, col], t[2, col], t[3, col] = d0 - d2, d1 + d2, d2 - d1, d1 - d3
                o = c * row + (n * tiles_h + ti) * tiles_w
                for a in range(4):
                    k0 = u(a * 4 * stride_k + o)
                    k1, k2, k3 = k0 + u(stride_k), k0 + u(2 * stride_k), k0 + u(3 * stride_k)
                    for tj in range(tiles_w):
                        c0, c1, c2, c3 = t[a, 2 * tj], t[a, 2 * tj + 1], t[a, 2 * tj + 2], t[a, 2 * tj + 3]
                        dst[k0 + u(tj)] = c0 - c2
                        dst[k1 + u(tj)] = c1 + c2
                        dst[k2 + u(tj)] = c2 - c1
                        dst[k3 + u(tj)] = c1 - c3
    return v


@jit()
def output_transform(
    m: np.ndarray, bias: np.ndarray, tiles_h: int, tiles_w: int, y: np.ndarray
) -> np.ndarray:  # pragma: no cover - compiled
    """Write ``A^T M A + bias`` of every tile of ``m`` ``(16, F, n * tiles_h * tiles_w)`` into ``y``
    ``(n, F, H', W')``; outputs past ``H'`` or ``W'`` (an odd size's last tile) are dropped."""
    n_batch, filters, out_h, out_w = y.shape
    src, dst = m.reshape(-1), y.reshape(-1)
    row = m.shape[2]
    stride_k = filters * row
    s = np.empty((2, 4, tiles_w), y.dtype)
    out = np.empty((2, 2 * tiles_w), y.dtype)
    for n in range(n_batch):
        for f in range(filters):
            base = (n * filters + f) * out_h * out_w
            beta = bias[f]
            for ti in range(tiles_h):
                o = f * row + (n * tiles_h + ti) * tiles_w
                for b in range(4):  # s = A^T m: two rows of four, for the whole tile row
                    k0 = u(b * stride_k + o)
                    k1, k2, k3 = k0 + u(4 * stride_k), k0 + u(8 * stride_k), k0 + u(12 * stride_k)
                    for tj in range(tiles_w):
                        m0, m1, m2, m3 = src[k0 + u(tj)], src[k1 + u(tj)], src[k2 + u(tj)], src[k3 + u(tj)]
                        s[0, b, tj] = m0 + m1 + m2
                        s[1, b, tj] = m1 - m2 - m3
                for a in range(2):
                    for tj in range(tiles_w):
                        out[a, 2 * tj] = s[a, 0, tj] + s[a, 1, tj] + s[a, 2, tj] + beta
                        out[a, 2 * tj + 1] = s[a, 1, tj] - s[a, 2, tj] - s[a, 3, tj] + beta
                    r = 2 * ti + a
                    if r < out_h:
                        for col in range(out_w):
                            dst[u(base + r * out_w + col)] = out[a, col]
    return y


def filter_gradient(du: np.ndarray) -> np.ndarray:
    """``dU`` ``(16, F, C)`` (the gradient of ``U = G g G^T``) -> ``dw = G^T dU G`` ``(F, C, 3, 3)``."""
    f, c = du.shape[1:]
    g = G.astype(du.dtype)
    return np.ascontiguousarray(np.einsum("ai,abfc,bj->fcij", g, du.reshape(4, 4, f, c), g, optimize=True))


@jit()
def output_gradient(
    dy: np.ndarray, tiles_h: int, tiles_w: int, dm: np.ndarray
) -> np.ndarray:  # pragma: no cover - compiled
    """Fill ``dm`` ``(16, F, n * tiles_h * tiles_w)`` with ``A dY A^T`` of every 2x2 tile of ``dy``
    ``(n, F, H', W')`` (the transpose of :func:`output_transform`; outputs past ``H'`` or ``W'`` are 0)."""
    n_batch, filters, out_h, out_w = dy.shape
    src, dst = dy.reshape(-1), dm.reshape(-1)
    row = dm.shape[2]
    stride_k = filters * row
    span = 2 * tiles_w
    rows = np.zeros((2, span), dy.dtype)
    for n in range(n_batch):
        for f in range(filters):
            base = (n * filters + f) * out_h * out_w
            for ti in range(tiles_h):
                for a in range(2):
                    _padded_row(src, base, 2 * ti + a, out_h, out_w, 0, rows[a])
                o = f * row + (n * tiles_h + ti) * tiles_w
                # dM = A dY A^T with A = [[1, 0], [1, 1], [1, -1], [0, -1]]: rows first (a), then columns (b)
                for b in range(4):
                    k0 = u(b * stride_k + o)
                    k1, k2, k3 = k0 + u(4 * stride_k), k0 + u(8 * stride_k), k0 + u(12 * stride_k)
                    for tj in range(tiles_w):
                        d00, d01 = rows[0, 2 * tj], rows[0, 2 * tj + 1]
                        d10, d11 = rows[1, 2 * tj], rows[1, 2 * tj + 1]
                        if b == 0:
                            e0, e1 = d00, d10
                        elif b == 1:
                            e0, e1 = d00 + d01, d10 + d11
                        elif b == 2:
                            e0, e1 = d00 - d01, d10 - d11
                        else:
                            e0, e1 = -d01, -d11
                        dst[k0 + u(tj)] = e0
                        dst[k1 + u(tj)] = e0 + e1
                        dst[k2 + u(tj)] = e0 - e1
                        dst[k3 + u(tj)] = -e1
    return dm
