"""check_vjp's allowance for the rounding inside a float32 vjp checked against float64 differences.

The magnitudes a vjp sums can be far larger than its result (a group norm over 2 values: ``dx`` is
nearly 0, computed from terms of order ``|dy gamma| / sigma`` and from a normalised ``x`` whose
rounding near 1 shows in ``1 - x_hat**2``; a bias behind a loss: a sum over the batch that nearly
cancels). The output does not show them, so their rounding is measured: at a few points near the
one checked (exact in float32), the float32 vjp is compared with the float64 one. Rounding makes
that difference jump from point to point; a float32 kernel that is wrong makes it move smoothly,
so the allowance is the *range* of the difference over the points, not its size, and a wrong
float32 kernel gains nothing from it.
"""

from __future__ import annotations

import numpy as np

from funcnn.core import LayerFn
from funcnn.tree import PyTree, tree_flatten, tree_leaves, tree_unflatten

# Points near the one checked, and how far (relative) each float input and dy is moved to reach them:
# far enough that intermediate values cross rounding boundaries, near enough that a kink is rarely crossed.
POINTS = 6
RELATIVE_MOVE = 1e-3


def rounding_spread(
    f: LayerFn, inputs: PyTree, dy: np.ndarray, numeric: np.dtype, rng: np.random.Generator
) -> list[np.ndarray | None]:
    """Per leaf of ``inputs = (params, x)`` (in ``tree_leaves`` order; None for an integer leaf), the
    range over ``POINTS`` nearby points of the difference between ``f``'s vjp run in the inputs' dtype
    and run in ``numeric`` at the same point: float64 arrays of the leaf's shape."""
    leaves, treedef = tree_flatten(inputs)
    low: list[np.ndarray | None] = [None] * len(leaves)
    high: list[np.ndarray | None] = [None] * len(leaves)

    def moved(a: np.ndarray) -> np.ndarray:
        if a.dtype.kind != "f":
            return a
        return (a * (1 + RELATIVE_MOVE * rng.uniform(-1, 1, a.shape))).astype(a.dtype)

    def up(a: np.ndarray) -> np.ndarray:
        return a.astype(numeric) if a.dtype.kind == "f" else a

    for _ in range(POINTS):
        point, cotangent = [moved(leaf) for leaf in leaves], moved(dy)
        fine = tree_leaves(f(*tree_unflatten(treedef, point))[1](cotangent))
        exact = tree_leaves(f(*tree_unflatten(treedef, [up(leaf) for leaf in point]))[1](up(cotangent)))
        for k, (g, ref) in enumerate(zip(fine, exact)):
            if g is None or ref is None:
                continue
            difference = np.asarray(g, dtype=np.float64) - np.asarray(ref, dtype=np.float64)
            lo, hi = low[k], high[k]
            low[k] = difference if lo is None else np.minimum(lo, difference)
            high[k] = difference if hi is None else np.maximum(hi, difference)
    return [None if lo is None or hi is None else hi - lo for lo, hi in zip(low, high)]
