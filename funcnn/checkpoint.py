"""Save and load pytrees as ``.npz`` files keyed by key path: no pickle, atomic writes."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from funcnn.tree import PyTree, tree_leaves_with_path, tree_structure, tree_unflatten

SEP = "/"


def _key(path: tuple) -> str:
    for part in path:
        if isinstance(part, str) and (SEP in part or not part):
            raise ValueError(f"checkpoint: dict keys must be non-empty and free of {SEP!r}, got {part!r}")
    return SEP.join(str(part) for part in path)


def save_checkpoint(path: str | os.PathLike, tree: PyTree) -> Path:
    """Write ``tree`` (dicts, tuples, lists; arrays or numbers as leaves) to ``path`` as ``.npz``,
    one array per leaf named by its key path (``"params/0/w"``).

    The file is written to a temporary file in the same folder and then moved over ``path``, so a
    crash mid-save leaves the previous checkpoint whole. Returns the path written.
    """
    path = Path(path)
    arrays = {_key(p): np.asarray(leaf) for p, leaf in tree_leaves_with_path(tree)}
    for key, array in arrays.items():
        if array.dtype.hasobject:
            raise TypeError(f"checkpoint: leaf {key!r} holds Python objects; only numeric and string arrays are saved")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)  # type: ignore[arg-type]  # numpy's stub misreads **kwds
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise
    return path


def load_checkpoint(path: str | os.PathLike, like: PyTree) -> PyTree:
    """Read a file written by :func:`save_checkpoint` into a tree shaped like ``like``.

    Every leaf of ``like`` must be in the file with the same shape (a leaf of ``like`` that is
    ``None`` accepts any shape); leaves are cast to the dtype of ``like``'s leaf. Missing, extra or
    misshapen entries raise ValueError naming them. Never unpickles (``allow_pickle=False``).
    """
    path = Path(path)
    with np.load(path, allow_pickle=False) as data:
        stored = {key: data[key] for key in data.files}
    wanted = tree_leaves_with_path(like)
    keys = [_key(p) for p, _ in wanted]
    missing, extra = sorted(set(keys) - set(stored)), sorted(set(stored) - set(keys))
    if missing or extra:
        raise ValueError(f"checkpoint {path}: does not match the expected tree; missing {missing[:5]}, unexpected {extra[:5]}")
    leaves: list[Any] = []
    for key, (_, template) in zip(keys, wanted):
        value = stored[key]
        if template is not None:
            template = np.asarray(template)
            if value.shape != template.shape:
                raise ValueError(f"checkpoint {path}: {key!r} has shape {value.shape}, expected {template.shape}")
            value = value.astype(template.dtype, copy=False)
        leaves.append(value)
    return tree_unflatten(tree_structure(like), leaves)
