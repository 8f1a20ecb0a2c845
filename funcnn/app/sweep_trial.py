"""One trial of a sweep: ``funcnn train`` with the trial's values, reporting validation accuracy to Optuna
after every epoch and stopping when its pruner says so."""

from __future__ import annotations

import argparse
import json
import os
import socket
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import optuna

from funcnn.app.space import Range


class TrialError(ValueError):
    """A trial that cannot finish with its values (training diverged, say): failed, and not retried."""


def make_objective(args: argparse.Namespace, space: Sequence[Range], out: Path) -> Callable[[optuna.Trial], float]:
    """``objective(trial) -> best validation accuracy``: trains with ``args`` and the trial's values of
    ``space``, writing ``out/trials/<number>/`` (checkpoint.npz, history.json); user attrs: ``worker``
    (host:pid), ``blas_threads`` (its OPENBLAS_NUM_THREADS), ``epochs`` run, ``test_acc`` of the best epoch's
    params, ``error`` when it fails."""
    from funcnn.app.cli import net_and_params
    from funcnn.app.datasets import load_named
    from funcnn.app.recipe import augment_for, optimizer_for
    from funcnn.train import Callback, Checkpoint, EpochEnd, accuracy, batch_starts, early_stopping, fit

    loaded: dict[tuple[str, str], Any] = {}  # a worker reads each data set once

    def objective(trial: optuna.Trial) -> float:
        trial.set_user_attr("worker", f"{socket.gethostname()}:{os.getpid()}")
        trial.set_user_attr("blas_threads", os.environ.get("OPENBLAS_NUM_THREADS"))
        values = {r.option: r.suggest(trial) for r in space}
        options = argparse.Namespace(**{**vars(args), **values})
        folder = out / "trials" / str(trial.number)
        folder.mkdir(parents=True, exist_ok=True)

        def prune(end: EpochEnd) -> str | None:
            trial.report(end.history.val_acc_history[-1], end.epoch)
            return "stop" if trial.should_prune() else None

        try:
            key = (options.dataset, options.dtype)
            if key not in loaded:
                loaded[key] = load_named(options.dataset, options.data_path, np.dtype(options.dtype).type)
            data = loaded[key]
            net, params = net_and_params(options, data)
            steps_per_epoch = len(batch_starts(len(data.train), options.batch_size))
            optimizer = optimizer_for(options, steps_per_epoch)
            callbacks: list[Callback] = [prune, early_stopping(options.patience)] if options.patience else [prune]
            result = fit(
                net, params, (data.train.x, data.train.y), (data.val.x, data.val.y), optimizer, epochs=options.epochs,
                batch_size=options.batch_size, reg=options.reg, seed=options.seed, callbacks=callbacks, log=None,
                checkpoint=Checkpoint(folder / "checkpoint.npz", config={"trial": trial.number, **values}),
                augment=augment_for(options),
            )  # fmt: skip
        except ValueError as error:  # diverged, or values the network refuses: this trial's result
            trial.set_user_attr("error", str(error))
            raise TrialError(str(error)) from None
        history = result.history
        test_acc = accuracy(net, result.best_params, data.test.x, data.test.y, result.best_state)
        summary = {
            "trial": trial.number,
            "values": values,
            "best_val_acc": history.best_val_acc,
            "test_acc": test_acc,
            "stopped_by": result.stopped_by,
            "history": asdict(history),
        }
        (folder / "history.json").write_text(json.dumps(summary, indent=1))
        trial.set_user_attr("epochs", len(history.val_acc_history))
        trial.set_user_attr("test_acc", test_acc)
        if result.stopped_by == prune.__name__:
            raise optuna.TrialPruned(f"pruned after epoch {len(history.val_acc_history)}")
        return history.best_val_acc

    return objective
