"""Shared data-package types: :class:`Dataset`, :class:`Split`, :class:`DataFormatError`."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["DataFormatError", "Dataset", "Split"]


class DataFormatError(ValueError):
    """A data file is truncated or malformed.

    The message always names the file and what was expected versus found;
    the same facts are kept as attributes ``path``, ``expected``, ``found``.
    """

    def __init__(self, path: object, expected: str, found: str) -> None:
        self.path = str(path)
        self.expected = expected
        self.found = found
        super().__init__(f"{self.path}: expected {expected}, found {found}")


@dataclass(frozen=True, eq=False)
class Dataset:
    """Examples ``x`` (N, ...) with integer labels ``y`` (N,); ``len()`` is N.

    Construction checks that ``y`` is 1-D and that ``x`` and ``y`` agree on N.
    ``eq=False``: arrays do not compare to a single bool, so equality is identity.
    """

    x: np.ndarray
    y: np.ndarray

    def __post_init__(self) -> None:
        if self.y.ndim != 1:
            raise ValueError(f"Dataset: y must be 1-D, got shape {self.y.shape}")
        if self.x.ndim < 1 or self.x.shape[0] != self.y.shape[0]:
            raise ValueError(f"Dataset: x has shape {self.x.shape} but y has {self.y.shape[0]} labels")

    def __len__(self) -> int:
        return int(self.y.shape[0])


@dataclass(frozen=True, eq=False)
class Split:
    """A fixed train / validation / test split, each part a :class:`Dataset`."""

    train: Dataset
    val: Dataset
    test: Dataset
