"""``check_vjp``: finite-difference any layer or composition and say which leaf, and which element, is wrong.

The steps, top to bottom: option checks, structural checks, finite differences, leaf-by-leaf comparison, kinks.
"""

from __future__ import annotations

import time
import warnings
from typing import Any, Literal

import numpy as np

from funcnn._checks import int_at_least, number_at_least
from funcnn.core import LayerFn
from funcnn.gradcheck._compare import STEP, LeafProbe, check_leaf, tolerance
from funcnn.gradcheck._kinks import KINK_POLICIES, KinkPolicy, report_kinks
from funcnn.gradcheck._probe import differences
from funcnn.gradcheck._report import VJPReport, wrong_gradients
from funcnn.gradcheck._rounding import rounding_spread
from funcnn.gradcheck._structure import copy_tree, flat_output, input_name, run_checked
from funcnn.tree import PyTree, tree_leaves, tree_leaves_with_path

# Random directions per leaf in fast mode: the smallest number that catches a 1% error in one element
# of a 10,000-element float64 leaf with probability > 0.999: 5,000 of 5,000 (benchmarks/probe_detection.py).
PROBES = 2
# A full check estimated to take longer than this warns, longer than the limit is refused. (The suite's own
# full checks are estimated below 20 s on a quiet machine: far from the warning on a slow or busy one.)
FULL_WARN_SECONDS = 600.0
FULL_LIMIT_SECONDS = 3600.0


def check_vjp(
    f: LayerFn,
    params: PyTree,
    x: np.ndarray,
    *,
    mode: Literal["fast", "full"] = "fast",
    dtype: Any = np.float64,
    numeric_dtype: Any = None,
    step: float | None = None,
    rtol: float | None = None,
    probes: int | None = None,
    nondet_tol: float = 0.0,
    seed: int = 0,
    on_kink: KinkPolicy = "warn",
) -> VJPReport:
    """Check ``f``'s vjp against central finite differences of ``<dy, f(params, x)>``.

    ``f`` is any layer or composition ``(params, x) -> (y, vjp)``. Every float leaf of ``params``
    and ``x`` is checked on its own: in "fast" mode along ``probes`` random directions (inner
    products, as jax's check_vjp), in "full" mode element by
    element. A leaf that fails in fast mode is re-checked element by element (all of it when small;
    a random sample plus a bisection over slices when large) to find the wrong elements.

    Inputs are cast to ``dtype`` (float64 by default; ``None`` keeps theirs; float32 or float64
    only), and the vjp runs in it. The finite differences run in ``numeric_dtype`` (default: the
    same), with step and tolerance by that dtype; ``dtype=np.float32, numeric_dtype=np.float64``
    checks float32 kernels as they run in training, allowing for their rounding (in proportion to the
    magnitudes of the terms of ``<g, v>`` and ``<dy, J v>``; cancellation inside the vjp that the output
    does not show, as behind a scalar loss or in a norm over groups of 2 values, is not allowed for).

    ``x`` and the output may be tuples (trees) of arrays; an integer leaf of ``x`` (token indices) is
    not probed and its cotangent must be ``None``.

    It also checks that dparams mirrors params and dx mirrors x (structure, shapes, dtypes), that
    ``vjp(0) == 0``, that two calls of the vjp agree (to within ``nondet_tol`` times each leaf's
    largest magnitude; default exactly), and that nothing is modified in place.

    Returns a :class:`VJPReport`. Raises :class:`VJPCheckError` (an AssertionError) whose ``check``
    is the failing :class:`LeafCheck` and whose message names the leaf, the element, the analytic and
    numeric values and the relative error compared with the tolerance. A leaf whose numbers disagree
    because the point sits on a kink (ReLU at 0, a max-pool near-tie) is reported with status
    "kink" and a :class:`NonDifferentiableWarning` (``on_kink`` changes that).

    Args:
        f: any ``(params, x) -> (y, vjp)``: a layer, a network, a network ending in a loss.
        params: its params tree.
        x: its input, an array or a tuple of arrays.
        mode: ``"fast"`` (random directions) or ``"full"`` (element by element).
        dtype: the dtype the vjp runs in (float64; None keeps the inputs').
        numeric_dtype: the dtype of the finite differences (default: ``dtype``).
        step: the central difference's step (default by dtype).
        rtol: the tolerance of the relative error (default by dtype).
        probes: random directions per leaf in fast mode (default 2).
        nondet_tol: how far two calls of the vjp may differ, relative to each leaf's largest magnitude.
        seed: draws the directions and the cotangent.
        on_kink: ``"warn"``, ``"raise"`` or ``"ignore"`` a point on a kink.

    Returns:
        A :class:`VJPReport`, one :class:`LeafCheck` per leaf.
    """
    if mode not in ("fast", "full"):
        raise ValueError(f"check_vjp: mode must be 'fast' or 'full', got {mode!r}")
    if on_kink not in KINK_POLICIES:
        raise ValueError(f"check_vjp: on_kink must be one of {KINK_POLICIES}, got {on_kink!r}")
    n_probes = int_at_least("check_vjp", "probes", PROBES if probes is None else probes, 1)
    analytic_dtype = None if dtype is None else _float_dtype(dtype, "dtype")
    h = None if step is None else number_at_least("check_vjp", "step", step, 0, strict=True)
    tol = None if rtol is None else number_at_least("check_vjp", "rtol", rtol, 0, strict=True)
    nondet = number_at_least("check_vjp", "nondet_tol", nondet_tol, 0)

    inputs = _inputs(params, x, analytic_dtype)
    f = flat_output(f)  # a tuple output (an LSTM step's (h, c)) is checked as one flat array
    rng = np.random.default_rng(seed)
    y, dy, grads = run_checked(f, inputs, rng, nondet)
    if mode == "full":
        _check_cost(f, inputs)

    check_dtype = analytic_dtype or _float_dtype(y.dtype, "the output's dtype")
    num_dtype = check_dtype if numeric_dtype is None else _float_dtype(numeric_dtype, "numeric_dtype")
    probed = differences(f, inputs, y, dy, check_dtype, num_dtype)
    tolerances = tolerance(y.astype(np.float64), dy.astype(np.float64), check_dtype, num_dtype, h, tol, nondet)
    report = VJPReport(mode, str(check_dtype), tolerances.h, tolerances.rtol, numeric_dtype=str(num_dtype))
    names = [input_name(path) for path, _ in tree_leaves_with_path(inputs)]
    mixed = num_dtype != check_dtype
    spreads = rounding_spread(f, inputs, dy, num_dtype, rng) if mixed else [None] * len(names)
    for name, grad, moving, spread in zip(names, tree_leaves(grads), probed, spreads):
        if moving.leaf.dtype.kind != "f" or moving.leaf.size == 0:
            continue
        probe = LeafProbe(name, np.asarray(grad, dtype=np.float64), moving, tolerances, spread)
        report.leaves.append(check_leaf(probe, mode, n_probes, rng))
    if report.wrong:
        raise wrong_gradients(report)
    report_kinks(report, on_kink)
    return report


