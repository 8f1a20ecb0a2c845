"""check_vjp's structural checks: shapes and dtypes mirror, nothing modified in place, vjp repeatable."""

from __future__ import annotations

import numpy as np

from funcnn.tree import PyTree, keystr, tree_leaves_with_path, tree_structure


class VJPCheckError(AssertionError):
    """A vjp is wrong: its values, its structure, or its purity. The message names the leaf.

    For a wrong value, ``check`` is the failing :class:`funcnn.LeafCheck` (its ``path``, ``index``,
    ``n_checked`` and ``n_wrong`` say where); it is None for structural failures.
    """

    def __init__(self, message: str, check: object = None) -> None:
        super().__init__(message)
        self.check = check


def input_name(path: tuple) -> str:
    """The name of a leaf of ``(params, x)``: ``params[0]["w"]`` or ``x``."""
    return keystr(path[1:], "params" if path[0] == 0 else "x")


def assert_unchanged(now: PyTree, before: PyTree, when: str) -> None:
    """``now`` and ``before`` are ``(params, x)`` pairs, or ``(dy,)`` singletons."""
    for (path, a), (_, b) in zip(tree_leaves_with_path(now), tree_leaves_with_path(before)):
        if not np.array_equal(a, b, equal_nan=a.dtype.kind == "f"):
            name = input_name(path) if len(now) == 2 else "dy"
            raise VJPCheckError(f"check_vjp: {when} modified its input {name} in place; layers must be pure")


def assert_like(grad: PyTree, ref: PyTree, grad_root: str, ref_root: str) -> None:
    """``grad`` has ``ref``'s tree structure, and each leaf its shape and dtype."""
    if tree_structure(grad) != tree_structure(ref):
        raise VJPCheckError(
            f"check_vjp: {grad_root} must mirror {ref_root}, but their structures differ:\n"
            f"  {ref_root}: {tree_structure(ref)!r}\n  {grad_root}: {tree_structure(grad)!r}"
        )
    for (path, g), (_, r) in zip(tree_leaves_with_path(grad), tree_leaves_with_path(ref)):
        g, r = np.asarray(g), np.asarray(r)
        if g.shape != r.shape or g.dtype != r.dtype:
            raise VJPCheckError(
                f"check_vjp: {keystr(path, grad_root)} has shape {g.shape} and dtype {g.dtype}, "
                f"but {keystr(path, ref_root)} has shape {r.shape} and dtype {r.dtype}"
            )


def assert_repeatable(a: PyTree, b: PyTree, nondet_tol: float) -> None:
    """Two vjp results agree: exactly, or with ``nondet_tol`` > 0 to within ``nondet_tol`` times
    the largest magnitude of each leaf (NaN matches NaN)."""
    for (path, x), (_, y) in zip(tree_leaves_with_path(a), tree_leaves_with_path(b)):
        x, y = np.asarray(x), np.asarray(y)
        if np.array_equal(x, y, equal_nan=True):
            continue
        scale = float(np.max(np.abs(x), initial=0.0, where=np.isfinite(x)))
        difference = float(np.max(np.abs(x.astype(np.float64) - y)))
        if not difference <= nondet_tol * scale:
            raise VJPCheckError(
                f"check_vjp: calling vjp twice with the same dy gave different {keystr(path, '(dparams, dx)')}: "
                f"they differ by up to {difference:.3g} (allowed: nondet_tol {nondet_tol:g} x largest |value| {scale:.3g})"
            )


def assert_zero_for_zero(zero: PyTree) -> None:
    """``vjp(0)`` is all zeros."""
    for key_path, leaf in tree_leaves_with_path(zero):
        if np.any(leaf != 0):
            name = keystr(key_path, "(dparams, dx)")
            raise VJPCheckError(f"check_vjp: vjp(0) must be 0, but {name} is not (does the vjp ignore dy?)")
