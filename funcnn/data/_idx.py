"""IDX files (MNIST, Fashion-MNIST): a reader and an MNIST-layout loader.

Format: two zero bytes, a dtype code byte, an ndim byte, ``ndim`` big-endian
uint32 dimensions, then the data in row-major order, big-endian. Nothing is
ever downloaded.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from numpy.typing import DTypeLike

from funcnn._checks import floating_dtype, one_of
from funcnn.data._io import PathLike, check_labels, missing, open_data, read_at_most, scale
from funcnn.data._types import DataFormatError, Dataset

__all__ = ["load_idx", "load_mnist"]

#: IDX dtype code -> big-endian NumPy dtype.
IDX_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype("u1"),
    0x09: np.dtype("i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


def load_idx(path: PathLike) -> np.ndarray:
    """Read one IDX file and return its array.

    The file is gunzipped first when its name ends in ``.gz`` or it starts
    with the gzip magic ``1f 8b``. Returns a new, writable, native-byte-order
    array with the header's shape ``(d0, ..., d{ndim-1})`` and dtype uint8,
    int8, int16, int32, float32 or float64 (codes 0x08, 0x09, 0x0B-0x0E).

    Raises FileNotFoundError if ``path`` does not exist, and
    :class:`~funcnn.data.DataFormatError` (a ValueError) on a bad magic,
    unknown dtype code, truncated header, or data size not matching the header. Reads are bounded
    by the header: a file holding more data than its header promises (a gzip bomb) is refused after
    reading one byte more, so it costs no more memory than an honest file with that header.

    Args:
        path: an IDX file, optionally gzipped.

    Returns:
        Its array, of the dtype and shape its header gives.
    """
    with open_data(path) as stream:
        head = read_at_most(stream, 4)
        if len(head) < 4:
            raise DataFormatError(path, "an IDX header of at least 4 bytes", f"{len(head)} bytes")
        if head[0] != 0 or head[1] != 0:
            raise DataFormatError(path, "IDX magic starting with bytes 00 00", f"{head[:2].hex(' ')}")
        code, ndim = head[2], head[3]
        if code not in IDX_DTYPES:
            known = ", ".join(f"0x{c:02X}" for c in IDX_DTYPES)
            raise DataFormatError(path, f"an IDX dtype code in {{{known}}}", f"0x{code:02X}")
        header_len = 4 + 4 * ndim
        dims = read_at_most(stream, 4 * ndim)
        if len(dims) < 4 * ndim:
            found = f"{4 + len(dims)} bytes in the file"
            raise DataFormatError(path, f"a {header_len}-byte IDX header for ndim={ndim}", found)
        shape = tuple(int(d) for d in np.frombuffer(dims, dtype=">u4"))
        dt = IDX_DTYPES[code]
        want = math.prod(shape) * dt.itemsize
        data = read_at_most(stream, want + 1)  # one byte more than the header promises tells a longer file
    if len(data) != want:
        found = f"{want + 1} or more data bytes" if len(data) > want else f"{len(data)} data bytes"
        raise DataFormatError(path, f"{want} data bytes for shape {shape} of {dt.name}", found)
    return np.frombuffer(data, dtype=dt).astype(dt.newbyteorder("="), copy=False).reshape(shape)


_MNIST_PREFIX = {"train": "train", "test": "t10k"}


def _find(folder: Path, name: str) -> Path:
    """Return ``folder/name`` or ``folder/name.gz``, whichever exists (plain first)."""
    for candidate in (folder / name, folder / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    raise missing(folder / name, f"IDX file {name} or {name}.gz")


def load_mnist(folder: PathLike, kind: str = "train", dtype: DTypeLike = np.float32) -> Dataset:
    """Load MNIST or Fashion-MNIST from ``folder`` (standard IDX file names, optionally ``.gz``).

    ``kind="train"`` reads ``train-images-idx3-ubyte`` / ``train-labels-idx1-ubyte``,
    ``kind="test"`` reads ``t10k-images-idx3-ubyte`` / ``t10k-labels-idx1-ubyte``.
    Returns ``Dataset(x, y)``: x of ``dtype`` with shape (N, 1, 28, 28) scaled to
    [0, 1] (pixel / 255), y int64 with shape (N,) in 0..9.

    Raises FileNotFoundError for a missing file and DataFormatError (a ValueError)
    when a file is malformed, not uint8 of the expected shape, the label count
    differs from the image count, or a label is outside 0..9.

    Args:
        folder: the folder holding the IDX files.
        kind: ``"train"`` or ``"test"``.
        dtype: the images' float dtype.

    Returns:
        A ``Dataset(x, y)``: x ``(N, 1, 28, 28)`` in [0, 1], y ``(N,)`` int64.
    """
    prefix = _MNIST_PREFIX[one_of("load_mnist", "kind", kind, ("train", "test"))]
    dt = floating_dtype("load_mnist", "dtype", dtype)
    root = Path(folder)
    images_path = _find(root, f"{prefix}-images-idx3-ubyte")
    labels_path = _find(root, f"{prefix}-labels-idx1-ubyte")

    images = load_idx(images_path)
    if images.dtype != np.uint8 or images.ndim != 3 or images.shape[1:] != (28, 28) or not len(images):
        raise DataFormatError(
            images_path, "uint8 images of shape (N, 28, 28), N >= 1", f"{images.dtype} of shape {images.shape}"
        )
    labels = load_idx(labels_path)
    if labels.dtype != np.uint8 or labels.ndim != 1:
        raise DataFormatError(labels_path, "uint8 labels of shape (N,)", f"{labels.dtype} of shape {labels.shape}")
    if labels.shape[0] != images.shape[0]:
        raise DataFormatError(
            labels_path,
            f"{images.shape[0]} labels (one per image in {images_path})",
            f"{labels.shape[0]} labels",
        )
    y = check_labels(labels_path, labels, 10)
    x = scale(images[:, None, :, :], 255, dt)
    return Dataset(x, y)
