"""What check_vjp hands back: one :class:`LeafCheck` per leaf, the :class:`VJPReport`, and its error."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
from typing_extensions import override

Status = Literal["ok", "kink", "wrong"]
# A passing leaf whose rounding floor would hide relative errors above this says so in the report.
COARSE = 1e-3


class VJPCheckError(AssertionError):
    """A vjp is wrong: its values, its structure, or its purity. The message names the leaf.

    ``kind`` is "value" when gradients are wrong: ``wrong`` lists every wrong leaf's
    :class:`funcnn.LeafCheck` (its ``path``, ``index``, ``n_checked`` and ``n_wrong`` say where),
    ``check`` is the first of them and ``report`` the whole :class:`VJPReport`. For a structural
    failure (shapes, dtypes, purity, repeatability, non-finite inputs) ``kind`` is "structure",
    ``check`` and ``report`` are None and ``wrong`` is empty. (:class:`NonDifferentiableError`, raised
    with ``on_kink="raise"``, has kind "kink" and the report.)
    """

    def __init__(self, message: str, wrong: Sequence[LeafCheck] = (), report: VJPReport | None = None) -> None:
        super().__init__(message)
        self.wrong: list[LeafCheck] = list(wrong)
        self.check: LeafCheck | None = self.wrong[0] if self.wrong else None
        self.report = report
        self.kind: Literal["value", "structure", "kink"] = "value" if self.wrong else "structure"


@dataclass(frozen=True)
class LeafCheck:
    """The check of one leaf: ``status`` is "ok", "kink" (not differentiable here) or "wrong".

    ``analytic`` and ``numeric`` are the worst pair seen: one element's derivative at ``index`` (a
    tuple) in full mode or after a failing fast probe was located, else a directional derivative.
    ``rel_error`` is ``|analytic - numeric| / max(|analytic|, |numeric|, rounding floor)``, the
    number compared with the tolerance. ``n_checked`` elements were checked one by one (full mode,
    or the re-check of a failing leaf) and ``n_wrong`` of them were wrong. ``n_left_out`` elements
    were not checked because their differences cross a kink (ReLU at 0, a max-pool near-tie) however
    they were taken; the leaf's status says what the others showed ("kink" only if none could be checked).
    ``floor`` is the largest rounding the passing checks allowed and ``scale`` the largest slope they saw;
    ``resolution``, their ratio, is the relative error rounding alone could hide: far above the
    tolerance, the slopes are too small to judge and the report says so.
    """

    path: str
    analytic: float
    numeric: float
    rel_error: float
    status: Status
    index: tuple[int, ...] | None = None
    n_checked: int = 0
    n_wrong: int = 0
    size: int = 0
    n_left_out: int = 0
    floor: float = 0.0
    scale: float = 0.0

    @property
    def resolution(self) -> float:
        """The relative error rounding alone could hide: the largest rounding floor the passing checks
        allowed over the largest slope they saw (0 when nothing passed)."""
        return self.floor / self.scale if self.scale > 0 else (np.inf if self.floor > 0 else 0.0)

    def where(self) -> str:
        """``params[0]["w"][3, 1]`` for an element, the path for a direction."""
        return self.path if self.index is None else f"{self.path}[{', '.join(map(str, self.index))}]"

    def located(self) -> str:
        """``params["w"][3, 1]: analytic 0.5123 numeric 0.5071 (1 of 432 elements wrong)``."""
        counted = f"{self.n_wrong} of {self.n_checked} elements wrong"
        if self.n_checked < self.size:
            counted += f"; {self.n_checked} of {self.size} checked"
        return f"{self.where()}: analytic {self.analytic:.4g} numeric {self.numeric:.4g} ({counted})"

    def counts(self) -> str:
        """What the status column adds: the wrong elements, and those left out near kinks."""
        notes = [f"{self.n_wrong} of {self.n_checked} elements wrong"] if self.n_wrong else []
        if self.status == "kink":
            notes.append("not checked: every probe crosses a kink")
        elif self.n_left_out:
            notes.append(f"{self.n_left_out} of {self.size} elements left out near a kink")
        if self.status == "ok" and self.resolution > COARSE:
            notes.append(f"at the rounding floor: an error under {100 * self.resolution:.2g}% would not show")
        return f" ({'; '.join(notes)})" if notes else ""


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
        """The largest relative error over the leaves that passed (0.0 when none did)."""
        return max((leaf.rel_error for leaf in self.leaves if leaf.status == "ok"), default=0.0)

    @property
    def kinks(self) -> list[LeafCheck]:
        """The leaves not checked at all because every probe of them crosses a kink."""
        return [leaf for leaf in self.leaves if leaf.status == "kink"]

    @property
    def left_out(self) -> list[LeafCheck]:
        """The leaves checked but for some elements left out near a kink (``n_left_out`` of them)."""
        return [leaf for leaf in self.leaves if leaf.status != "kink" and leaf.n_left_out]

    @property
    def wrong(self) -> list[LeafCheck]:
        """The leaves whose gradient is wrong."""
        return [leaf for leaf in self.leaves if leaf.status == "wrong"]

    def __getitem__(self, path: str) -> LeafCheck:
        for leaf in self.leaves:
            if leaf.path == path:
                return leaf
        raise KeyError(f"no leaf {path!r}; leaves are {[leaf.path for leaf in self.leaves]}")

    @override
    def __str__(self) -> str:
        width = max([len(leaf.path) for leaf in self.leaves] + [4])
        same = self.numeric_dtype in ("", self.dtype)
        dtypes = self.dtype if same else f"{self.dtype} analytic, {self.numeric_dtype} numeric"
        lines = [f"check_vjp ({self.mode} mode, {dtypes}, step {self.step:g}, rtol {self.rtol:g})"]
        lines.append(f"  {'leaf':<{width}}  {'rel error':>9}  {'analytic':>12}  {'numeric':>12}  status")
        for leaf in self.leaves:
            lines.append(
                f"  {leaf.path:<{width}}  {leaf.rel_error:9.2e}  {leaf.analytic:12.6g}  {leaf.numeric:12.6g}"
                f"  {leaf.status}{leaf.counts()}"
            )
        return "\n".join(lines)


def wrong_gradients(report: VJPReport) -> VJPCheckError:
    """The error for the report's wrong leaves, one line each (where, both values, the error against
    the tolerance) and the located element, then the whole table."""
    lines = []
    for check in report.wrong:
        where = f" at element {check.index}" if check.index is not None else " along a random direction"
        lines.append(
            f"check_vjp: the gradient of {check.path} is wrong{where}: analytic {check.analytic:.8g}, "
            f"numeric {check.numeric:.8g}, relative error {check.rel_error:.2e} (tolerance {report.rtol:g})"
        )
        if check.n_checked:
            lines.append(f"  {check.located()}")
    return VJPCheckError("\n".join([*lines, str(report)]), report.wrong, report)
