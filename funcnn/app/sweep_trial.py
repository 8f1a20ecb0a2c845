"""One trial of a sweep: ``funcnn train`` with the trial's values, reporting validation accuracy to Optuna
after every epoch and stopping when its pruner says so."""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import optuna
from optuna.trial import TrialState

from funcnn.app.files import write_atomically
from funcnn.app.space import Range
from funcnn.app.sweep_report import DUPLICATE, SLOT, slot_trials
from funcnn.app.sweep_signals import lost_storage


class TrialError(ValueError):
    """A trial that cannot finish with its values (training diverged, say): failed, and not retried."""


class Duplicate(Exception):
    """A trial of a slot queued twice (two commands growing the study at once): failed, not run, not counted."""


def _interrupted(error: BaseException) -> bool:
    """Whether a KeyboardInterrupt is behind ``error``: raised while one was handled, as ``zipfile`` does when a
    Ctrl-C stops ``np.savez`` mid-write (its ``close()`` then raises ValueError, "Can't close the ZIP file
    while there is an open writing handle")."""
    seen: set[int] = set()
    cause: BaseException | None = error
    while cause is not None and id(cause) not in seen:
        if isinstance(cause, KeyboardInterrupt):
            return True
        seen.add(id(cause))
        cause = cause.__cause__ or cause.__context__
    return False


def _first_of_slot(trial: optuna.Trial) -> int | None:
    """The number of an earlier trial of ``trial``'s slot that ran, runs or waits to (so this one is a copy),
    else None. Trial numbers are given in order, so of two copies queued at once exactly one runs."""
    slot = trial.user_attrs.get(SLOT)
    if slot is None:
        return None
    alive = (TrialState.WAITING, TrialState.RUNNING, TrialState.COMPLETE, TrialState.PRUNED)
    for t in slot_trials(trial.study.get_trials(deepcopy=False)):
        if t.number < trial.number and t.user_attrs.get(SLOT) == slot and (t.state in alive or "error" in t.user_attrs):
            return t.number
    return None


def make_objective(args: argparse.Namespace, space: Sequence[Range], out: Path) -> Callable[[optuna.Trial], float]:
    """``objective(trial) -> best validation accuracy``: trains with ``args`` and the trial's values of
    ``space``, writing ``out/trials/<number>/`` (``out``: the study's folder; checkpoint.npz, history.json);
    user attrs: ``worker`` (host:pid), ``blas_threads`` (its OPENBLAS_NUM_THREADS), ``epochs`` run,
    ``test_acc`` of the best epoch's params, ``error`` when it fails (any exception: its one line, also
    printed). A copy of a slot queued twice fails at once as a :class:`Duplicate`, never trained."""
    from funcnn.app.datasets import load_named
    from funcnn.app.recipe import train_course
    from funcnn.training import Checkpoint, EpochEnd

    loaded: dict[tuple[str, str], Any] = {}  # a worker reads each data set once

    def objective(trial: optuna.Trial) -> float:
        first = _first_of_slot(trial)
        if first is not None:
            trial.set_user_attr(DUPLICATE, first)
            raise Duplicate(f"trial {trial.number}: its slot is trial {first}'s")
        trial.set_user_attr("worker", f"{socket.gethostname()}:{os.getpid()}")
        trial.set_user_attr("blas_threads", os.environ.get("OPENBLAS_NUM_THREADS"))
        values = {r.option: r.suggest(trial) for r in space}
        options = argparse.Namespace(**{**vars(args), **values})
        folder = out / "trials" / str(trial.number)

        def prune(end: EpochEnd) -> str | None:
            trial.report(end.history.val_acc_history[-1], end.epoch)
            return "stop" if trial.should_prune() else None

        try:
            folder.mkdir(parents=True, exist_ok=True)
            key = (options.dataset, options.dtype)
            if key not in loaded:
                loaded[key] = load_named(options.dataset, options.data_path, np.dtype(options.dtype).type)
            data = loaded[key]
            checkpoint = Checkpoint(folder / "checkpoint.npz", config={"trial": trial.number, **values})
            run = train_course(options, data, checkpoint, callbacks=[prune])
        except Exception as error:  # diverged, values the network refuses, no memory, no folder: this trial's result
            if lost_storage(error) is not None:  # not the trial's: the worker stops, the trial is retried
                raise
            if _interrupted(error):  # a Ctrl-C that code under it turned into another error: still a Ctrl-C
                raise KeyboardInterrupt from None
            reason = str(error) if isinstance(error, ValueError) else f"{type(error).__name__}: {error}"
            trial.set_user_attr("error", reason)
            print(f"trial {trial.number} failed: {reason}", file=sys.stderr, flush=True)
            raise TrialError(reason) from None
        result, test_acc = run.result, run.test_acc
        history = result.history
        summary = {
            "trial": trial.number,
            "values": values,
            "best_val_acc": history.best_val_acc,
            "test_acc": test_acc,
            "stopped_by": result.stopped_by,
            "history": asdict(history),
        }
        write_atomically(folder / "history.json", json.dumps(summary, indent=1))
        trial.set_user_attr("epochs", len(history.val_acc_history))
        trial.set_user_attr("test_acc", test_acc)
        if result.stopped_by == prune.__name__:
            raise optuna.TrialPruned(f"pruned after epoch {len(history.val_acc_history)}")
        return history.best_val_acc

    return objective
