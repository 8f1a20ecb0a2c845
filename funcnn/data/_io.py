"""Private helpers shared by the loaders: file reading, checks, scaling."""

from __future__ import annotations

import errno
import gzip
import os
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

import numpy as np

from funcnn.data._types import DataFormatError

PathLike = str | os.PathLike[str]
"""A file-system path: ``str`` or ``os.PathLike``."""

GZIP_MAGIC = b"\x1f\x8b"
GZIP_RESERVED_FLAGS = 0xE0  # bits 5-7 of the header's FLG byte


def missing(path: PathLike, what: str = "file") -> FileNotFoundError:
    """A FileNotFoundError whose message names ``path`` (and ``what`` was expected there)."""
    return FileNotFoundError(errno.ENOENT, f"expected {what}, found no such file", str(path))


def read_file(path: PathLike) -> bytes:
    """Return the bytes of ``path``. Missing file -> FileNotFoundError."""
    p = Path(path)
    if not p.is_file():
        raise missing(p)
    return p.read_bytes()


@contextmanager
def open_data(path: PathLike) -> Iterator[BinaryIO]:
    """Open ``path`` for reading, gunzipping it on the fly when its name ends in ``.gz`` or it starts
    with the gzip magic ``1f 8b``. Missing file -> FileNotFoundError; broken gzip stream (when read)
    -> DataFormatError."""
    p = Path(path)
    if not p.is_file():
        raise missing(p)
    with p.open("rb") as raw:
        head = raw.read(4)
        gzipped = p.name.endswith(".gz") or head[:2] == GZIP_MAGIC
        raw.seek(0)
        if not gzipped:
            yield raw
            return
        if len(head) == 4 and head[3] & GZIP_RESERVED_FLAGS:  # RFC 1952: a reader must refuse them; gzip ignores them
            raise DataFormatError(p, "a gzip header without reserved flag bits", f"flags 0x{head[3]:02X}")
        try:
            with gzip.GzipFile(fileobj=raw) as stream:
                yield stream  # type: ignore[misc]  # a GzipFile is a binary stream
        except (OSError, EOFError, zlib.error) as exc:
            raise DataFormatError(p, "a complete gzip stream", f"{type(exc).__name__}: {exc}") from None


def read_at_most(stream: BinaryIO, n: int, chunk: int = 1 << 24) -> bytearray:
    """Read up to ``n`` bytes, in chunks: memory follows the data actually there, never a size a
    header merely claims. Fewer than ``n`` bytes means the stream ended."""
    buf = bytearray()
    while len(buf) < n:
        part = stream.read(min(chunk, n - len(buf)))
        if not part:
            break
        buf += part
    return buf


def scale(pixels: np.ndarray, max_value: int, dtype: np.dtype) -> np.ndarray:
    """Return ``pixels / max_value`` as a new C-contiguous array of float ``dtype`` (checked by the loader)."""
    scaled: np.ndarray = np.ascontiguousarray(pixels, dtype=dtype) / dtype.type(max_value)
    return scaled


def check_labels(path: PathLike, labels: np.ndarray, n_classes: int) -> np.ndarray:
    """Return ``labels`` as int64, raising DataFormatError unless all lie in 0..n_classes-1."""
    y = labels.astype(np.int64)
    if y.size:
        bad = np.flatnonzero((y < 0) | (y >= n_classes))
        if bad.size:
            i = int(bad[0])
            raise DataFormatError(
                path,
                f"labels in 0..{n_classes - 1}",
                f"label {int(y[i])} at index {i} ({bad.size} out of range)",
            )
    return y
