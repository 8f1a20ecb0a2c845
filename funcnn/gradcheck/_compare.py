"""check_vjp's comparison, leaf by leaf: analytic against numeric slopes, the tolerances, and the
re-check that finds the wrong elements of a leaf that failed."""

from __future__ import annotations

from collections.abc import Iterable
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
# The rounding allowed in a mixed check, in units of the range of the float32 - float64 difference over
# nearby points (_rounding.py): the range of 6 samples averages 2.5 standard deviations, so this allows
# about 10, and a range below a quarter of its average is rare (under 1e-4 for normal errors).
SPREAD = 4
# Leaves up to this size are re-checked element by element after a failing probe.
SMALL_LEAF = 512
# Larger ones: this many random elements, plus a bisection over slices with at most this many slice tests.
SAMPLE = 64
BISECTION_TESTS = 120
# Slices this small are checked element by element; each slice test tries up to this many directions.
LAST_SLICE = 4
SLICE_PROBES = 3
# A probe whose differences cross a kink is retried with the step shrunk by SHRINK, up to SHRINKS times,
# while the rounding at the smaller step stays below the larger of a quarter of the disagreement it must
# explain and the rounding the check allowed at its own step.
SHRINK = 4
SHRINKS = 6
# A one-sided difference (weights 5/(2s), at half the step) rounds 10 times as much as the central one.
ONE_SIDED_ROUNDING = 10
# Fast mode splits a leaf whose directions cross kinks into slices, at most this many slice tests per leaf;
# what is still unresolved then is left out and counted.
KINK_SLICE_TESTS = 200
# A probe within the tolerance but off by this many times the numerical noise gets its leaf re-checked.
SUSPECT = 10


@dataclass(frozen=True)
class Tolerance:
    """A probe fails when ``rel_error > rtol``. The relative error's floor covers rounding: in ``f``
    (``f_rounding``, over the step) and in the analytic side (``rounding`` times ``sum |g_i v_i|``)."""

    h: float
    rtol: float
    f_rounding: float
    rounding: float

    @property
    def atol(self) -> float:
        """The rounding in a central difference at the default step ``h``."""
        return self.f_rounding / self.h


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
    # Rounding in f is about eps times the magnitudes inside it, taken as at least 1 (an output near 0 can come
    # from terms of order 1 that cancel: without the 1, a small svm loss failed correct vjps). The price: slopes
    # below about 10 eps / h (2e-10 in float64) are at the floor, and the report says so (LeafCheck.resolution).
    f_rounding = 10 * float(np.finfo(numeric).eps) * (1 + float(np.sum(np.abs(dy * y))))
    return Tolerance(h, rtol or RTOL[numeric], f_rounding, ROUNDING * float(np.finfo(analytic).eps) + nondet_tol)


