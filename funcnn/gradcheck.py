"""``check_vjp``: finite-difference any layer or composition and say which leaf, and which element, is wrong."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from funcnn._vjp_probe import ROUNDING, LeafCheck, LeafProbe, check_elements, fast_check
from funcnn._vjp_structure import (
    VJPCheckError,
    assert_like,
    assert_repeatable,
    assert_unchanged,
    assert_zero_for_zero,
    input_name,
)
from funcnn.tree import PyTree, tree_flatten, tree_leaves, tree_leaves_with_path, tree_map, tree_unflatten
from funcnn.validation import int_at_least, number_at_least

__all__ = ["LeafCheck", "NonDifferentiableError", "NonDifferentiableWarning", "VJPCheckError", "VJPReport", "check_vjp"]

# Central-difference step and tolerance (relative to the directional derivative) per numeric dtype.
STEP = {np.dtype(np.float64): 1e-5, np.dtype(np.float32): 1e-3}
RTOL = {np.dtype(np.float64): 1e-5, np.dtype(np.float32): 2e-2}
# Random directions per leaf in fast mode: the smallest number that catches a 1% error in one element
# of a 10,000-element float64 leaf with probability > 0.999: 5,000 of 5,000 (benchmarks/probe_detection.py).
PROBES = 2
KINK_POLICIES = ("warn", "raise", "ignore")


class NonDifferentiableError(VJPCheckError):
    """The point checked is (numerically) a kink; raised instead of a warning with ``on_kink="raise"``."""


class NonDifferentiableWarning(UserWarning):
    """A leaf could not be checked because the function has a kink within one step of the point."""


@dataclass
class VJPReport:
    """What :func:`check_vjp` measured, one :class:`LeafCheck` per float leaf of params and x.

    ``dtype`` is the dtype the analytic vjp ran in, ``numeric_dtype`` the one of the finite differences."""

    mode: str
    dtype: str
    step: float
    rtol: float
    leaves: list[LeafCheck] = field(default_factory=list)
    numeric_dtype: str = ""

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
        dtypes = self.dtype if self.numeric_dtype in ("", self.dtype) else f"{self.dtype} analytic, {self.numeric_dtype} numeric"
        lines = [f"check_vjp ({self.mode} mode, {dtypes}, step {self.step:g}, rtol {self.rtol:g})"]
        lines.append(f"  {'leaf':<{width}}  {'rel error':>9}  {'analytic':>12}  {'numeric':>12}  status")
        for leaf in self.leaves:
            counted = f" ({leaf.n_wrong} of {leaf.n_checked} elements wrong)" if leaf.n_wrong else ""
            lines.append(
                f"  {leaf.path:<{width}}  {leaf.rel_error:9.2e}  {leaf.analytic:12.6g}  {leaf.numeric:12.6g}  {leaf.status}{counted}"
            )
        return "\n".join(lines)


def _float_dtype(value: Any, what: str) -> np.dtype:
    """float32 or float64; anything else (float16, ints, complex) is refused."""
    try:
        dtype = np.dtype(value)
    except TypeError:
        dtype = None
    if dtype not in STEP:
        raise ValueError(f"check_vjp: {what} must be float32 or float64 (the dtypes it can judge), got {value!r}")
    return dtype


def _cast_tree(tree: PyTree, dtype: np.dtype | None) -> PyTree:
    """A copy of ``tree`` with float leaves in ``dtype`` (None: their own)."""

    def copy(leaf: Any) -> Any:
        leaf = np.asarray(leaf)
        if dtype is not None and leaf.dtype.kind == "f":
            return leaf.astype(dtype)
        return leaf.copy()

    return tree_map(copy, tree)


def _wrong(check: LeafCheck, tol: float, report: VJPReport) -> VJPCheckError:
    where = f" at element {check.index}" if check.index is not None else " along a random direction"
    message = (
        f"check_vjp: the gradient of {check.path} is wrong{where}: analytic {check.analytic:.8g}, "
        f"numeric {check.numeric:.8g}, relative error {check.rel_error:.2e} (tolerance {tol:g})"
    )
    if check.n_checked:
        message += f"\n  {check.located()}"
    return VJPCheckError(f"{message}\n{report}", check)


def check_vjp(
    f: Callable[[PyTree, np.ndarray], tuple[np.ndarray, Callable]],
    params: PyTree,
    x: np.ndarray,
    *,
    mode: Literal["fast", "full"] = "fast",
    dtype: Any = np.float64,
    numeric_dtype: Any = None,
    step: float | None = None,
    rtol: float | None = None,
    probes: int | None = None,
    directions: int | None = None,
    nondet_tol: float = 0.0,
    seed: int = 0,
    on_kink: Literal["warn", "raise", "ignore"] = "warn",
) -> VJPReport:
    """Check ``f``'s vjp against central finite differences of ``<dy, f(params, x)>``.

    ``f`` is any layer or composition ``(params, x) -> (y, vjp)``. Every float leaf of ``params``
    and ``x`` is checked on its own: in "fast" mode along ``probes`` random directions (inner
    products, as jax's check_vjp; ``directions`` is the old name), in "full" mode element by
    element. A leaf that fails in fast mode is re-checked element by element (all of it when small;
    a random sample plus a bisection over slices when large) to find the wrong elements.

    Inputs are cast to ``dtype`` (float64 by default; ``None`` keeps theirs; float32 or float64
    only), and the vjp runs in it. The finite differences run in ``numeric_dtype`` (default: the
    same), with step and tolerance by that dtype; ``dtype=np.float32, numeric_dtype=np.float64``
    checks float32 kernels as they run in training, allowing for their rounding.

    It also checks that dparams mirrors params and dx mirrors x (structure, shapes, dtypes), that
    ``vjp(0) == 0``, that two calls of the vjp agree (to within ``nondet_tol`` times each leaf's
    largest magnitude; default exactly), and that nothing is modified in place.

    Returns a :class:`VJPReport`. Raises :class:`VJPCheckError` (an AssertionError) whose ``check``
    is the failing :class:`LeafCheck` and whose message names the leaf, the element, the analytic and
    numeric values and the relative error compared with the tolerance. A leaf whose numbers disagree
    because the point sits on a kink (ReLU at 0, a max-pool near-tie) is reported with status
    "kink" and a :class:`NonDifferentiableWarning` (``on_kink`` changes that).
    """
    if mode not in ("fast", "full"):
        raise ValueError(f"check_vjp: mode must be 'fast' or 'full', got {mode!r}")
    if on_kink not in KINK_POLICIES:
        raise ValueError(f"check_vjp: on_kink must be one of {KINK_POLICIES}, got {on_kink!r}")
    if probes is not None and directions is not None:
        raise ValueError("check_vjp: give probes or directions (its old name), not both")
    n_probes = int_at_least("check_vjp", "probes", probes if probes is not None else directions if directions is not None else PROBES, 1)
    analytic_dtype = None if dtype is None else _float_dtype(dtype, "dtype")
    h = None if step is None else number_at_least("check_vjp", "step", step, 0, strict=True)
    tol = None if rtol is None else number_at_least("check_vjp", "rtol", rtol, 0, strict=True)
    number_at_least("check_vjp", "nondet_tol", nondet_tol, 0)

    params_in, x_in = _cast_tree(params, analytic_dtype), _cast_tree(x, analytic_dtype)
    inputs = (params_in, x_in)
    leaves, treedef = tree_flatten(inputs)
    if analytic_dtype is None:
        for path, leaf in tree_leaves_with_path(inputs):
            if leaf.dtype.kind == "f":
                _float_dtype(leaf.dtype, f"with dtype=None, {input_name(path)}'s dtype")
    inputs_ref = _cast_tree(inputs, None)
    y, vjp = f(params_in, x_in)
    y = np.asarray(y)
    assert_unchanged(inputs, inputs_ref, "the forward pass")
    if y.dtype.kind != "f":
        raise VJPCheckError(f"check_vjp: the output must be a float array, got dtype {y.dtype}")

    rng = np.random.default_rng(seed)
    dy = rng.standard_normal(y.shape).astype(y.dtype)
    dy_ref = dy.copy()
    grads = vjp(dy)
    if not isinstance(grads, tuple) or len(grads) != 2:
        raise VJPCheckError(f"check_vjp: vjp(dy) must return a pair (dparams, dx), got {type(grads).__name__}")
    assert_like(grads[0], params_in, "dparams", "params")
    assert_like(grads[1], x_in, "dx", "x")
    assert_unchanged((dy,), (dy_ref,), "vjp")
    assert_unchanged(inputs, inputs_ref, "vjp")
    assert_repeatable(vjp(dy.copy()), grads, float(nondet_tol))
    assert_zero_for_zero(vjp(np.zeros_like(dy)))

    check_dtype = analytic_dtype or _float_dtype(y.dtype, "the output's dtype")
    num_dtype = check_dtype if numeric_dtype is None else _float_dtype(numeric_dtype, "numeric_dtype")
    h = h or STEP[num_dtype]
    tol = tol or RTOL[num_dtype]
    report = VJPReport(mode, str(check_dtype), h, tol, numeric_dtype=str(num_dtype))
    dy64 = dy.astype(np.float64)
    num_leaves = tree_leaves(_cast_tree(inputs, num_dtype)) if num_dtype != check_dtype else leaves
    y_num = y if num_dtype == check_dtype else np.asarray(f(*tree_unflatten(treedef, num_leaves))[0])
    y64 = y_num.astype(np.float64)
    # Rounding in f is about eps times the magnitudes inside it (taken as at least 1), over the step.
    atol = 10 * float(np.finfo(num_dtype).eps) * (1 + float(np.sum(np.abs(dy64 * y64)))) / h
    rounding = ROUNDING * float(np.finfo(check_dtype).eps) + float(nondet_tol)

    def contract(difference: np.ndarray) -> float:
        # Outputs are subtracted before the contraction, so those that did not move add exactly 0.
        return float(np.vdot(dy64.ravel(), difference.ravel()))

    def output_of(k: int) -> Callable[[np.ndarray], np.ndarray]:
        def output(leaf: np.ndarray) -> np.ndarray:
            perturbed = list(num_leaves)
            perturbed[k] = leaf
            return np.asarray(f(*tree_unflatten(treedef, perturbed))[0], dtype=np.float64)

        return output

    paths = [input_name(key_path) for key_path, _ in tree_leaves_with_path(inputs)]
    for k, (leaf, grad, path) in enumerate(zip(num_leaves, tree_leaves(grads), paths)):
        if leaf.dtype.kind != "f" or leaf.size == 0:
            continue
        probe = LeafProbe(path, leaf, np.asarray(grad, dtype=np.float64), output_of(k), contract, y64, h, tol, atol, rounding)
        if mode == "full":
            check = check_elements(probe, range(leaf.size))
        else:
            check = fast_check(probe, [rng.standard_normal(leaf.shape) for _ in range(n_probes)], rng)
        report.leaves.append(check)
        if check.status == "wrong":
            raise _wrong(check, tol, report)
    if report.kinks and on_kink != "ignore":
        message = "check_vjp: not differentiable within one step of the point, so not checked: " + ", ".join(
            leaf.path for leaf in report.kinks
        )
        if on_kink == "raise":
            raise NonDifferentiableError(f"{message}\n{report}")
        warnings.warn(message, NonDifferentiableWarning, stacklevel=2)
    return report
