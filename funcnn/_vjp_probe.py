"""check_vjp's numeric steps: probe one leaf along a direction, compare, classify kinks, locate wrong elements."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np

RANK = {"ok": 0, "kink": 1, "wrong": 2}
# Leaves up to this size are re-checked element by element after a failing probe.
SMALL_LEAF = 512
# Larger ones: this many random elements, plus a bisection over slices with at most this many slice tests.
SAMPLE = 64
BISECTION_TESTS = 120
# Slices this small are checked element by element; each slice test tries up to this many directions.
LAST_SLICE = 4
SLICE_PROBES = 3
# A probe within the tolerance but off by this many times the numerical noise gets its leaf re-checked.
SUSPECT = 10
# float rounding of the analytic side, in units of eps times sum |g_i v_i|: sums of up to ~4000 terms.
ROUNDING = 64


@dataclass(frozen=True)
class LeafCheck:
    """The check of one leaf: ``status`` is "ok", "kink" (not differentiable here) or "wrong".

    ``analytic`` and ``numeric`` are the worst pair seen: one element's derivative at ``index`` (a
    tuple) in full mode or after a failing fast probe was located, else a directional derivative.
    ``rel_error`` is ``|analytic - numeric| / max(|analytic|, |numeric|, rounding floor)``, the
    number compared with the tolerance. ``n_checked`` elements were checked one by one (full mode,
    or the re-check of a failing leaf) and ``n_wrong`` of them were wrong.
    """

    path: str
    analytic: float
    numeric: float
    rel_error: float
    status: str
    index: tuple[int, ...] | None = None
    n_checked: int = 0
    n_wrong: int = 0
    size: int = 0

    def where(self) -> str:
        """``params[0]["w"][3, 1]`` for an element, the path for a direction."""
        return self.path if self.index is None else f"{self.path}[{', '.join(map(str, self.index))}]"

    def located(self) -> str:
        """``params["w"][3, 1]: analytic 0.5123 numeric 0.5071 (1 of 432 elements wrong)``."""
        counted = f"{self.n_wrong} of {self.n_checked} elements wrong"
        if self.n_checked < self.size:
            counted += f"; {self.n_checked} of {self.size} checked"
        return f"{self.where()}: analytic {self.analytic:.4g} numeric {self.numeric:.4g} ({counted})"


@dataclass
class LeafProbe:
    """Compares leaf ``grad`` (analytic, float64) with central differences of ``contract(output(leaf'))``.

    ``output(leaf')`` is ``f``'s output (float64) with this leaf replaced; ``leaf`` is in the
    numeric dtype. A probe fails when ``rel_error > tol``, its floor covering rounding in ``f``
    (``atol``) and in the analytic side (``rounding`` times ``sum |g_i v_i|``).
    """

    path: str
    leaf: np.ndarray
    grad: np.ndarray
    output: Callable[[np.ndarray], np.ndarray]
    contract: Callable[[np.ndarray], float]
    y: np.ndarray
    h: float
    tol: float
    atol: float
    rounding: float

    def noise(self, v: np.ndarray) -> float:
        """The absolute error rounding alone may cause along ``v``: in ``f`` and in the analytic side."""
        return self.atol + self.rounding * float(np.vdot(np.abs(self.grad).ravel(), np.abs(v).ravel()))

    def slope(self, v: np.ndarray, h: float) -> tuple[float, float, float]:
        """Forward, backward and central difference quotients along ``v`` with step ``h``."""
        plus = self.output((self.leaf + h * v).astype(self.leaf.dtype))
        minus = self.output((self.leaf - h * v).astype(self.leaf.dtype))
        return self.contract(plus - self.y) / h, self.contract(self.y - minus) / h, self.contract(plus - minus) / (2 * h)

    def __call__(self, v: np.ndarray, index: tuple[int, ...] | None = None) -> LeafCheck:
        forward, backward, numeric = self.slope(v, self.h)
        analytic = float(np.vdot(self.grad.ravel(), v.ravel()))
        floor = self.noise(v) / self.tol
        rel = abs(analytic - numeric) / max(abs(analytic), abs(numeric), floor)
        rel = rel if np.isfinite(rel) else np.inf
        bound = self.tol * max(abs(analytic), abs(numeric), floor)
        status = "ok" if rel <= self.tol else self._classify(v, analytic, forward, backward, bound)
        return LeafCheck(self.path, analytic, numeric, rel, status, index, size=self.leaf.size)

    def suspect(self, v: np.ndarray, check: LeafCheck) -> bool:
        """Whether a passing ``check`` along ``v`` is still off by more than ``SUSPECT`` times the
        rounding noise once the truncation error is removed (Richardson extrapolation with the
        central difference at twice the step). A suspect leaf is re-checked element by element,
        with the usual tolerance: the suspicion alone never fails a check."""
        if check.status != "ok":
            return False
        gap = abs(check.analytic - check.numeric)
        rounding = self.noise(v)
        if not gap > SUSPECT * rounding:
            return False
        # Richardson: the differences at h and 2h give a derivative without the h**2 truncation error.
        coarse = self.slope(v, 2 * self.h)[2]
        extrapolated = (4 * check.numeric - coarse) / 3
        return abs(check.analytic - extrapolated) > SUSPECT * rounding + abs(check.numeric - coarse) / 10

    def _classify(self, v: np.ndarray, analytic: float, forward: float, backward: float, bound: float) -> str:
        """"kink" or "wrong" for a probe whose analytic and central slopes disagree."""
        lo, hi = min(forward, backward), max(forward, backward)
        if not hi - lo > bound:
            return "wrong"
        # One-sided slopes that differ mean a kink within a step, if they do not come from curvature:
        # on a kink at the point they stay the same at half the step, while curvature moves each by
        # about a quarter of their difference.
        forward_half, backward_half, central_half = self.slope(v, self.h / 2)
        if abs(forward_half - forward) + abs(backward_half - backward) < (hi - lo) / 4:
            return "kink"
        # Smooth within the step: the central differences at h and h/2 agree far better than the
        # one-sided slopes, so the slopes differ by curvature and the analytic value is wrong.
        central = (forward + backward) / 2
        if abs(central_half - central) < (hi - lo) / 8:
            return "wrong"
        # A kink between half the step and the step leaves the central difference at half the step right.
        kink_beyond_half = abs(central_half - analytic) <= bound
        return "kink" if kink_beyond_half or lo - bound <= analytic <= hi + bound else "wrong"

    def element(self, flat: int) -> LeafCheck:
        """The check of one element, by flat index."""
        v = np.zeros(self.leaf.shape)
        v.flat[flat] = 1.0
        return self(v, tuple(int(i) for i in np.unravel_index(flat, self.leaf.shape)))


def worst(checks: list[LeafCheck]) -> LeafCheck:
    return max(checks, key=lambda c: (RANK[c.status], c.rel_error))


def check_elements(probe: LeafProbe, flat_indices: list[int] | range) -> LeafCheck:
    """The worst of these elements' checks, with ``n_checked`` and ``n_wrong`` counted."""
    checks = [probe.element(i) for i in flat_indices]
    wrong = sum(check.status == "wrong" for check in checks)
    return replace(worst(checks), n_checked=len(checks), n_wrong=wrong)


def _slice_fails(probe: LeafProbe, lo: int, hi: int, rng: np.random.Generator) -> bool:
    """Whether a random sign direction restricted to ``flat[lo:hi]`` finds a wrong (or suspect) derivative."""
    for _ in range(SLICE_PROBES):
        v = np.zeros(probe.leaf.size)
        v[lo:hi] = rng.choice((-1.0, 1.0), size=hi - lo)
        v = v.reshape(probe.leaf.shape)
        check = probe(v)
        if check.status == "wrong" or probe.suspect(v, check):
            return True
    return False


def bisect(probe: LeafProbe, rng: np.random.Generator) -> list[int]:
    """Flat indices of the small slices that a bisection over the leaf narrows a wrong derivative to.

    A direction restricted to a slice compares the analytic and numeric sums over that slice; the
    halves that still disagree are halved again, depth first, within ``BISECTION_TESTS`` tests.
    """
    found: list[int] = []
    stack, tests = [(0, probe.leaf.size)], 0
    while stack and tests < BISECTION_TESTS:
        lo, hi = stack.pop()
        if hi - lo <= LAST_SLICE:
            found.extend(range(lo, hi))
            continue
        mid = (lo + hi) // 2
        for half in ((mid, hi), (lo, mid)):
            tests += 1
            if _slice_fails(probe, *half, rng):
                stack.append(half)
    return found


def locate(probe: LeafProbe, rng: np.random.Generator) -> LeafCheck:
    """Re-check a leaf element by element: all of it when small, else a random sample plus the
    elements a bisection points to. Returns the worst element's check, with the counts."""
    size = probe.leaf.size
    if size <= SMALL_LEAF:
        return check_elements(probe, range(size))
    return check_elements(probe, sorted(set(rng.choice(size, SAMPLE, replace=False).tolist()) | set(bisect(probe, rng))))


def fast_check(probe: LeafProbe, directions: list[np.ndarray], rng: np.random.Generator) -> LeafCheck:
    """The leaf's check along random ``directions``; when one fails or is suspect, the leaf is
    located element by element. Wrong only if an element, or (when none is) a failing direction,
    is wrong; a failing direction whose elements sit on kinks is a kink."""
    checks = [probe(v) for v in directions]
    check = worst(checks)
    if check.status != "wrong" and not any(probe.suspect(v, c) for v, c in zip(directions, checks)):
        return check
    found = locate(probe, rng)
    if found.status == "wrong":
        return found
    if check.status == "wrong":
        return replace(check, status="kink" if found.status == "kink" else "wrong", n_checked=found.n_checked)
    return check
