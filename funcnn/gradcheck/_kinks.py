"""check_vjp's kink heuristic: is a disagreement a wrong gradient, or a point where ``f`` is not differentiable?"""

from __future__ import annotations

import warnings
from typing import Literal

import numpy as np

from funcnn.gradcheck._probe import Differences
from funcnn.gradcheck._report import Status, VJPCheckError, VJPReport

KinkPolicy = Literal["warn", "raise", "ignore"]
KINK_POLICIES = ("warn", "raise", "ignore")


class NonDifferentiableError(VJPCheckError):
    """The point checked is (numerically) a kink; raised instead of a warning with ``on_kink="raise"``."""


class NonDifferentiableWarning(UserWarning):
    """A leaf could not be checked because the function has a kink within one step of the point."""


def classify(
    differences: Differences, v: np.ndarray, h: float, analytic: float, forward: float, backward: float, bound: float
) -> Status:
    """ "kink" or "wrong" for a probe along ``v`` whose analytic slope and central difference (the
    mean of ``forward`` and ``backward``, the one-sided quotients at step ``h``) differ by more than ``bound``."""
    lo, hi = min(forward, backward), max(forward, backward)
    if not hi - lo > bound:
        return "wrong"
    # One-sided slopes that differ mean a kink within a step, if they do not come from curvature:
    # on a kink at the point they stay the same at half the step, while curvature moves each by
    # about a quarter of their difference.
    forward_half, backward_half, central_half, _ = differences.slope(v, h / 2)
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


def report_kinks(report: VJPReport, on_kink: KinkPolicy) -> None:
    """Warn about (or with ``on_kink="raise"`` raise :class:`NonDifferentiableError` for) the report's kinks."""
    if not report.kinks or on_kink == "ignore":
        return
    paths = ", ".join(leaf.path for leaf in report.kinks)
    message = f"check_vjp: not differentiable within one step of the point, so not checked: {paths}"
    if on_kink == "raise":
        raise NonDifferentiableError(f"{message}\n{report}")
    warnings.warn(message, NonDifferentiableWarning, stacklevel=3)