@dataclass(frozen=True)
class LeafProbe:
    """Compares leaf ``grad`` (analytic, float64) with the central differences as the leaf moves."""

    path: str
    grad: np.ndarray
    differences: Differences
    tolerance: Tolerance
    # The range of each element's float32 - float64 difference near the point (mixed checks), or None.
    spread: np.ndarray | None = None

    @property
    def size(self) -> int:
        return self.grad.size

    def noise(self, v: np.ndarray, terms: float, h: float | None = None) -> float:
        """The absolute error rounding alone may cause along ``v`` at step ``h`` (default: the tolerance's):
        in ``f``, and in the analytic side, whose sum ``<g, v>`` has the terms ``g_i v_i`` and computes
        ``<dy, J v>`` with ``terms`` (their magnitudes, from the differences): cancellation inside them
        leaves rounding of their size; with ``spread``, the rounding measured inside the vjp too."""
        t = self.tolerance
        analytic_terms = float(np.vdot(np.abs(self.grad).ravel(), np.abs(v).ravel()))
        noise = t.f_rounding / (h or t.h) + t.rounding * (analytic_terms + terms)
        if self.spread is not None:
            noise += SPREAD * float(np.vdot(self.spread.ravel(), np.abs(v).ravel()))
        return noise

    def __call__(self, v: np.ndarray, index: tuple[int, ...] | None = None) -> LeafCheck:
        """The check along ``v`` (the leaf's shape); ``index`` names the element when ``v`` is one."""
        return self.judge(v, index)[0]

    def measure(
        self, v: np.ndarray, index: tuple[int, ...] | None = None, h: float | None = None
    ) -> tuple[LeafCheck, float]:
        """The check along ``v`` with central differences at step ``h`` (default: the tolerance's),
        and the rounding noise it allowed for. Status "kink" when the differences cross one."""
        h, tol = h or self.tolerance.h, self.tolerance.rtol
        forward, backward, numeric, terms = self.differences.slope(v, h)
        analytic = float(np.vdot(self.grad.ravel(), v.ravel()))
        noise = self.noise(v, terms, h)
        largest = max(abs(analytic), abs(numeric), noise / tol)
        rel = _ratio(abs(analytic - numeric), largest)
        rel = rel if np.isfinite(rel) else np.inf
        if rel > tol:
            # The truncation error (h^2 times the third derivative, over 6) is not in the floor: along a direction
            # nearly orthogonal to the gradient it can exceed tol times the small derivative. Richardson
            # extrapolation with the difference at 2h removes it: a right vjp then agrees, a wrong one does not
            # (nor a kink, which the wider step crosses sooner).
            coarse = self.differences.slope(v, 2 * h).central
            extrapolated = (4 * numeric - coarse) / 3
            refined = max(abs(analytic), abs(extrapolated), noise / tol)
            if _ratio(abs(analytic - extrapolated), refined) <= tol:
                numeric, largest, rel = extrapolated, refined, _ratio(abs(analytic - extrapolated), refined)
        bound = tol * largest
        status = "ok" if rel <= tol else classify(self.differences, v, h, analytic, forward, backward, bound)
        slope = max(abs(analytic), abs(numeric))
        return LeafCheck(
            self.path, analytic, numeric, rel, status, index, size=self.size, floor=noise, scale=slope
        ), noise

    def judge(self, v: np.ndarray, index: tuple[int, ...] | None = None) -> tuple[LeafCheck, float]:
        """The check along ``v``, looking past kinks the differences cross. A disagreement is retried
        with the step shrunk (kinks near the point but not at it then fall outside the step): "wrong"
        once two steps give the same difference, "ok" once one agrees with no more rounding than the
        check allowed at its own step; then one-sided differences on a smooth side. Still "kink" when
        none of that settles it: left out, never called wrong."""
        check, noise = self.measure(v, index)
        if check.status == "ok":
            return check, noise
        # A retry may pass only with as little rounding as the check allowed at its own step (or as the
        # tolerance allows): a smaller step's larger rounding must not make it more lenient.
        allowed = max(self.tolerance.rtol * max(abs(check.analytic), abs(check.numeric)), noise)
        h, previous = self.tolerance.h, check
        for _ in range(SHRINKS):
            smaller = h / SHRINK
            gap = abs(previous.analytic - previous.numeric)
            if not self.noise(v, 0.0, smaller) < max(gap / 4, allowed):
                break
            h = smaller
            retried, retried_noise = self.measure(v, index, h)
            if retried.status == "ok" and retried_noise <= allowed:
                return retried, retried_noise
            gap = abs(retried.analytic - retried.numeric)
            if retried.status == previous.status == "wrong" and abs(retried.numeric - previous.numeric) < gap / 4:
                return retried, retried_noise  # smooth at both steps: the difference is right, the vjp is not
            previous = retried
        settled = self.one_sided(v, check, h, allowed)
        if settled.status == "ok" or (check.status == "wrong" and h == self.tolerance.h):
            return settled if settled.status == "ok" else check, noise
        return replace(check, status="kink"), noise

    def one_sided(self, v: np.ndarray, check: LeafCheck, smallest: float, allowed: float) -> LeafCheck:
        """``check`` settled by a side of the point that is smooth, at the largest step from the
        tolerance's down to ``smallest`` whose rounding stays within ``allowed``: "ok" if the analytic
        slope agrees with that side's second-order one-sided difference, else ``check`` unchanged (at a
        kink itself, a vjp's subgradient may match neither side)."""
        tol, h = self.tolerance.rtol, self.tolerance.h
        while h >= smallest:
            # Five times the rounding of one central difference: the one-sided weights sum to 5/(2s) against 2/(2s);
            # at half the step, 10 times the central difference's own: so much more is allowed, and no more.
            rounding = 5 * self.noise(v, 0.0, h / 2)
            if rounding > ONE_SIDED_ROUNDING * allowed:
                break
            moved = {t: self.differences.moved(v, t) for t in (h / 2, h, 2 * h, -h / 2, -h, -2 * h)}
            # (3 phi(0) - 4 phi(-+s) + phi(-+2s)) / (2s) with phi(0) = 0: exact for quadratics, as the central one.
            for sign in (1, -1):
                at_h, at_half = (sign * (4 * moved[sign * s] - moved[sign * 2 * s]) / (2 * s) for s in (h, h / 2))
                bound = max(tol * max(abs(check.analytic), abs(at_half)), rounding)
                if abs(at_h - at_half) <= bound and abs(check.analytic - at_half) <= bound:
                    rel = _ratio(abs(check.analytic - at_half), bound / tol)
                    slope = max(abs(check.analytic), abs(at_half))
                    return replace(check, numeric=at_half, rel_error=rel, status="ok", floor=rounding, scale=slope)
            h /= SHRINK
        return check

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

    def on_slice(self, lo: int, hi: int, values: np.ndarray) -> np.ndarray:
        """A direction of the leaf's shape that is ``values`` on ``flat[lo:hi]`` and 0 elsewhere."""
        flat = np.zeros(self.size)
        flat[lo:hi] = values
        return flat.reshape(self.grad.shape)


