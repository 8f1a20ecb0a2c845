"""Data augmentation for NCHW image batches: pure functions of a random generator and a batch."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from funcnn._checks import check_ndim, float_array, int_at_least

__all__ = ["Augment", "crop_and_flip"]

# augment(rng, x) -> x': a new batch of x's shape and dtype, drawn from rng.
Augment = Callable[[np.random.Generator, np.ndarray], np.ndarray]


def crop_and_flip(rng: np.random.Generator, x: np.ndarray, pad: int = 4, flip: bool = True) -> np.ndarray:
    """Each image of ``x`` ``(N, C, H, W)`` shifted by a random crop of its zero-padded copy (``pad``
    pixels on every side, offsets uniform in ``[-pad, pad]`` each way) and, with ``flip``, mirrored left to
    right with probability 1/2: the CIFAR-10 recipe. Returns a new array of ``x``'s shape and dtype;
    ``x`` is not modified. The draws come from ``rng`` alone, so the same generator state gives the same
    batch (``fit`` draws one per epoch from its seed: a resumed run augments as an uninterrupted one).

    Args:
        rng: the generator the crops and flips are drawn from.
        x: images ``(N, C, H, W)``.
        pad: the zero padding, so shifts of up to ``pad`` pixels.
        flip: mirror each image with probability 1/2.

    Returns:
        A new batch of ``x``'s shape and dtype.

    >>> x = np.arange(16.0).reshape(1, 1, 4, 4)
    >>> y = fn.augment.crop_and_flip(np.random.default_rng(0), x, pad=1)
    >>> y.shape, y.dtype
    ((1, 1, 4, 4), dtype('float64'))
    """
    name = "crop_and_flip"
    x = float_array(name, "x", x)
    check_ndim(name, "x", x, 4, "(N, C, H, W)")
    pad = int_at_least(name, "pad", pad, 0)
    n, c, height, width = x.shape
    padded = np.zeros((n, c, height + 2 * pad, width + 2 * pad), dtype=x.dtype)
    padded[:, :, pad : pad + height, pad : pad + width] = x
    top: np.ndarray = np.asarray(rng.integers(0, 2 * pad + 1, size=n))
    left: np.ndarray = np.asarray(rng.integers(0, 2 * pad + 1, size=n))
    mirrored: np.ndarray = np.asarray(rng.random(n) < 0.5) if flip else np.zeros(n, dtype=bool)
    columns = np.where(mirrored[:, None], np.arange(width)[::-1], np.arange(width)) + left[:, None]
    rows = top[:, None] + np.arange(height)
    out: np.ndarray = padded[
        np.arange(n)[:, None, None, None],
        np.arange(c)[None, :, None, None],
        rows[:, None, :, None],
        columns[:, None, None, :],
    ]
    return out
