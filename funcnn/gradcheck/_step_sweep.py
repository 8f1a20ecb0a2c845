"""``step_sweep``: the relative error of central differences against the analytic vjp, step by step."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from typing_extensions import override

from funcnn.core import LayerFn
from funcnn.gradcheck._compare import STEP
from funcnn.gradcheck._probe import central_difference
from funcnn.tree import PyTree, tree_flatten, tree_leaves, tree_unflatten

__all__ = ["StepSweep", "step_sweep"]

STEPS = tuple(10.0**-k for k in range(1, 11))


@dataclass
class StepSweep:
    """``errors[dtype][i]`` is the relative error at ``steps[i]`` (dtype "float64" or "float32")."""

    steps: tuple[float, ...]
    errors: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def chosen(self) -> dict[str, float]:
        """The step check_vjp uses, for each dtype swept."""
        return {dtype: STEP[np.dtype(dtype)] for dtype in self.errors}

    @override
    def __str__(self) -> str:
        dtypes, chosen = list(self.errors), self.chosen
        lines = ["    step  " + "  ".join(f"{d:>9}" for d in dtypes)]
        for i, h in enumerate(self.steps):
            marks = "  ".join(f"{self.errors[d][i]:9.2e}{'*' if chosen[d] == h else ' '}" for d in dtypes)
            lines.append(f"  {h:6.0e}  {marks}")
        return "\n".join(lines + ["  (* the step check_vjp uses)"])


def _sweep(
    f: LayerFn, params: PyTree, x: np.ndarray, dtype: np.dtype, steps: tuple[float, ...], seed: int
) -> np.ndarray:
    """The relative errors for one dtype, one per step."""
    rng = np.random.default_rng(seed)
    leaves, treedef = tree_flatten((params, x))
    leaves = [np.asarray(leaf, dtype=dtype) if np.asarray(leaf).dtype.kind == "f" else leaf for leaf in leaves]
    y, vjp = f(*tree_unflatten(treedef, leaves))
    dy = rng.standard_normal(np.shape(y)).astype(dtype)
    directions = [rng.standard_normal(leaf.shape) if leaf.dtype.kind == "f" else None for leaf in leaves]
    analytic = sum(
        float(np.vdot(np.asarray(g, np.float64), v)) for g, v in zip(tree_leaves(vjp(dy)), directions) if v is not None
    )

    def output(h: float) -> np.ndarray:
        moved = [leaf if v is None else (leaf + h * v).astype(dtype) for leaf, v in zip(leaves, directions)]
        return np.asarray(f(*tree_unflatten(treedef, moved))[0], np.float64)

    errors = []
    for h in steps:
        numeric = central_difference(dy, output(h), output(-h), h)
        errors.append(abs(analytic - numeric) / max(abs(analytic), abs(numeric), 1e-300))
    return np.asarray(errors)


def step_sweep(
    f: LayerFn,
    params: PyTree,
    x: np.ndarray,
    *,
    steps: tuple[float, ...] = STEPS,
    seed: int = 0,
) -> StepSweep:
    """Relative error ``|a - n| / max(|a|, |n|)`` of the central difference ``n`` against the vjp's
    directional derivative ``a`` (one random direction over every float leaf of params and x, one
    random ``dy``), for each step in ``steps`` (1e-1 ... 1e-10), in float64 and in float32.

    Large steps lose to truncation error (falling as step**2), small ones to rounding (rising as
    eps/step): the V shape whose bottom is the best step. Returns a :class:`StepSweep`, which prints
    as a table with check_vjp's step marked.

    Args:
        f: any ``(params, x) -> (y, vjp)``.
        params: its params.
        x: its input.
        steps: the steps to try, largest first.
        seed: draws the direction and cotangent.

    Returns:
        A :class:`StepSweep`: the relative error of each step in float64 and float32, and check_vjp's steps.
    """
    sweep = StepSweep(tuple(float(h) for h in steps))
    for dtype in (np.dtype(np.float64), np.dtype(np.float32)):
        sweep.errors[str(dtype)] = _sweep(f, params, x, dtype, sweep.steps, seed)
    return sweep
