"""check_vjp's structural checks: the vjp's result mirrors (params, x) in structure, shapes and dtypes,
nothing is modified in place, the vjp is repeatable and linear enough that ``vjp(0) == 0``."""

from __future__ import annotations

from typing import Any

import numpy as np

from funcnn.core import LayerFn
from funcnn.gradcheck._report import VJPCheckError
from funcnn.tree import (
    KeyPath,
    PyTree,
    keystr,
    tree_flatten,
    tree_leaves_with_path,
    tree_map,
    tree_structure,
    tree_unflatten,
)


def input_name(path: KeyPath) -> str:
    """The name of a leaf of ``(params, x)``: ``params[0]["w"]`` or ``x``."""
    return keystr(path[1:], "params" if path[0] == 0 else "x")


def run_checked(
    f: LayerFn, inputs: PyTree, rng: np.random.Generator, nondet_tol: float
) -> tuple[np.ndarray, np.ndarray, tuple[PyTree, np.ndarray]]:
    """Run ``f(*inputs)`` and its vjp on a random ``dy`` (drawn from ``rng``), checking the structure.

    ``inputs`` is ``(params, x)``. Returns ``(y, dy, (dparams, dx))``; raises :class:`VJPCheckError`
    when the output is not a float array, the vjp's result does not mirror ``inputs``, anything is
    modified in place, two calls of the vjp disagree (beyond ``nondet_tol``) or ``vjp(0) != 0``.
    """
    assert_finite(inputs)
    before = copy_tree(inputs)
    y, vjp = f(*inputs)
    y = np.asarray(y)
    assert_unchanged(inputs, before, "the forward pass")
    if y.dtype.kind != "f":
        raise VJPCheckError(f"check_vjp: the output must be a float array, got dtype {y.dtype}")
    assert_finite_output(y)
    assert_repeatable_forward(np.asarray(f(*inputs)[0]), y, nondet_tol)
    dy = rng.standard_normal(y.shape).astype(y.dtype)
    dy_before = dy.copy()
    grads = vjp(dy)
    if not isinstance(grads, tuple) or len(grads) != 2:
        raise VJPCheckError(f"check_vjp: vjp(dy) must return a pair (dparams, dx), got {type(grads).__name__}")
    assert_like(grads[0], inputs[0], "dparams", "params")
    assert_like(grads[1], inputs[1], "dx", "x")
    assert_unchanged((dy,), (dy_before,), "vjp")
    assert_unchanged(inputs, before, "vjp")
    assert_repeatable(vjp(dy.copy()), grads, nondet_tol)
    assert_zero_for_zero(vjp(np.zeros_like(dy)))
    return y, dy, grads


def layer_result(f: LayerFn, result: Any) -> tuple[Any, Any]:
    """``result`` as ``(y, vjp)``: what every layer returns; anything else is refused by name."""
    if isinstance(result, tuple) and len(result) == 2 and callable(result[1]):
        return result
    name = getattr(f, "name", None) or getattr(f, "__name__", type(f).__name__)
    if isinstance(result, tuple):
        got = f"a tuple of {len(result)}" + ("" if len(result) != 2 else " whose second element is not callable")
    else:
        got = f"{type(result).__name__}" + (f" of shape {result.shape}" if isinstance(result, np.ndarray) else "")
    raise VJPCheckError(f"check_vjp: {name} must return a pair (y, vjp) as every layer does, got {got}")


def assert_finite(inputs: PyTree) -> None:
    """Every float leaf of ``(params, x)`` is finite: differences of NaN or inf say nothing about a vjp."""
    for path, leaf in tree_leaves_with_path(inputs):
        array = np.asarray(leaf)
        if array.dtype.kind == "f" and not np.isfinite(array).all():
            bad = np.argwhere(~np.isfinite(array))
            where = f" (the first at {tuple(int(i) for i in bad[0])})" if array.ndim else ""
            raise VJPCheckError(
                f"check_vjp: {input_name(path)} holds {len(bad)} NaN or infinite values{where}: "
                "a gradient can only be checked at a finite point"
            )


