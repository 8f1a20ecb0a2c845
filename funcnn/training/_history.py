"""What :func:`funcnn.fit` records and hands out, all immutable: the :class:`History`, the
:class:`FitResult`, the :class:`EpochEnd` its callbacks see, and :func:`early_stopping`, a callback."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from funcnn._checks import int_at_least
from funcnn.core import State
from funcnn.tree import PyTree


@dataclass(frozen=True)
class History:
    """What ``fit`` recorded, with the course Solver's names: the loss of every step, and the
    train (on a subsample) and validation accuracy after every epoch; ``best_epoch`` is the first of those
    with the highest validation accuracy (0 before any). Immutable: ``fit`` hands out
    a new one after every epoch, never changing one it gave away."""

    loss_history: tuple[float, ...] = ()
    train_acc_history: tuple[float, ...] = ()
    val_acc_history: tuple[float, ...] = ()
    best_val_acc: float = 0.0
    best_epoch: int = 0
    epoch_seconds: tuple[float, ...] = ()

    def as_arrays(self) -> dict[str, np.ndarray]:
        """Every field as a float64 array (for checkpoints)."""
        return {k: np.asarray(v, dtype=np.float64) for k, v in asdict(self).items()}

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> History:
        """The history :meth:`as_arrays` gave."""
        names = ("loss_history", "train_acc_history", "val_acc_history", "epoch_seconds")
        series = {k: tuple(float(v) for v in arrays[k]) for k in names}
        return cls(**series, best_val_acc=float(arrays["best_val_acc"]), best_epoch=int(arrays["best_epoch"]))

    def after_epoch(self, epoch: int, losses: list[float], train_acc: float, val_acc: float, seconds: float) -> History:
        """This history followed by epoch ``epoch``'s step losses, accuracies and duration (a new History)."""
        best = not self.val_acc_history or val_acc > self.best_val_acc  # the first epoch is best, even at 0
        return History(
            self.loss_history + tuple(losses),
            self.train_acc_history + (train_acc,),
            self.val_acc_history + (val_acc,),
            val_acc if best else self.best_val_acc,
            epoch if best else self.best_epoch,
            self.epoch_seconds + (seconds,),
        )


@dataclass(frozen=True)
class FitResult:
    """``params`` and network ``state`` after the last epoch, ``best_params`` and ``best_state``
    (best validation accuracy), the optimizer state, and the :class:`History`. ``stopped_by`` is
    ``None`` when every epoch asked for ran, else the name of the callback that said "stop"
    (``"patience"`` for :func:`early_stopping`)."""

    params: PyTree
    best_params: PyTree
    opt_state: Any
    history: History
    state: State = ()
    best_state: State = ()
    stopped_by: str | None = None


@dataclass(frozen=True)
class EpochEnd:
    """What a callback sees after each epoch."""

    epoch: int  # 1-based number of the epoch just finished
    history: History  # the history so far (a frozen snapshot: tuples, not lists)
    params: PyTree  # params after this epoch
    state: State  # the moded layers' state after this epoch (() when none)


Callback = Callable[[EpochEnd], "str | None"]
"""Called after every epoch (after the checkpoint is saved); returns ``"stop"`` to end training after
that epoch, ``None`` to go on. What it raises propagates out of :func:`fit`."""


def callback_name(callback: Callback) -> str:
    """The name ``FitResult.stopped_by`` gives ``callback``: its ``__name__``, or its type's."""
    return str(getattr(callback, "__name__", type(callback).__name__))


def check_callbacks(owner: str, callbacks: object) -> tuple[Callback, ...]:
    """``callbacks`` (any iterable of callables, read once) as a tuple; TypeError naming the bad entry, or a
    single callable passed without a list."""
    problem = "must be a list of callables"
    if callable(callbacks):
        name = callback_name(callbacks)
        raise TypeError(
            f"{owner}: callbacks {problem}, got the single callable {name}; pass a list: callbacks=[{name}]"
        )
    if isinstance(callbacks, (str, bytes)) or not isinstance(callbacks, Iterable):
        raise TypeError(f"{owner}: callbacks {problem}, got {callbacks!r} ({type(callbacks).__name__})")
    checked = tuple(callbacks)
    for i, callback in enumerate(checked):
        if not callable(callback):
            raise TypeError(f"{owner}: callbacks {problem}, got {callback!r} ({type(callback).__name__}) at index {i}")
    return checked


def early_stopping(patience: int) -> Callback:
    """A callback that stops training when validation accuracy has not improved for ``patience``
    epochs in a row (``epoch - history.best_epoch >= patience``); ``fit``'s ``stopped_by`` is then
    ``"patience"``. Use ``result.best_params`` (the best epoch's), not ``result.params`` (the last's).
    It keeps no state of its own (the history has it), so it works across a resumed run.

    Args:
        patience: how many epochs without a better validation accuracy are allowed, ``>= 1``.

    Returns:
        A callback for :func:`fit` that returns ``"stop"`` then (``stopped_by == "patience"``).
    """
    int_at_least("early_stopping", "patience", patience, 1)

    def patience_(end: EpochEnd) -> str | None:
        return "stop" if end.epoch - end.history.best_epoch >= patience else None

    patience_.__name__ = patience_.__qualname__ = "patience"
    return patience_