def _ratio(gap: float, scale: float) -> float:
    """``gap / scale``, with 0 / 0 as 0 (a slope of exactly 0 on both sides, at an output of exactly 0)."""
    return 0.0 if gap == 0 else gap / scale if scale > 0 else np.inf


def check_leaf(probe: LeafProbe, mode: Literal["fast", "full"], probes: int, rng: np.random.Generator) -> LeafCheck:
    """The leaf's check: every element in "full" mode, else ``probes`` random directions (drawn from ``rng``)."""
    if mode == "full":
        return check_elements(probe, range(probe.size))
    return fast_check(probe, [rng.standard_normal(probe.grad.shape) for _ in range(probes)], rng)


def worst(checks: list[LeafCheck]) -> LeafCheck:
    """The check that failed worst: wrong before kink before ok, then the largest relative error."""
    return max(checks, key=lambda c: (RANK[c.status], c.rel_error))


def summarize(checks: Iterable[LeafCheck], left_out: int = 0) -> LeafCheck:
    """The leaf's result from the checks of its elements (and slices), taken one at a time (a full check
    of a large leaf keeps no list): the worst wrong one if any, else the worst that passed, with the
    elements counted; "kink" only if none passed. ``left_out`` elements were left out without a check
    of their own (fast mode's unresolved slices); elements whose check is a kink are left out too."""
    chosen: dict[str, LeafCheck] = {}
    elements = wrong = 0
    floor = scale = 0.0
    for check in checks:
        if check.status == "ok":
            floor, scale = max(floor, check.floor), max(scale, check.scale)
        if check.index is not None:
            elements += 1
            wrong += check.status == "wrong"
            left_out += check.status == "kink"
        if check.status not in chosen or check.rel_error > chosen[check.status].rel_error:
            chosen[check.status] = check
    result = chosen.get("wrong") or chosen.get("ok") or chosen["kink"]
    return replace(result, n_checked=elements, n_wrong=wrong, n_left_out=left_out, floor=floor, scale=scale)


def check_elements(probe: LeafProbe, flat_indices: Iterable[int]) -> LeafCheck:
    """The leaf's result from these elements' checks, with ``n_checked``, ``n_wrong`` and ``n_left_out`` counted."""
    return summarize(probe.element(i) for i in flat_indices)


def _slice_fails(probe: LeafProbe, lo: int, hi: int, rng: np.random.Generator) -> bool:
    """Whether a random sign direction restricted to ``flat[lo:hi]`` finds a wrong (or suspect) derivative."""
    for _ in range(SLICE_PROBES):
        v = probe.on_slice(lo, hi, rng.choice((-1.0, 1.0), size=hi - lo))
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
    elements a bisection points to. Returns the leaf's result from those elements, with the counts."""
    size = probe.size
    if size <= SMALL_LEAF:
        return check_elements(probe, range(size))
    sample = set(rng.choice(size, SAMPLE, replace=False).tolist())
    return check_elements(probe, sorted(sample | set(bisect(probe, rng))))


def around_kinks(probe: LeafProbe, rng: np.random.Generator) -> LeafCheck:
    """The leaf's check along directions that avoid its kinked elements: a random direction over a
    slice of the leaf that crosses a kink (or disagrees) is split in halves, down to single elements;
    a slice that agrees is checked as a whole. Slices left when ``KINK_SLICE_TESTS`` run out are left out."""
    checks: list[LeafCheck] = []
    stack, tests, left_out = [(0, probe.size)], 0, 0
    while stack:
        lo, hi = stack.pop()
        if hi - lo <= LAST_SLICE:
            checks.extend(probe.element(i) for i in range(lo, hi))
            continue
        if tests >= KINK_SLICE_TESTS:
            left_out += hi - lo
            continue
        tests += 1
        v = probe.on_slice(lo, hi, rng.standard_normal(hi - lo))
        check, noise = probe.judge(v)
        if check.status == "ok" and not probe.suspect(v, check, noise):
            checks.append(check)
            continue
        mid = (lo + hi) // 2
        stack += [(mid, hi), (lo, mid)]
    return summarize(checks, left_out)


def fast_check(probe: LeafProbe, directions: list[np.ndarray], rng: np.random.Generator) -> LeafCheck:
    """The leaf's check along random ``directions``; when one fails or is suspect, the leaf is
    located element by element, and when one crosses a kink, checked along directions that avoid
    the kinked elements. Wrong only if an element, or (when none is) a failing smooth direction, is wrong."""
    measured = [probe.judge(v) for v in directions]
    check = worst([c for c, _ in measured])
    suspect = any(probe.suspect(v, c, n) for v, (c, n) in zip(directions, measured))
    if check.status == "ok" and not suspect:
        return check
    if check.status == "kink":
        return around_kinks(probe, rng)
    found = locate(probe, rng)
    if found.status == "wrong" or check.status != "wrong":
        return found if found.status == "wrong" else check
    if found.n_checked == probe.size:
        return found  # every element checked and none wrong: the direction crossed kinks it could not see
    return replace(check, status="kink" if found.n_left_out else "wrong", n_checked=found.n_checked)
