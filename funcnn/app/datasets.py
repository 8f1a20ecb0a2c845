"""Pick a data set by name for the command line: the bundled digits, or local MNIST / CIFAR-10 files."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from funcnn.data import Dataset, Split, load_cifar10_binary, load_digits, load_mnist

DATASETS = ("digits", "mnist", "fashion-mnist", "cifar10")
NUM_CLASSES = dict.fromkeys(DATASETS, 10)
"""Classes of each data set, from its definition: a file whose labels miss some still gets all of them."""


def load_named(name: str, path: str | Path | None = None, dtype: type = np.float32, val_fraction: float = 0.1) -> Split:
    """Train/validation/test splits of a data set: ``digits`` is bundled (its fixed split); the
    others are read from ``path`` (a folder of the usual files), with the last ``val_fraction``
    of the training files held out for validation. x is NCHW in [0, 1]."""
    if name == "digits":
        return load_digits(dtype)
    if name not in DATASETS:
        raise ValueError(f"dataset must be one of {', '.join(DATASETS)}, got {name!r}")
    if path is None:
        raise ValueError(f"dataset {name!r} is read from your disk: give the folder holding its files (--data-path)")
    load = load_cifar10_binary if name == "cifar10" else load_mnist
    train, test = load(path, kind="train", dtype=dtype), load(path, kind="test", dtype=dtype)
    cut = len(train) - max(1, int(len(train) * val_fraction))
    return Split(Dataset(train.x[:cut], train.y[:cut]), Dataset(train.x[cut:], train.y[cut:]), test)


INPUT_SHAPES = {"digits": (1, 8, 8), "mnist": (1, 28, 28), "fashion-mnist": (1, 28, 28), "cifar10": (3, 32, 32)}
"""One example's shape (C, H, W) in each data set, from its definition (no file is read)."""
