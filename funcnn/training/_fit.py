"""The reproducible training loop :func:`fit`, with callbacks, progress, checkpoints and resume.

The objective and its step are in ``_objective``, what fit records in ``_history``, its checkpoints in
``_checkpoint``."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from funcnn._checks import int_at_least
from funcnn.augment import Augment
from funcnn.core import LayerFn, State, layer_name, run
from funcnn.layers import init_state
from funcnn.losses import Loss, softmax_loss
from funcnn.optim import Optimizer
from funcnn.training._checkpoint import Checkpoint, checkpoint_options, checkpoint_tree, non_finite, resume_run
from funcnn.training._checkpoint_files import save_checkpoint
from funcnn.training._history import (
    Callback,
    EpochEnd,
    FitResult,
    History,
    callback_name,
    check_callbacks,
)
from funcnn.training._memory import keep_freed_memory
from funcnn.training._objective import (
    Step,
    accuracy,
    check_labels,
    training_step,
)
from funcnn.training._progress import EpochProgress
from funcnn.tree import PyTree

__all__ = ["TrainingInterrupted", "batch_starts", "fit", "is_ctrl_c"]


def _asks_to_stop(callbacks: Sequence[Callback], end: EpochEnd) -> str | None:
    """The name of the first callback that returns "stop" (every callback is called), else None."""
    stopped_by = None
    for callback in callbacks:
        answer = callback(end)
        if answer not in (None, "stop"):
            raise ValueError(
                f'fit: callback {callback_name(callback)} returned {answer!r}; a callback returns "stop" or None'
            )
        if answer == "stop" and stopped_by is None:
            stopped_by = callback_name(callback)
    return stopped_by


def _refuse_to_stop_again(path: str | Path, callbacks: Sequence[Callback], end: EpochEnd, stopped_by: str) -> None:
    """Refuse to resume a run that ``stopped_by`` stopped after ``end.epoch`` when ``callbacks``, asked again
    at that epoch, would stop it again: it would train on, and change its params, every time it is resumed."""
    again = _asks_to_stop(callbacks, end)
    if again is not None:
        raise ValueError(
            f"fit: checkpoint {path} was stopped early by {stopped_by} after epoch {end.epoch}, and "
            f"{again} would stop it again; to go on, resume with a callback that lets it (such as "
            "a larger patience, --patience N) or without it"
        )


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C during :func:`fit`; ``epoch`` is the last epoch completed (and checkpointed, if asked)."""

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch
        super().__init__(f"interrupted after epoch {epoch}")


def is_ctrl_c(error: BaseException) -> bool:
    """Whether ``error`` is, or was caused by, a KeyboardInterrupt: Ctrl-C while a Numba kernel runs
    arrives as a SystemError raised from the KeyboardInterrupt."""
    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, KeyboardInterrupt):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def batch_starts(n: int, batch_size: int) -> list[int]:
    """Where each minibatch of an epoch over ``n`` examples starts; a last batch of a single example is
    merged into the one before (batch norm cannot normalize one example). ``len()`` is the steps per epoch."""
    starts = list(range(0, n, batch_size))
    if len(starts) > 1 and n - starts[-1] == 1:
        starts.pop()
    return starts