def _check_cost(f: LayerFn, inputs: tuple[PyTree, Any]) -> None:
    """Warn when a full check will take over ``FULL_WARN_SECONDS`` and refuse one over ``FULL_LIMIT_SECONDS``,
    estimated from one timed forward pass and two passes per float element."""
    elements = sum(leaf.size for leaf in tree_leaves(inputs) if np.asarray(leaf).dtype.kind == "f")
    seconds = 2 * elements * min(_seconds(f, inputs) for _ in range(3))  # the least of 3: a busy machine's pauses
    if seconds <= FULL_WARN_SECONDS:
        return
    message = (
        f"check_vjp: mode='full' moves each of the {elements:,} float elements of params and x twice: "
        f"about {2 * elements:,} forward passes, {seconds:,.0f} s at this one's speed"
    )
    if seconds > FULL_LIMIT_SECONDS:
        raise ValueError(f"{message}; refused (over {FULL_LIMIT_SECONDS:.0f} s): use mode='fast', or a smaller problem")
    warnings.warn(f"{message} (mode='fast' checks random directions in a few passes per leaf)", stacklevel=3)


def _seconds(f: LayerFn, inputs: tuple[PyTree, Any]) -> float:
    start = time.perf_counter()
    f(*inputs)
    return time.perf_counter() - start


def _inputs(params: PyTree, x: np.ndarray, dtype: np.dtype | None) -> tuple[PyTree, np.ndarray]:
    """Copies of ``params`` and ``x``, float leaves cast to ``dtype``; with None, each must be float32 or float64."""
    inputs = (copy_tree(params, dtype), copy_tree(x, dtype))
    if dtype is None:
        for path, leaf in tree_leaves_with_path(inputs):
            if leaf.dtype.kind == "f":
                _float_dtype(leaf.dtype, f"with dtype=None, {input_name(path)}'s dtype")
    return inputs


def _float_dtype(value: Any, what: str) -> np.dtype:
    """float32 or float64; anything else (float16, ints, complex) is refused."""
    try:
        dtype: np.dtype = np.dtype(value)
    except TypeError:
        dtype = np.dtype(np.void)
    if dtype not in STEP:
        raise ValueError(f"check_vjp: {what} must be float32 or float64 (the dtypes it can judge), got {value!r}")
    return dtype
