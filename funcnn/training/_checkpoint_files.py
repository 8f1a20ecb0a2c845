"""Save and load pytrees as ``.npz`` files keyed by key path: no pickle, atomic writes, and hostile
files refused from their headers before anything is loaded."""

from __future__ import annotations

import math
import os
import secrets
import time
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from funcnn.tree import PyTree, tree_leaves_with_path, tree_structure, tree_unflatten

SEP = "/"


def _key(path: tuple[Any, ...]) -> str:
    for part in path:
        if isinstance(part, str) and (SEP in part or not part):
            raise ValueError(f"checkpoint: dict keys must be non-empty and free of {SEP!r}, got {part!r}")
    return SEP.join(str(part) for part in path)


STALE_SECONDS = 3600  # a temporary without a writer's PID in its name is left alone this long


def _writer_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: alive
        pass
    return True


def _temporaries(path: Path) -> list[Path]:
    """Temporaries that killed saves of ``path`` left behind: named ``.<name>.<pid>.<token>.tmp``, whose
    writer (``pid``) is dead, or, without a PID, older than ``STALE_SECONDS``. A concurrent writer's live
    temporary, and this process's own, are never among them."""
    stale = []
    for tmp in path.parent.glob(f".{path.name}.*.tmp"):
        pid = tmp.name[len(path.name) + 2 :].split(".", 1)[0]
        try:
            if pid.isdigit():
                dead = int(pid) != os.getpid() and not _writer_alive(int(pid))
            else:
                dead = time.time() - tmp.stat().st_mtime > STALE_SECONDS
        except FileNotFoundError:  # its writer finished meanwhile
            continue
        if dead:
            stale.append(tmp)
    return stale


def save_checkpoint(path: str | os.PathLike[str], tree: PyTree) -> Path:
    """Write ``tree`` (dicts, tuples, lists; arrays or numbers as leaves) to ``path`` as ``.npz``,
    one array per leaf named by its key path (``"params/0/w"``).

    The file is written to a temporary file in the same folder and then moved over ``path``, so a
    crash mid-save leaves the previous checkpoint whole; temporaries left by a killed save (its
    process is gone) are removed by the next one, a concurrent writer's are not. The file's permissions follow
    the umask. Returns the path written.
    """
    path = Path(path)
    arrays = {_key(p): np.asarray(leaf) for p, leaf in tree_leaves_with_path(tree)}
    for key, array in arrays.items():
        if array.dtype.hasobject:
            raise TypeError(f"checkpoint: leaf {key!r} holds Python objects; only numeric and string arrays are saved")
    path.parent.mkdir(parents=True, exist_ok=True)
    for stale in _temporaries(path):
        stale.unlink(missing_ok=True)
    tmp = path.parent / f".{path.name}.{os.getpid()}.{secrets.token_hex(8)}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # 0o666 minus the umask, like open()
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)  # type: ignore[arg-type]  # numpy's stub misreads **kwds
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def _npy_header(member: Any) -> tuple[tuple[int, ...], np.dtype, int]:
    """``(shape, dtype, header bytes)`` of an open ``.npy`` member, reading only its header (format
    versions 1.0, 2.0 and 3.0; ValueError for any other)."""
    version = np.lib.format.read_magic(member)
    # 3.0 is 2.0 with a UTF-8 header: the same layout, differing only in non-ASCII field names of structured dtypes.
    readers = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0,
               (3, 0): np.lib.format.read_array_header_2_0}  # fmt: skip
    if version not in readers:
        raise ValueError(f"unknown npy format version {version[0]}.{version[1]}")
    shape, _, dtype = readers[version](member)
    return shape, dtype, member.tell()


def _check_member(path: Path, archive: zipfile.ZipFile, info: zipfile.ZipInfo, template: Any, file_size: int) -> None:
    """Refuse a member whose npy header does not match ``template`` or promises more data than it holds,
    before any of its data is read."""
    key = info.filename.removesuffix(".npy")
    with archive.open(info) as member:
        try:
            shape, dtype, header = _npy_header(member)
        except ValueError as error:
            raise ValueError(f"checkpoint {path}: {key!r} is not an npy array: {error}") from None
    if dtype.hasobject:
        raise ValueError(f"checkpoint {path}: {key!r} holds Python objects (dtype {dtype}); only arrays are read")
    if template is not None:
        template = np.asarray(template)
        if shape != template.shape:
            raise ValueError(f"checkpoint {path}: {key!r} has shape {shape}, expected {template.shape}")
        if template.dtype.kind in "biuf" and dtype.kind not in "biuf":
            raise ValueError(f"checkpoint {path}: {key!r} has dtype {dtype}, expected a number like {template.dtype}")
    nbytes = math.prod(shape) * dtype.itemsize
    if template is None and nbytes > file_size:  # a free-shaped leaf cannot hold more than the file
        raise ValueError(
            f"checkpoint {path}: {key!r} claims shape {shape} ({nbytes} bytes), "
            f"more than the whole file ({file_size} bytes)"
        )
    if info.file_size != header + nbytes:
        raise ValueError(
            f"checkpoint {path}: {key!r} claims shape {shape} of {dtype} ({nbytes} bytes) "
            f"but holds {info.file_size - header}"
        )


def load_checkpoint(path: str | os.PathLike[str], like: PyTree, *, strict: bool = True) -> PyTree:
    """Read a file written by :func:`save_checkpoint` into a tree shaped like ``like``.

    Every leaf of ``like`` must be in the file with the same shape (a leaf of ``like`` that is
    ``None`` accepts any shape no larger than the file); leaves are cast to the dtype of ``like``'s
    leaf. Keys, shapes, dtypes and sizes are checked from the zip directory and the npy headers
    before any array is loaded, so a hostile file costs no more memory than an honest one. Missing,
    extra or misshapen entries, and files that are not a whole ``.npz``, raise ValueError naming
    them (FileNotFoundError if there is no file); ``strict=False`` ignores entries that are not in
    ``like``, to read part of a file. Never unpickles.
    """
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"checkpoint {path}: is a folder, expected an .npz file")
    wanted = tree_leaves_with_path(like)
    templates = {_key(p): template for p, template in wanted}
    try:
        with zipfile.ZipFile(path) as archive:
            members = {info.filename.removesuffix(".npy"): info for info in archive.infolist()}
            if len(members) != len(archive.infolist()):
                raise ValueError(f"checkpoint {path}: holds the same key twice")
            missing = sorted(set(templates) - set(members))
            extra = sorted(set(members) - set(templates)) if strict else []  # not strict: others may be there
            if missing or extra:
                raise ValueError(
                    f"checkpoint {path}: does not match the expected tree; "
                    f"missing {missing[:5]}, unexpected {extra[:5]}"
                )
            file_size = path.stat().st_size
            for key, template in templates.items():
                _check_member(path, archive, members[key], template, file_size)
            stored = {}
            for key in templates:
                with archive.open(members[key]) as member:
                    stored[key] = np.lib.format.read_array(member, allow_pickle=False)
    except (zipfile.BadZipFile, EOFError, OSError) as error:
        if isinstance(error, FileNotFoundError):
            raise
        raise ValueError(f"checkpoint {path}: not a readable .npz file (truncated or damaged?): {error}") from None
    leaves: list[Any] = []
    for key, template in templates.items():
        value = stored[key]
        if template is not None:
            value = value.astype(np.asarray(template).dtype, copy=False)
        leaves.append(value)
    return tree_unflatten(tree_structure(like), leaves)