def assert_finite_output(y: np.ndarray) -> None:
    """The output at the point is finite (finite inputs can still give a log of 0, say)."""
    if not np.isfinite(y).all():
        bad = np.argwhere(~np.isfinite(y))
        raise VJPCheckError(
            f"check_vjp: the output holds {len(bad)} NaN or infinite values for finite inputs "
            f"(the first at {tuple(int(i) for i in bad[0])}): the function is not finite here, so not checkable"
        )


def assert_repeatable_forward(again: np.ndarray, y: np.ndarray, nondet_tol: float) -> None:
    """A second forward pass on the same inputs gives the same output (to ``nondet_tol`` of its magnitude):
    finite differences of a function that gives two answers for one input measure its noise, not its slope."""
    if again.shape == y.shape and np.array_equal(again, y):
        return
    difference = float(np.max(np.abs(again.astype(np.float64) - y))) if again.shape == y.shape else np.inf
    if not difference <= nondet_tol * float(np.max(np.abs(y), initial=0.0)):
        raise VJPCheckError(
            f"check_vjp: the function gave two different outputs for the same inputs (up to {difference:.3g} apart): "
            "a forward with randomness of its own cannot be checked; fix its generator "
            "(fn.bind(layer, rng=np.random.default_rng(0)), or a fresh seeded generator per call)"
        )


def copy_tree(tree: PyTree, dtype: np.dtype | None = None) -> PyTree:
    """A copy of ``tree`` with its leaves as arrays, the float ones cast to ``dtype`` (None: their own)."""

    def copy(leaf: Any) -> np.ndarray:
        array = np.asarray(leaf)
        return array.astype(dtype) if dtype is not None and array.dtype.kind == "f" else array.copy()

    return tree_map(copy, tree)


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
        if np.asarray(r).dtype.kind in "iub" or g is None:  # an integer input (token indices) has no cotangent
            if g is not None or np.asarray(r).dtype.kind not in "iub":
                raise VJPCheckError(
                    f"check_vjp: {keystr(path, grad_root)} must be None exactly when {keystr(path, ref_root)} "
                    f"is an integer array (it is {np.asarray(r).dtype}), got {type(g).__name__}"
                )
            continue
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
        if x is None and y is None:  # an integer input's cotangent
            continue
        x, y = np.asarray(x), np.asarray(y)
        if np.array_equal(x, y, equal_nan=True):
            continue
        scale = float(np.max(np.abs(x), initial=0.0, where=np.isfinite(x)))
        difference = float(np.max(np.abs(x.astype(np.float64) - y)))
        if not difference <= nondet_tol * scale:
            raise VJPCheckError(
                f"check_vjp: calling vjp twice with the same dy gave different {keystr(path, '(dparams, dx)')}: "
                f"they differ by up to {difference:.3g} "
                f"(allowed: nondet_tol {nondet_tol:g} x largest |value| {scale:.3g})"
            )


def assert_zero_for_zero(zero: PyTree) -> None:
    """``vjp(0)`` is all zeros."""
    for key_path, leaf in tree_leaves_with_path(zero):
        if leaf is not None and np.any(leaf != 0):
            name = keystr(key_path, "(dparams, dx)")
            raise VJPCheckError(f"check_vjp: vjp(0) must be 0, but {name} is not (does the vjp ignore dy?)")


def flat_output(f: LayerFn) -> LayerFn:
    """``f`` with a tuple (tree) output seen as one flat array of its leaves, and its vjp taking the
    matching flat cotangent; ``f`` itself when its output is one array. The checks need one output."""

    def flat(params: PyTree, x: Any) -> tuple[np.ndarray, Any]:
        out, vjp = layer_result(f, f(params, x))
        if not isinstance(out, (tuple, list, dict)):
            return out, vjp
        leaves, treedef = tree_flatten(out)
        leaves = [np.asarray(leaf) for leaf in leaves]
        sizes = np.cumsum([leaf.size for leaf in leaves])[:-1]

        def flat_vjp(dy: np.ndarray) -> Any:
            parts = np.split(np.asarray(dy), sizes)
            return vjp(tree_unflatten(treedef, [p.reshape(leaf.shape) for p, leaf in zip(parts, leaves)]))

        return np.concatenate([leaf.ravel() for leaf in leaves]), flat_vjp

    return flat
