"""``check_vjp``: finite-difference any layer or composition and say which leaf is wrong."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from funcnn.tree import PyTree, keystr, tree_flatten, tree_leaves, tree_leaves_with_path, tree_map, tree_structure, tree_unflatten

__all__ = ["LeafCheck", "NonDifferentiableError", "NonDifferentiableWarning", "VJPCheckError", "VJPReport", "check_vjp"]

# Central-difference step and tolerance (relative to the directional derivative) per dtype.
STEP = {np.dtype(np.float64): 1e-5, np.dtype(np.float32): 1e-3}
RTOL = {np.dtype(np.float64): 1e-5, np.dtype(np.float32): 2e-2}


RANK = {"ok": 0, "kink": 1, "wrong": 2}


def _probes(mode: str, shape: tuple[int, ...], rng: np.random.Generator, directions: int) -> Iterator[tuple[tuple[int, ...] | None, np.ndarray]]:
    """``(index, direction)`` pairs: random directions in fast mode, unit vectors in full mode."""
    if mode == "fast":
        for _ in range(directions):
            yield None, rng.standard_normal(shape)
        return
    for index in np.ndindex(shape):
        v = np.zeros(shape)
        v[index] = 1.0
        yield index, v


class VJPCheckError(AssertionError):
    """A vjp is wrong: its values, its structure, or its purity. The message names the leaf."""


class NonDifferentiableError(VJPCheckError):
    """The point checked is (numerically) a kink; raised instead of a warning with ``on_kink="raise"``."""


class NonDifferentiableWarning(UserWarning):
    """A leaf could not be checked because the function has a kink within one step of the point."""


@dataclass(frozen=True)
class LeafCheck:
    """The check of one leaf: ``status`` is "ok", "kink" (not differentiable here) or "wrong".

    ``analytic`` and ``numeric`` are the worst pair seen (a directional derivative in fast mode, one
    element's derivative in full mode, at ``index``); ``rel_error`` is the course's formula.
    """

    path: str
    analytic: float
    numeric: float
    rel_error: float
    status: str
    index: tuple[int, ...] | None = None


@dataclass
class VJPReport:
    """What :func:`check_vjp` measured, one :class:`LeafCheck` per float leaf of params and x."""

    mode: str
    dtype: str
    step: float
    rtol: float
    leaves: list[LeafCheck] = field(default_factory=list)

    @property
    def max_rel_error(self) -> float:
        return max((leaf.rel_error for leaf in self.leaves if leaf.status == "ok"), default=0.0)

    @property
    def kinks(self) -> list[LeafCheck]:
        return [leaf for leaf in self.leaves if leaf.status == "kink"]

    def __getitem__(self, path: str) -> LeafCheck:
        for leaf in self.leaves:
            if leaf.path == path:
                return leaf
        raise KeyError(f"no leaf {path!r}; leaves are {[leaf.path for leaf in self.leaves]}")

    def __str__(self) -> str:
        width = max([len(leaf.path) for leaf in self.leaves] + [4])
        lines = [f"check_vjp ({self.mode} mode, {self.dtype}, step {self.step:g}, rtol {self.rtol:g})"]
        lines.append(f"  {'leaf':<{width}}  {'rel error':>9}  {'analytic':>12}  {'numeric':>12}  status")
        for leaf in self.leaves:
            lines.append(
                f"  {leaf.path:<{width}}  {leaf.rel_error:9.2e}  {leaf.analytic:12.6g}  {leaf.numeric:12.6g}  {leaf.status}"
            )
        return "\n".join(lines)


def _copy_tree(tree: PyTree, dtype: np.dtype | None) -> PyTree:
    def copy(leaf: Any) -> Any:
        leaf = np.asarray(leaf)
        if dtype is not None and leaf.dtype.kind == "f":
            return leaf.astype(dtype)
        return leaf.copy()

    return tree_map(copy, tree)


def _input_name(path: tuple) -> str:
    """The name of a leaf of ``(params, x)``: ``params[0]["w"]`` or ``x``."""
    return keystr(path[1:], "params" if path[0] == 0 else "x")


def _assert_unchanged(now: PyTree, before: PyTree, when: str) -> None:
    """``now`` and ``before`` are ``(params, x)`` pairs, or ``(dy,)`` singletons."""
    for (path, a), (_, b) in zip(tree_leaves_with_path(now), tree_leaves_with_path(before)):
        if not np.array_equal(a, b, equal_nan=a.dtype.kind == "f"):
            name = _input_name(path) if len(now) == 2 else "dy"
            raise VJPCheckError(f"check_vjp: {when} modified its input {name} in place; layers must be pure")


def _assert_like(grad: PyTree, ref: PyTree, grad_root: str, ref_root: str) -> None:
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


def _assert_same(a: PyTree, b: PyTree, message: str) -> None:
    for (path, x), (_, y) in zip(tree_leaves_with_path(a), tree_leaves_with_path(b)):
        if not np.array_equal(x, y, equal_nan=True):
            raise VJPCheckError(message.format(path=keystr(path, "(dparams, dx)")))


def check_vjp(
    f: Callable[[PyTree, np.ndarray], tuple[np.ndarray, Callable]],
    params: PyTree,
    x: np.ndarray,
    *,
    mode: Literal["fast", "full"] = "fast",
    dtype: Any = np.float64,
    step: float | None = None,
    rtol: float | None = None,
    directions: int = 2,
    seed: int = 0,
    on_kink: Literal["warn", "raise", "ignore"] = "warn",
) -> VJPReport:
    """Check ``f``'s vjp against central finite differences of ``<dy, f(params, x)>``.

    ``f`` is any layer or composition ``(params, x) -> (y, vjp)``. Every float leaf of ``params``
    and ``x`` is checked on its own: in "fast" mode along ``directions`` random directions (inner
    products, as jax's check_vjp), in "full" mode element by element. Inputs are cast to ``dtype``
    (float64 by default; ``None`` keeps theirs), and step and tolerance follow the dtype.

    It also checks that dparams mirrors params and dx mirrors x (structure, shapes, dtypes), that
    ``vjp(0) == 0``, that two calls of the vjp agree, and that nothing is modified in place.

    Returns a :class:`VJPReport`. Raises :class:`VJPCheckError` (an AssertionError) naming the
    failing leaf by key path with the analytic and numeric values and the relative error. A leaf
    whose numbers disagree because the point sits on a kink (ReLU at 0, a max-pool near-tie) is
    reported with status "kink" and a :class:`NonDifferentiableWarning` (``on_kink`` changes that).
    """
    if mode not in ("fast", "full"):
        raise ValueError(f"check_vjp: mode must be 'fast' or 'full', got {mode!r}")
    params_in, x_in = _copy_tree(params, dtype), _copy_tree(x, dtype)
    params_ref, x_ref = _copy_tree(params_in, None), _copy_tree(x_in, None)
    y, vjp = f(params_in, x_in)
    y = np.asarray(y)
    _assert_unchanged((params_in, x_in), (params_ref, x_ref), "the forward pass")
    if y.dtype.kind != "f":
        raise VJPCheckError(f"check_vjp: the output must be a float array, got dtype {y.dtype}")

    rng = np.random.default_rng(seed)
    dy = rng.standard_normal(y.shape).astype(y.dtype)
    dy_ref = dy.copy()
    grads = vjp(dy)
    if not isinstance(grads, tuple) or len(grads) != 2:
        raise VJPCheckError(f"check_vjp: vjp(dy) must return a pair (dparams, dx), got {type(grads).__name__}")
    _assert_like(grads[0], params_in, "dparams", "params")
    _assert_like(grads[1], x_in, "dx", "x")
    _assert_unchanged((dy,), (dy_ref,), "vjp")
    _assert_unchanged((params_in, x_in), (params_ref, x_ref), "vjp")
    _assert_same(vjp(dy.copy()), grads, "check_vjp: calling vjp twice with the same dy gave different {path}")
    zero = vjp(np.zeros_like(dy))
    for key_path, leaf in tree_leaves_with_path(zero):
        if np.any(leaf != 0):
            raise VJPCheckError(f"check_vjp: vjp(0) must be 0, but {keystr(key_path, '(dparams, dx)')} is not (does the vjp ignore dy?)")

    check_dtype = np.dtype(dtype) if dtype is not None else y.dtype
    h = step if step is not None else STEP.get(check_dtype, 1e-3)
    tol = rtol if rtol is not None else RTOL.get(check_dtype, 2e-2)
    report = VJPReport(mode, str(check_dtype), h, tol)
    dy64 = dy.astype(np.float64)

    inputs = (params_in, x_in)
    leaves, treedef = tree_flatten(inputs)
    grad_leaves = tree_leaves(grads)
    paths = [_input_name(key_path) for key_path, _ in tree_leaves_with_path(inputs)]
    # Rounding in f is about eps times the magnitudes inside it (taken as at least 1), over the step.
    atol = 10 * float(np.finfo(check_dtype).eps) * (1 + float(np.sum(np.abs(dy64 * y)))) / h

    def output(k: int, leaf: np.ndarray) -> np.ndarray:
        perturbed = list(leaves)
        perturbed[k] = leaf
        return np.asarray(f(*tree_unflatten(treedef, perturbed))[0], dtype=np.float64)

    def contract(difference: np.ndarray) -> float:
        # Outputs are subtracted before the contraction, so those that did not move add exactly 0.
        return float(np.vdot(dy64.ravel(), difference.ravel()))

    y64 = y.astype(np.float64)

    def probe(k: int, path: str, grad: np.ndarray, index: tuple[int, ...] | None, v: np.ndarray) -> LeafCheck:
        """Compare the analytic and numeric derivative of leaf ``k`` along ``v``."""
        leaf = leaves[k]
        plus = output(k, (leaf + h * v).astype(leaf.dtype))
        minus = output(k, (leaf - h * v).astype(leaf.dtype))
        numeric = contract(plus - minus) / (2 * h)
        analytic = float(np.vdot(np.asarray(grad, dtype=np.float64).ravel(), v.ravel()))
        bound = atol + tol * max(abs(analytic), abs(numeric))
        status = "ok"
        if not abs(analytic - numeric) <= bound:
            forward, backward = contract(plus - y64) / h, contract(y64 - minus) / h
            lo, hi = min(forward, backward), max(forward, backward)
            status = "wrong"
            if hi - lo > bound:
                # One-sided slopes that differ mean a kink within a step, if they do not come from
                # curvature: on a kink at the point they stay the same at half the step, while
                # curvature moves each by about a quarter of their difference.
                forward_half = contract(output(k, (leaf + h / 2 * v).astype(leaf.dtype)) - y64) / (h / 2)
                backward_half = contract(y64 - output(k, (leaf - h / 2 * v).astype(leaf.dtype))) / (h / 2)
                piecewise_linear = abs(forward_half - forward) + abs(backward_half - backward) < (hi - lo) / 4
                if piecewise_linear or lo - bound <= analytic <= hi + bound:
                    status = "kink"
        rel = abs(analytic - numeric) / max(1e-8, abs(analytic) + abs(numeric))
        return LeafCheck(path, analytic, numeric, rel if np.isfinite(rel) else np.inf, status, index)

    for k, (leaf, grad, path) in enumerate(zip(leaves, grad_leaves, paths)):
        if leaf.dtype.kind != "f" or leaf.size == 0:
            continue
        checks = [probe(k, path, grad, index, v) for index, v in _probes(mode, leaf.shape, rng, directions)]
        worst = max(checks, key=lambda c: (RANK[c.status], c.rel_error))
        report.leaves.append(worst)
        if worst.status == "wrong":
            where = f" at element {worst.index}" if worst.index is not None else " along a random direction"
            raise VJPCheckError(
                f"check_vjp: the gradient of {path} is wrong{where}: analytic {worst.analytic:.8g}, "
                f"numeric {worst.numeric:.8g}, relative error {worst.rel_error:.2e} (tolerance {tol:g})\n{report}"
            )
    if report.kinks and on_kink != "ignore":
        message = "check_vjp: not differentiable within one step of the point, so not checked: " + ", ".join(
            leaf.path for leaf in report.kinks
        )
        if on_kink == "raise":
            raise NonDifferentiableError(f"{message}\n{report}")
        warnings.warn(message, NonDifferentiableWarning, stacklevel=2)
    return report
