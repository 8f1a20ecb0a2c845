"""The bundled 8x8 handwritten digits (UCI optdigits test set, via scikit-learn).

See ``DIGITS_LICENSE.md`` beside this file for provenance and licence.
"""

from __future__ import annotations

import functools
import gzip
import io
from importlib import resources

import numpy as np
from numpy.typing import DTypeLike

from funcnn._checks import floating_dtype
from funcnn.data._io import check_labels, scale
from funcnn.data._types import DataFormatError, Dataset, Split

__all__ = ["DIGITS_RESOURCE", "N_DIGITS", "SPLIT_SEED", "SPLIT_SIZES", "load_digits"]

DIGITS_RESOURCE = "digits.csv.gz"
N_DIGITS = 1797
#: (train, val, test) sizes of the fixed split.
SPLIT_SIZES = (1197, 300, 300)
#: Seed of ``np.random.default_rng`` whose one permutation defines the split.
SPLIT_SEED = 0


@functools.lru_cache(maxsize=1)
def _raw() -> np.ndarray:
    """Parse the bundled CSV once: read-only int64 array (1797, 65), checked."""
    res = resources.files(__package__).joinpath(DIGITS_RESOURCE)
    where = f"{__package__}/{DIGITS_RESOURCE}"
    try:
        text = gzip.decompress(res.read_bytes()).decode("ascii")
        table = np.loadtxt(io.StringIO(text), delimiter=",", dtype=np.int64, ndmin=2)
    except FileNotFoundError:
        raise
    except (OSError, EOFError, ValueError) as exc:
        raise DataFormatError(where, "gzip CSV of integers", f"{type(exc).__name__}: {exc}") from None
    if table.shape != (N_DIGITS, 65):
        raise DataFormatError(where, f"shape ({N_DIGITS}, 65)", f"shape {table.shape}")
    px = table[:, :64]
    if px.min() < 0 or px.max() > 16:
        raise DataFormatError(where, "pixels in 0..16", f"range {px.min()}..{px.max()}")
    check_labels(where, table[:, 64], 10)
    table.setflags(write=False)
    return table


def _split_indices() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The fixed split: one ``default_rng(SPLIT_SEED)`` permutation cut 1197 / 300 / 300."""
    perm = np.random.default_rng(SPLIT_SEED).permutation(N_DIGITS)
    a, b = SPLIT_SIZES[0], SPLIT_SIZES[0] + SPLIT_SIZES[1]
    return perm[:a], perm[a:b], perm[b:]


def load_digits(dtype: DTypeLike = np.float32) -> Split:
    """Load the 1,797 bundled 8x8 digits as a fixed train / val / test :class:`Split`.

    Sizes 1,197 / 300 / 300, the same on every run and machine. Each part is
    ``Dataset(x, y)``: x of ``dtype`` with shape (N, 1, 8, 8) in [0, 1]
    (pixel / 16), y int64 with shape (N,) in 0..9. Arrays are fresh copies.

    Args:
        dtype: the images' float dtype.

    Returns:
        A :class:`Split` of train, validation and test ``Dataset``s, x ``(N, 1, 8, 8)`` in [0, 1].
    """
    dt = floating_dtype("load_digits", "dtype", dtype)
    table = _raw()
    x_all = scale(table[:, :64].reshape(-1, 1, 8, 8), 16, dt)
    y_all = table[:, 64]
    # fancy indexing copies, so every call returns fresh, writable arrays
    parts = [Dataset(x_all[i], y_all[i]) for i in _split_indices()]
    return Split(*parts)
