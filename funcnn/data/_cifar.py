"""CIFAR-10, binary version (``*.bin`` files). Nothing is unpickled or downloaded."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from numpy.typing import DTypeLike

from funcnn._checks import floating_dtype, one_of
from funcnn.data._io import PathLike, check_labels, read_file, scale
from funcnn.data._types import DataFormatError, Dataset

__all__ = ["load_cifar10_binary"]

_RECORD = 1 + 3 * 32 * 32  # label byte + 3072 pixel bytes (CHW)

_FILES = {
    "train": tuple(f"data_batch_{i}.bin" for i in range(1, 6)),
    "test": ("test_batch.bin",),
}


def _read_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Return (pixels uint8 (N, 3, 32, 32), labels int64 (N,)) from one binary batch file."""
    buf = read_file(path)
    if len(buf) == 0 or len(buf) % _RECORD:
        raise DataFormatError(
            path,
            f"a positive whole number of {_RECORD}-byte records",
            f"{len(buf)} bytes ({len(buf) // _RECORD} records + {len(buf) % _RECORD} bytes)",
        )
    records = np.frombuffer(buf, dtype=np.uint8).reshape(-1, _RECORD)
    y = check_labels(path, records[:, 0], 10)
    return records[:, 1:].reshape(-1, 3, 32, 32), y


def load_cifar10_binary(folder: PathLike, kind: str = "train", dtype: DTypeLike = np.float32) -> Dataset:
    """Load CIFAR-10 (binary version) from ``folder``.

    ``kind="train"`` reads ``data_batch_1.bin`` .. ``data_batch_5.bin`` in order,
    ``kind="test"`` reads ``test_batch.bin``. Each record is one label byte then
    3072 pixel bytes in CHW order; any whole number of records per file is accepted.
    Returns ``Dataset(x, y)``: x of ``dtype`` with shape (N, 3, 32, 32) scaled to
    [0, 1] (pixel / 255), y int64 with shape (N,) in 0..9.

    Raises FileNotFoundError for a missing file and DataFormatError (a ValueError)
    for an empty file, a size that is not a multiple of 3073, or a label outside 0..9.

    Args:
        folder: the folder holding the ``.bin`` files.
        kind: ``"train"`` or ``"test"``.
        dtype: the images' float dtype.

    Returns:
        A ``Dataset(x, y)``: x ``(N, 3, 32, 32)`` in [0, 1], y ``(N,)`` int64.
    """
    files = _FILES[one_of("load_cifar10_binary", "kind", kind, ("train", "test"))]
    dt = floating_dtype("load_cifar10_binary", "dtype", dtype)
    parts = [_read_batch(Path(folder) / name) for name in files]
    pixels = np.concatenate([p for p, _ in parts])
    y = np.concatenate([lab for _, lab in parts])
    return Dataset(scale(pixels, 255, dt), y)
