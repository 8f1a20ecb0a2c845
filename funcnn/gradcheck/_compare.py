"""check_vjp's comparison, leaf by leaf: analytic against numeric slopes, the tolerances, and the
re-check that finds the wrong elements of a leaf that failed."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

import numpy as np

from funcnn.gradcheck._kinks import classify
from funcnn.gradcheck._probe import Differences
from funcnn.gradcheck._report import LeafCheck

# Central-difference step and tolerance (relative to the directional derivative) per numeric dtype.
STEP = {np.dtype(np.float64): 1e-5, np.dtype(np.float32): 1e-3}
RTOL = {np.dtype(np.float64): 1e-5, np.dtype(np.float32): 2e-2}
# float rounding of the analytic side, in units of eps times sum |g_i v_i|: sums of up to ~4000 terms.
ROUNDING = 64
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


@dataclass(frozen=True)
class Tolerance:
    """A probe fails when ``rel_error > rtol``. The relative error's floor covers rounding: in ``f``
    (``atol``, over the step ``h``) and in the analytic side (``rounding`` times ``sum |g_i v_i|``)."""

    h: float
    rtol: float
    atol: float
    rounding: float


def tolerance(
    y: np.ndarray,
    dy: np.ndarray,
    analytic: np.dtype,
    numeric: np.dtype,
    step: float | None,
    rtol: float | None,
    nondet_tol: float,
) -> Tolerance:
    """The step and tolerances for differences in the ``numeric`` dtype of a vjp run in ``analytic``
    (``step`` and ``rtol`` None: by dtype). ``y`` is the output, ``dy`` the cotangent, both float64."""
    h = step or STEP[numeric]
    # Rounding in f is about eps times the magnitudes inside it (taken as at least 1), over the step.
    atol = 10 * float(np.finfo(numeric).eps) * (1 + float(np.sum(np.abs(dy * y)))) / h
    return Tolerance(h, rtol or RTOL[numeric], atol, ROUNDING * float(np.finfo(analytic).eps) + nondet_tol)


@dataclass(frozen=True)
class LeafProbe:
    """Compares leaf ``grad`` (analytic, float64) with the central differences as the leaf moves."""

    path: str
    grad: np.ndarray
    differences: Differences
    tolerance: Tolerance

    @property
    def size(self) -> int:
        return self.grad.size

    def noise(self, v: np.ndarray, terms: float) -> float:
        """The absolute error rounding alone may cause along ``v``: in ``f``, and in the analytic side,
        whose sum ``<g, v>`` has the terms ``g_i v_i`` and computes ``<dy, J v>`` with ``terms`` (their
        magnitudes, from the differences): cancellation inside them leaves rounding of their size."""
        t = self.tolerance
        return t.atol + t.rounding * (float(np.vdot(np.abs(self.grad).ravel(), np.abs(v).ravel())) + terms)

    def __call__(self, v: np.ndarray, index: tuple[int, ...] | None = None) -> LeafCheck:
        """The check along ``v`` (the leaf's shape); ``index`` names the element when ``v`` is one."""
        return self.measure(v, index)[0]

    def measure(self, v: np.ndarray, index: tuple[int, ...] | None = None) -> tuple[LeafCheck, float]:
        """The check along ``v``, and the rounding noise it allowed for."""
        h, tol = self.tolerance.h, self.tolerance.rtol
        forward, backward, numeric, terms = self.differences.slope(v, h)
        analytic = float(np.vdot(self.grad.ravel(), v.ravel()))
        noise = self.noise(v, terms)
        largest = max(abs(analytic), abs(numeric), noise / tol)
        rel = abs(analytic - numeric) / largest
        rel = rel if np.isfinite(rel) else np.inf
        if rel > tol:
            # The truncation error (h^2 times the third derivative, over 6) is not in the floor: along a direction
            # nearly orthogonal to the gradient it can exceed tol times the small derivative. Richardson
            # extrapolation with the difference at 2h removes it: a right vjp then agrees, a wrong one does not
            # (nor a kink, which the wider step crosses sooner).
            coarse = self.differences.slope(v, 2 * h).central
            extrapolated = (4 * numeric - coarse) / 3
            refined = max(abs(analytic), abs(extrapolated), noise / tol)
            if abs(analytic - extrapolated) / refined <= tol:
                numeric, largest, rel = extrapolated, refined, abs(analytic - extrapolated) / refined
        bound = tol * largest
        status = "ok" if rel <= tol else classify(self.differences, v, h, analytic, forward, backward, bound)
        return LeafCheck(self.path, analytic, numeric, rel, status, index, size=self.size), noise

    def suspect(self, v: np.ndarray, check: LeafCheck, noise: float) -> bool:
        """Whether a passing ``check`` along ``v`` is still off by more than ``SUSPECT`` times the
        rounding ``noise`` once the truncation error is removed (Richardson extrapolation with the
        central difference at twice the step). A suspect leaf is re-checked element by element,
        with the usual tolerance: the suspicion alone never fails a check."""
        if check.status != "ok":
            return False
        gap = abs(check.analytic - check.numeric)
        if not gap > SUSPECT * noise:
            return False
        # Richardson: the differences at h and 2h give a derivative without the h**2 truncation error.
        coarse = self.differences.slope(v, 2 * self.tolerance.h).central
        extrapolated = (4 * check.numeric - coarse) / 3
        return abs(check.analytic - extrapolated) > SUSPECT * noise + abs(check.numeric - coarse) / 10

    def element(self, flat: int) -> LeafCheck:
        """The check of one element, by flat index."""
        v = np.zeros(self.grad.shape)
        v.flat[flat] = 1.0
        return self(v, tuple(int(i) for i in np.unravel_index(flat, self.grad.shape)))


def check_leaf(probe: LeafProbe, mode: Literal["fast", "full"], probes: int, rng: np.random.Generator) -> LeafCheck:
    """The leaf's check: every element in "full" mode, else ``probes`` random directions (drawn from ``rng``)."""
    if mode == "full":
        return check_elements(probe, range(probe.size))
    return fast_check(probe, [rng.standard_normal(probe.grad.shape) for _ in range(probes)], rng)


def worst(checks: list[LeafCheck]) -> LeafCheck:
    """The check that failed worst: wrong before kink before ok, then the largest relative error."""
    return max(checks, key=lambda c: (RANK[c.status], c.rel_error))


def check_elements(probe: LeafProbe, flat_indices: list[int] | range) -> LeafCheck:
    """The worst of these elements' checks, with ``n_checked`` and ``n_wrong`` counted."""
    checks = [probe.element(i) for i in flat_indices]
    wrong = sum(check.status == "wrong" for check in checks)
    return replace(worst(checks), n_checked=len(checks), n_wrong=wrong)


def _slice_fails(probe: LeafProbe, lo: int, hi: int, rng: np.random.Generator) -> bool:
    """Whether a random sign direction restricted to ``flat[lo:hi]`` finds a wrong (or suspect) derivative."""
    for _ in range(SLICE_PROBES):
        flat = np.zeros(probe.size)
        flat[lo:hi] = rng.choice((-1.0, 1.0), size=hi - lo)
        v = flat.reshape(probe.grad.shape)
        check, noise = probe.measure(v)
        if check.status == "wrong" or probe.suspect(v, check, noise):
            return True
    return False


def bisect(probe: LeafProbe, rng: np.random.Generator) -> list[int]:
    """Flat indices of the small slices that a bisection over the leaf narrows a wrong derivative to.

    A direction restricted to a slice compares the analytic and numeric sums over that slice; the
    halves that still disagree are halved again, depth first, within ``BISECTION_TESTS`` tests.
    """
    found: list[int] = []
    stack, tests = [(0, probe.size)], 0
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
    size = probe.size
    if size <= SMALL_LEAF:
        return check_elements(probe, range(size))
    sample = set(rng.choice(size, SAMPLE, replace=False).tolist())
    return check_elements(probe, sorted(sample | set(bisect(probe, rng))))


def fast_check(probe: LeafProbe, directions: list[np.ndarray], rng: np.random.Generator) -> LeafCheck:
    """The leaf's check along random ``directions``; when one fails or is suspect, the leaf is
    located element by element. Wrong only if an element, or (when none is) a failing direction,
    is wrong; a failing direction whose elements sit on kinks is a kink."""
    measured = [probe.measure(v) for v in directions]
    check = worst([c for c, _ in measured])
    if check.status != "wrong" and not any(probe.suspect(v, c, n) for v, (c, n) in zip(directions, measured)):
        return check
    found = locate(probe, rng)
    if found.status == "wrong":
        return found
    if check.status == "wrong":
        return replace(check, status="kink" if found.status == "kink" else "wrong", n_checked=found.n_checked)
    return check
