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

    def __init__(self, message: str, report: VJPReport) -> None:
        super().__init__(message, report=report)
        self.kind = "kink"


class NonDifferentiableWarning(UserWarning):
    """Leaves or elements could not be checked because the function has a kink within one step of the point."""


def classify(
    differences: Differences, v: np.ndarray, h: float, analytic: float, forward: float, backward: float, bound: float
) -> Status:
    """ "kink" or "wrong" for a probe along ``v`` whose analytic slope and central difference (the
    mean of ``forward`` and ``backward``, the one-sided quotients at step ``h``) differ by more than
    ``bound``: "wrong" only when ``f`` is smooth within the step, so the difference must be right."""
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
    # Not smooth within the step, nor a kink at the point: kinks inside the step, at some distance.
    # The caller retries with a smaller step (or one side of the point) before calling it wrong.
    return "kink"


def report_kinks(report: VJPReport, on_kink: KinkPolicy) -> None:
    """Warn about (or with ``on_kink="raise"`` raise :class:`NonDifferentiableError` for) the leaves
    not checked and the elements left out because the function has a kink within a step of the point."""
    if not (report.kinks or report.left_out) or on_kink == "ignore":
        return
    parts = []
    if report.kinks:
        parts.append(f"not checked: {', '.join(leaf.path for leaf in report.kinks)}")
    if report.left_out:
        counts = ", ".join(f"{leaf.n_left_out} of {leaf.size} of {leaf.path}" for leaf in report.left_out)
        parts.append(f"elements left out: {counts} (the rest checked)")
    message = f"check_vjp: not differentiable within one step of the point, so {'; '.join(parts)}"
    if on_kink == "raise":
        raise NonDifferentiableError(f"{message}\n{report}", report)
    warnings.warn(message, NonDifferentiableWarning, stacklevel=3)
