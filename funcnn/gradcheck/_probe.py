"""check_vjp's probe: central finite differences of ``<dy, f(params, x)>`` as one leaf moves."""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from funcnn.core import LayerFn
from funcnn.tree import PyTree, TreeDef, tree_flatten, tree_unflatten


class Slopes(NamedTuple):
    """Difference quotients along a direction ``v``: forward, backward and central, and ``terms``, the
    sum of the magnitudes of the terms ``dy_j (J v)_j`` of the central one (J: f's Jacobian)."""

    forward: float
    backward: float
    central: float
    terms: float


@dataclass(frozen=True)
class Differences:
    """Moves leaf ``k`` of the flattened ``(params, x)`` (``leaves``, in the numeric dtype) and
    contracts the change in ``f``'s output with ``dy``. ``y`` is the output at ``leaves``; ``y`` and
    ``dy`` are float64 arrays of the output's shape."""

    f: LayerFn
    treedef: TreeDef
    leaves: list[np.ndarray]
    k: int
    dy: np.ndarray
    y: np.ndarray

    @property
    def leaf(self) -> np.ndarray:
        """The leaf that moves, in the numeric dtype."""
        return self.leaves[self.k]

    def output(self, leaf: np.ndarray) -> np.ndarray:
        """``f``'s output (float64) with this leaf replaced by ``leaf``."""
        moved = list(self.leaves)
        moved[self.k] = leaf
        return np.asarray(self.f(*tree_unflatten(self.treedef, moved))[0], dtype=np.float64)

    def contract(self, difference: np.ndarray) -> float:
        """``<dy, difference>``: outputs are subtracted first, so those that did not move add exactly 0."""
        return float(np.vdot(self.dy.ravel(), difference.ravel()))

    def moved(self, v: np.ndarray, t: float) -> float:
        """``<dy, f(leaf + t v) - f(leaf)>``."""
        return self.contract(self.output((self.leaf + t * v).astype(self.leaf.dtype)) - self.y)

    def slope(self, v: np.ndarray, h: float) -> Slopes:
        """The difference quotients along ``v`` (the leaf's shape) with step ``h``."""
        plus = self.output((self.leaf + h * v).astype(self.leaf.dtype))
        minus = self.output((self.leaf - h * v).astype(self.leaf.dtype))
        forward, backward = self.contract(plus - self.y) / h, self.contract(self.y - minus) / h
        terms = float(np.vdot(np.abs(self.dy).ravel(), np.abs(plus - minus).ravel())) / (2 * h)
        return Slopes(forward, backward, central_difference(self.dy, plus, minus, h), terms)


def central_difference(dy: np.ndarray, plus: np.ndarray, minus: np.ndarray, h: float) -> float:
    """``<dy, plus - minus> / (2 h)``: the central difference of ``<dy, f>`` from ``f``'s outputs a step
    ``h`` either side. The outputs are subtracted before the contraction, so those that did not move add
    exactly 0 (contracting first would add each one's rounding twice). The one central difference of
    check_vjp, the step sweep and the course's numerical gradients."""
    return float(np.vdot(np.asarray(dy, dtype=np.float64).ravel(), (plus - minus).ravel())) / (2 * h)


def differences(
    f: LayerFn, inputs: PyTree, y: np.ndarray, dy: np.ndarray, analytic: np.dtype, numeric: np.dtype
) -> list[Differences]:
    """One :class:`Differences` per leaf of ``inputs = (params, x)``, taken in the ``numeric`` dtype.

    ``y`` is ``f(*inputs)``'s output, ``analytic`` the dtype the vjp ran in; when ``numeric`` is
    another, ``f`` runs again on the inputs with their float leaves cast to ``numeric``.
    """
    leaves, treedef = tree_flatten(inputs)
    if numeric != analytic:
        leaves = [leaf.astype(numeric) if leaf.dtype.kind == "f" else leaf for leaf in leaves]
        y = np.asarray(f(*tree_unflatten(treedef, leaves))[0])
    y64, dy64 = y.astype(np.float64), dy.astype(np.float64)
    return [Differences(f, treedef, leaves, k, dy64, y64) for k in range(len(leaves))]