def _check_pair(what: str, pair: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """``pair`` as ``(x, y)``, refused unless it holds at least one example and one label per example (or, for
    sequences, one row of labels per example: ``y`` ``(N, T)`` for scores ``(N, T, C)``)."""
    x, y = pair
    if np.ndim(y) not in (1, 2) or len(x) != len(y):
        raise ValueError(
            f"fit: {what} must be (x, y) with one label per example, "
            f"got x of shape {np.shape(x)} and y of shape {np.shape(y)}"
        )
    if len(x) == 0:
        raise ValueError(f"fit: {what} has no examples (x of shape {np.shape(x)})")
    x = np.asarray(x)
    if x.dtype.kind == "f" and not np.isfinite(x).all():
        bad = np.argwhere(~np.isfinite(x))
        raise ValueError(
            f"fit: {what} x holds {len(bad)} NaN or infinite values (the first in example {bad[0][0]}, "
            f"at {tuple(int(i) for i in bad[0][1:])}): no step can learn from them; clean or drop those examples"
        )
    return x, y


@dataclass(frozen=True)
class _Loop:
    """What every epoch of one :func:`fit` uses: the step, the data, the settings, and where lines go."""

    net: LayerFn
    step: Step
    optimizer: Optimizer
    train: tuple[np.ndarray, np.ndarray]
    val: tuple[np.ndarray, np.ndarray]
    starts: list[int]
    epochs: int
    seed: int
    num_train_samples: int
    augment: Augment | None
    log: Callable[[str], None] | None
    unit: str = "img"

    def batches(self, epoch: int) -> list[np.ndarray]:
        """The epoch's minibatches of indices, in an order drawn from the seed and the epoch."""
        n = len(self.train[0])
        order = np.random.default_rng([self.seed, epoch]).permutation(n)
        return [order[start:end] for start, end in zip(self.starts, [*self.starts[1:], n])]

    def accuracies(self, params: PyTree, state: State, epoch: int) -> tuple[float, float]:
        """Train accuracy on ``num_train_samples`` examples drawn for the epoch, and validation accuracy."""
        (x, y), n = self.train, len(self.train[0])
        sample = np.random.default_rng([self.seed, epoch, 1]).permutation(n)[: self.num_train_samples]
        return accuracy(self.net, params, x[sample], y[sample], state), accuracy(self.net, params, *self.val, state)

    def line(self, progress: EpochProgress, epoch: int, losses: list[float], history: History) -> str:
        """The line after epoch ``epoch``: its mean loss, the accuracies, speed, time and the time left."""
        seconds = history.epoch_seconds[-1]
        left = _clock(progress.steady_seconds(seconds) * (self.epochs - epoch))  # without the first step's compile
        return (
            f"{progress.label}  loss {np.mean(losses):.4f}  train acc {history.train_acc_history[-1]:.3f}  "
            f"val acc {history.val_acc_history[-1]:.3f}  "
            f"{len(self.train[0]) / seconds:,.0f} {self.unit}/s  {seconds:.1f} s  left {left}"
        )


def _train_epoch(
    loop: _Loop, result: FitResult, epoch: int, diverged: Callable[[str], ValueError]
) -> tuple[PyTree, Any, State, list[float], EpochProgress]:
    """Epoch ``epoch``: one optimizer step per minibatch, from ``result``'s params, optimizer state and
    network state; ``(params, opt_state, state, losses, progress)``. A non-finite loss raises
    ``diverged(what happened)``. Dropout masks and augmentation draw from generators of the seed and epoch."""
    (x, y), params, opt_state, state = loop.train, result.params, result.opt_state, result.state
    batches = loop.batches(epoch)
    rng = np.random.default_rng([loop.seed, epoch, 2])  # dropout masks
    augmenting = np.random.default_rng([loop.seed, epoch, 3])
    progress = EpochProgress(loop.log, epoch, loop.epochs, len(batches), loop.unit)
    losses = []
    try:
        for i, batch in enumerate(batches):
            inputs = x[batch] if loop.augment is None else loop.augment(augmenting, x[batch])
            value, grads, state = loop.step(params, inputs, y[batch], state, rng)
            if not np.isfinite(value):
                raise diverged(f"the loss is {value} at epoch {epoch}, step {i + 1} of {len(batches)}")
            with np.errstate(over="ignore", invalid="ignore"):  # params that overflow are refused after the epoch
                params, opt_state = loop.optimizer.update(grads, opt_state, params)
            losses.append(value)
            progress.step(i + 1, value, len(batch))
    finally:
        progress.close()
    bad = non_finite({"params": params, "state": state, "opt_state": opt_state})
    if bad:  # an update can overflow after a finite loss: never save, nor continue from, such params
        raise diverged(f"after epoch {epoch}, {', '.join(bad[:5])} hold NaN or infinity")
    return params, opt_state, state, losses, progress


def _config(
    net: LayerFn,
    optimizer: Optimizer,
    x_train: np.ndarray,
    settings: dict[str, Any],
    augment: Augment | None,
    saving: Checkpoint | None,
) -> dict[str, Any]:
    """The run's configuration as a checkpoint stores it (JSON as it reads back: tuples become lists)."""
    config = {
        "net": layer_name(net),
        "optimizer": optimizer.name,
        "optimizer_hyperparams": _hyperparams(optimizer),
        **settings,
        "dtype": str(x_train.dtype),
        # a run without augmentation keeps the configuration it always had (its checkpoints resume as before)
        **({} if augment is None else {"augment": str(getattr(augment, "__name__", type(augment).__name__))}),
        **(saving.config or {} if saving is not None else {}),
    }
    return dict(json.loads(json.dumps(config)))


def _resumed(
    saving: Checkpoint | None,
    result: FitResult,
    config: dict[str, Any],
    loop: _Loop,
    callbacks: Sequence[Callback],
) -> tuple[FitResult, int]:
    """``(result, last epoch done)``: ``result`` and 0 for a fresh run, else what the checkpoint holds, refused
    when it is another run's (without ``resume`` or ``overwrite``), already done, or stopped by a callback that
    would stop it again."""
    if saving is None or not Path(saving.path).exists():
        return result, 0
    if not (saving.resume or saving.overwrite):
        raise ValueError(
            f"fit: checkpoint {saving.path} already exists; continue it with fn.Checkpoint(path, resume=True), "
            "replace it with overwrite=True, or choose another path"
        )
    if not saving.resume:
        return result, 0
    result, start_epoch = resume_run(saving, result, config, loop.optimizer)
    if start_epoch >= loop.epochs:
        raise ValueError(
            f"fit: checkpoint {saving.path} is already after epoch {start_epoch}; "
            f"ask for more epochs than {loop.epochs} to continue"
        )
    if result.stopped_by is not None:
        end = EpochEnd(start_epoch, result.history, result.params, result.state)
        _refuse_to_stop_again(saving.path, callbacks, end, result.stopped_by)
        result = replace(result, stopped_by=None)
    if loop.log:
        loop.log(f"resumed from {saving.path} after epoch {start_epoch}")
    return result, start_epoch


def _check_labels_fit(net: LayerFn, params: PyTree, state: State, y_train: np.ndarray, val: tuple[Any, Any]) -> None:
    """Labels the scores cannot match would give accuracy 0 to the end: refused before the first epoch."""
    scores = run(net, params, val[0][:1], state, train=False)[0]
    if np.ndim(scores) == 2:
        for what, y in (("train", y_train), ("val", val[1])):
            check_labels(f"fit: {what}", y, scores.shape[1])


def _hyperparams(optimizer: Optimizer) -> dict[str, Any]:
    """The optimizer's hyperparameters as JSON: numbers as they are, a schedule by name and first value."""

    def describe(value: Any) -> Any:
        if callable(value):
            return f"{getattr(value, '__qualname__', type(value).__name__)}: {value(0)!r} at step 0"
        return value if isinstance(value, (int, float, str, bool)) or value is None else repr(value)

    return {key: describe(value) for key, value in optimizer.hyperparams.items()}


def _clock(seconds: float) -> str:
    whole = round(seconds)
    return f"{whole // 60}:{whole % 60:02d}"


def fit(
    net: LayerFn,
    params: PyTree,
    train: tuple[np.ndarray, np.ndarray],
    val: tuple[np.ndarray, np.ndarray],
    optimizer: Optimizer,
    *,
    epochs: int = 10,
    batch_size: int = 100,
    loss: Loss = softmax_loss,
    reg: float = 0.0,
    seed: int = 0,
    num_train_samples: int = 1000,
    state: State | None = None,
    checkpoint: str | Path | Checkpoint | None = None,
    callbacks: Sequence[Callback] = (),
    log: Callable[[str], None] | None = print,
    augment: Augment | None = None,
    unit: str = "img",
) -> FitResult:
    """Train ``net`` from ``params`` with minibatch ``optimizer`` steps; nothing is modified in place.

    train, val: ``(x, y)`` pairs. Each epoch visits the training set once in an order drawn from
    ``seed`` and the epoch number, so a run is reproducible and a resumed run continues it exactly.
    A last minibatch of one example is merged into the one before. After each epoch it measures train
    accuracy (on ``num_train_samples`` examples) and validation accuracy and keeps the best params.

    Progress goes through ``log`` (None: silent): within an epoch a tqdm bar (loss, images/s) when
    stdout is a terminal and tqdm is installed, else a line at most every 10 s; after each epoch a line
    (loss, accuracies, images/s, time left: the epoch's time with its first step counted as the mean of
    the others, since the first step of a run also compiles Numba's kernels).

    ``checkpoint`` (a path, or a :class:`Checkpoint` to resume or add settings) is saved after every
    epoch with everything needed to resume; a checkpoint whose configuration differs is refused
    unless allowed, and so is one holding NaN or infinite values. A non-finite loss, or an update that
    leaves params (or optimizer or network state) non-finite, stops training with a ValueError, the
    last finite checkpoint kept. Ctrl-C raises :class:`TrainingInterrupted` (a KeyboardInterrupt)
    naming the last completed epoch. A checkpoint records which callback stopped its run; resuming such a
    run asks ``callbacks`` again at its last epoch and refuses (ValueError) if one would stop it again, as a
    resume of a run that reached ``epochs`` is refused (a larger patience, or none, goes on).

    ``callbacks`` (a list of callables, checked before the first epoch) are called in order after every
    epoch (after its checkpoint and line) with an :class:`EpochEnd`; when one returns ``"stop"`` (all of
    them are called first), training ends after that epoch and ``stopped_by`` names it. What a callback
    raises propagates. :func:`early_stopping` is one. Returns a :class:`FitResult`: ``params`` and
    ``state`` of the last epoch run (to continue from), ``best_params`` and ``best_state`` of the epoch
    with the best validation accuracy (the first of equals). Neither it nor its history changes after it is returned.

    A moded network (batch norm, dropout) trains in training mode with a generator drawn from
    ``seed`` and the epoch, and is evaluated in evaluation mode; its ``state`` (default: its initial
    state) is carried from step to step, returned, and saved in checkpoints with the params.
    ``augment(rng, x_batch) -> x_batch`` (e.g. :func:`funcnn.augment.crop_and_flip`) changes each training
    batch before its step, with a generator drawn from ``seed`` and the epoch (so a resumed run draws the
    same crops as an uninterrupted one); evaluation sees the data as it is.
    Speed: ``fit`` calls :func:`funcnn.keep_freed_memory` (glibc keeps freed blocks for reuse, so
    the steps do not page-fault their arrays in again; ``FUNCNN_KEEP_FREED_MEMORY=0`` turns it off).

    Args:
        net: the network, ending in class scores ``(N, C)`` (or ``(N, T, C)`` for sequences).
        params: its initial params (not modified).
        train: ``(x, y)``: the training examples and their integer labels.
        val: ``(x, y)``: the validation examples and labels.
        optimizer: an update rule from :mod:`funcnn.optim`.
        epochs: how many passes over the training set.
        batch_size: the minibatch size.
        loss: ``loss(scores, y) -> (value, vjp)``.
        reg: the L2 strength on weights (``0.5 * reg * sum(w**2)``).
        seed: draws each epoch's order, dropout masks and augmentation.
        num_train_samples: how many training examples the train accuracy is measured on.
        state: the network's initial state (default: ``init_state`` of it).
        checkpoint: a path, or a :class:`Checkpoint`, saved after every epoch.
        callbacks: callables called with an :class:`EpochEnd` after every epoch; ``"stop"`` ends training.
        log: where progress lines go (None: silent).
        unit: what an example is called in the rates (``"img"``: img/s; ``"seq"`` for text: seq/s).
        augment: ``augment(rng, x_batch) -> x_batch``, applied to every training batch.

    Returns:
        A :class:`FitResult`: last and best params and state, the history, and which callback stopped the run.
    """
    saving = checkpoint_options(checkpoint)
    callbacks = check_callbacks("fit", callbacks)
    train, val = _check_pair("train", train), _check_pair("val", val)
    keep_freed_memory()  # each step's arrays reuse the last step's memory instead of page-faulting anew
    step = training_step(net, loss, reg, owner="fit")
    for name, value in (("epochs", epochs), ("batch_size", batch_size)):
        int_at_least("fit", name, value, 1)
    state = init_state(net, train[0].shape[1:], train[0].dtype) if state is None else state
    _check_labels_fit(net, params, state, train[1], val)
    settings = {"batch_size": int(batch_size), "seed": int(seed), "reg": float(reg)}
    config = _config(
        net, optimizer, train[0], {**settings, "num_train_samples": int(num_train_samples)}, augment, saving
    )
    starts = batch_starts(len(train[0]), batch_size)
    loop = _Loop(net, step, optimizer, train, val, starts, epochs, seed, num_train_samples, augment, log, unit)
    result, done = _resumed(
        saving, FitResult(params, params, optimizer.init(params), History(), state, state), config, loop, callbacks
    )

    def diverged(what: str) -> ValueError:
        kept = f"; {saving.path} keeps epoch {done}" if saving is not None and done else ""
        return ValueError(f"fit: {what}: training diverged (try a smaller learning rate){kept}")

    try:
        for epoch in range(done + 1, epochs + 1):
            started = time.perf_counter()
            params, opt_state, state, losses, progress = _train_epoch(loop, result, epoch, diverged)
            accuracies = loop.accuracies(params, state, epoch)
            history = result.history.after_epoch(epoch, losses, *accuracies, time.perf_counter() - started)
            best = {"best_params": params, "best_state": state} if history.best_epoch == epoch else {}
            result = replace(result, params=params, opt_state=opt_state, state=state, history=history, **best)
            if saving is not None:
                save_checkpoint(saving.path, checkpoint_tree(epoch, result, config))
            done = epoch
            if log:
                log(loop.line(progress, epoch, losses, history))
            stopped_by = _asks_to_stop(callbacks, EpochEnd(epoch, history, params, state))
            if stopped_by is not None:
                result = replace(result, stopped_by=stopped_by)
                if saving is not None:  # saved again, so that a resume knows the run was stopped
                    save_checkpoint(saving.path, checkpoint_tree(epoch, result, config))
                if log:
                    log(f"stopped after epoch {epoch} by {stopped_by}")
                return result
    except (KeyboardInterrupt, SystemError) as error:
        if not is_ctrl_c(error):
            raise
        raise TrainingInterrupted(done) from None
    return result
