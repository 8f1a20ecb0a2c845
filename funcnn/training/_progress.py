"""Progress within an epoch of :func:`funcnn.fit`: a tqdm bar when the output is a terminal and tqdm
is installed (the ``progress`` extra), plain lines through ``fit``'s ``log`` otherwise."""

from __future__ import annotations

import importlib
import sys
import time
from collections.abc import Callable
from typing import Any

Log = Callable[[str], None]

LINE_SECONDS = 10.0
"""In plain-lines mode, a line within an epoch at most this often (the epoch's own line always comes)."""
BAR_SECONDS = 0.1
"""The bar's redraws at most this often (tqdm's ``mininterval``)."""


def _terminal_bar(label: str, steps: int) -> Any:
    """A tqdm bar on stdout, or None when stdout is not a terminal or tqdm is not installed."""
    if not sys.stdout.isatty():
        return None
    try:
        tqdm = importlib.import_module("tqdm").tqdm
    except ImportError:
        return None
    return tqdm(
        total=steps, desc=label, unit="step", leave=False, file=sys.stdout, dynamic_ncols=True, mininterval=BAR_SECONDS
    )


class EpochProgress:
    """Progress of epoch ``epoch`` of ``epochs`` over its ``steps`` steps: :meth:`step` after each step,
    :meth:`close` at the end (or on an error). Shows the epoch's mean loss so far and examples per second
    (``unit``/s: img/s, seq/s for text); with ``log`` None, nothing."""

    def __init__(self, log: Log | None, epoch: int, epochs: int, steps: int, unit: str = "img") -> None:
        self.log, self.steps, self.unit = log, steps, unit
        self.label = f"epoch {epoch:>{len(str(epochs))}}/{epochs}"
        self.started = self.last_line = time.perf_counter()
        self.first_step_at = self.last_step_at = self.started
        self.images, self.loss_sum = 0, 0.0
        self.bar = _terminal_bar(self.label, steps) if log is not None else None

    def step(self, done: int, loss: float, images: int) -> None:
        """Step ``done`` (1-based) finished with ``loss`` on ``images`` examples."""
        self.images += images
        self.loss_sum += loss
        now = time.perf_counter()
        self.last_step_at = now
        if done == 1:
            self.first_step_at = now
        shown = f"loss {self.loss_sum / done:.4f}  {self.images / max(now - self.started, 1e-9):,.0f} {self.unit}/s"
        if self.bar is not None:
            self.bar.set_postfix_str(shown, refresh=False)
            self.bar.update(1)
        elif self.log is not None and done < self.steps and now - self.last_line >= LINE_SECONDS:
            self.last_line = now
            self.log(f"{self.label}  step {done}/{self.steps}  {shown}")

    def steady_seconds(self, seconds: float) -> float:
        """The epoch's ``seconds`` (its evaluation included) with its first step counted as long as the mean
        of the others: a run's first step also compiles Numba's kernels (seconds, the first time), which
        the epochs after it do not repeat. For an estimate of the time left; the epoch's own time stays
        as measured."""
        if self.steps < 2 or self.last_step_at <= self.first_step_at:
            return seconds
        first = self.first_step_at - self.started
        mean_of_others = (self.last_step_at - self.first_step_at) / (self.steps - 1)
        return max(seconds - first + mean_of_others, 0.0)

    def close(self) -> None:
        """Remove the bar (the epoch's line replaces it)."""
        if self.bar is not None:
            self.bar.close()
