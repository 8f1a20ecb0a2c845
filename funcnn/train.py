"""The reproducible training loop :func:`fit`, with callbacks, progress, checkpoints and resume.

The objective is in :mod:`funcnn.objective`, what fit records in :mod:`funcnn.history`, its checkpoints in
:mod:`funcnn.resume`; their public names are importable from here too."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from funcnn.augment import Augment
from funcnn.checkpoint import save_checkpoint
from funcnn.core import Apply, State, layer_name, run
from funcnn.history import Callback, EpochEnd, FitResult, History, callback_name, check_callbacks, early_stopping
from funcnn.init import init_state
from funcnn.losses import Loss, softmax_loss
from funcnn.memory import keep_freed_memory
from funcnn.objective import (
    Objective,
    Step,
    accuracy,
    check_labels,
    l2_penalty,
    predict,
    training_step,
    value_and_grad,
    with_l2,
)
from funcnn.optim import Optimizer
from funcnn.progress import EpochProgress
from funcnn.resume import Checkpoint, checkpoint_options, checkpoint_tree, non_finite, resume_run
from funcnn.tree import PyTree
from funcnn.validation import int_at_least

__all__ = [
    "Callback",
    "Checkpoint",
    "EpochEnd",
    "FitResult",
    "History",
    "Objective",
    "TrainingInterrupted",
    "accuracy",
    "batch_starts",
    "early_stopping",
    "fit",
    "is_ctrl_c",
    "l2_penalty",
    "predict",
    "training_step",
    "value_and_grad",
    "with_l2",
]


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
    return x, y


def _train_epoch(
    step: Step,
    optimizer: Optimizer,
    result: FitResult,
    data: tuple[np.ndarray, np.ndarray],
    batches: list[np.ndarray],
    rng: np.random.Generator,
    epoch: int,
    progress: EpochProgress,
    diverged: Callable[[str], ValueError],
    augmenting: tuple[Augment, np.random.Generator] | None = None,
) -> tuple[PyTree, Any, State, list[float]]:
    """Epoch ``epoch``: one optimizer step per batch of indices into ``data``, from ``result``'s params,
    optimizer state and network state; ``(params, opt_state, state, losses)``. A non-finite loss raises
    ``diverged(what happened)``. ``augmenting``: an augmentation and its generator for the epoch."""
    (x, y), params, opt_state, state = data, result.params, result.opt_state, result.state
    losses = []
    try:
        for i, batch in enumerate(batches):
            inputs = x[batch] if augmenting is None else augmenting[0](augmenting[1], x[batch])
            value, grads, state = step(params, inputs, y[batch], state, rng)
            if not np.isfinite(value):
                raise diverged(f"the loss is {value} at epoch {epoch}, step {i + 1} of {len(batches)}")
            with np.errstate(over="ignore", invalid="ignore"):  # params that overflow are refused after the epoch
                params, opt_state = optimizer.update(grads, opt_state, params)
            losses.append(value)
            progress.step(i + 1, value, len(batch))
    finally:
        progress.close()
    return params, opt_state, state, losses


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
    net: Apply,
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
    **deprecated: Any,
) -> FitResult:
    """Train ``net`` from ``params`` with minibatch ``optimizer`` steps; nothing is modified in place.

    train, val: ``(x, y)`` pairs. Each epoch visits the training set once in an order drawn from
    ``seed`` and the epoch number, so a run is reproducible and a resumed run continues it exactly.
    A last minibatch of one example is merged into the one before. After each epoch it measures train
    accuracy (on ``num_train_samples`` examples) and validation accuracy and keeps the best params.

    Progress goes through ``log`` (None: silent): within an epoch a tqdm bar (loss, images/s) when
    stdout is a terminal and tqdm is installed, else a line at most every 10 s; after each epoch a line
    (loss, accuracies, images/s, time left). ``unit`` names an example in the rates (``"seq"`` for text: seq/s).

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
    """
    saving = checkpoint_options(checkpoint, deprecated)
    callbacks = check_callbacks("fit", callbacks)
    x_train, y_train = _check_pair("train", train)
    x_val, y_val = _check_pair("val", val)
    keep_freed_memory()  # each step's arrays reuse the last step's memory instead of page-faulting anew
    step = training_step(net, loss, reg, owner="fit")
    for name, value in (("epochs", epochs), ("batch_size", batch_size)):
        int_at_least("fit", name, value, 1)
    if state is None:
        state = init_state(net, x_train.shape[1:], x_train.dtype)
    scores = run(net, params, x_val[:1], state, train=False)[0]
    if np.ndim(scores) == 2:  # validation labels the scores cannot match would give accuracy 0 to the end
        for what, y in (("train", y_train), ("val", y_val)):
            check_labels(f"fit: {what}", y, scores.shape[1])
    config = {
        "net": layer_name(net),
        "optimizer": optimizer.name,
        "optimizer_hyperparams": _hyperparams(optimizer),
        "batch_size": int(batch_size),
        "seed": int(seed),
        "reg": float(reg),
        "num_train_samples": int(num_train_samples),
        "dtype": str(x_train.dtype),
        # a run without augmentation keeps the configuration it always had (its checkpoints resume as before)
        **({} if augment is None else {"augment": str(getattr(augment, "__name__", type(augment).__name__))}),
        **(saving.config or {} if saving is not None else {}),
    }
    config = json.loads(json.dumps(config))  # as it reads back: tuples become lists
    result = FitResult(params, params, optimizer.init(params), History(), state, state)
    start_epoch = 0
    if saving is not None and not (saving.resume or saving.overwrite) and Path(saving.path).exists():
        raise ValueError(
            f"fit: checkpoint {saving.path} already exists; continue it with fn.Checkpoint(path, resume=True), "
            "replace it with overwrite=True, or choose another path"
        )
    if saving is not None and saving.resume and Path(saving.path).exists():
        result, start_epoch = resume_run(saving, result, config, optimizer)
        if start_epoch >= epochs:
            raise ValueError(
                f"fit: checkpoint {saving.path} is already after epoch {start_epoch}; "
                f"ask for more epochs than {epochs} to continue"
            )
        if result.stopped_by is not None:
            _refuse_to_stop_again(
                saving.path,
                callbacks,
                EpochEnd(start_epoch, result.history, result.params, result.state),
                result.stopped_by,
            )
            result = replace(result, stopped_by=None)
        if log:
            log(f"resumed from {saving.path} after epoch {start_epoch}")
    n = len(x_train)
    starts = batch_starts(n, batch_size)
    done = start_epoch  # the last epoch completed (and checkpointed)

    def diverged(what: str) -> ValueError:
        kept = f"; {saving.path} keeps epoch {done}" if saving is not None and done else ""
        return ValueError(f"fit: {what}: training diverged (try a smaller learning rate){kept}")

    try:
        for epoch in range(start_epoch + 1, epochs + 1):
            started = time.perf_counter()
            order = np.random.default_rng([seed, epoch]).permutation(n)
            rng = np.random.default_rng([seed, epoch, 2])  # dropout masks
            batches = [order[start:end] for start, end in zip(starts, [*starts[1:], n])]
            progress = EpochProgress(log, epoch, epochs, len(batches), unit)
            augmenting = None if augment is None else (augment, np.random.default_rng([seed, epoch, 3]))
            params, opt_state, state, epoch_losses = _train_epoch(
                step, optimizer, result, (x_train, y_train), batches, rng, epoch, progress, diverged, augmenting
            )
            bad = non_finite({"params": params, "state": state, "opt_state": opt_state})
            if bad:  # an update can overflow after a finite loss: never save, nor continue from, such params
                raise diverged(f"after epoch {epoch}, {', '.join(bad[:5])} hold NaN or infinity")
            sample = np.random.default_rng([seed, epoch, 1]).permutation(n)[:num_train_samples]
            train_acc = accuracy(net, params, x_train[sample], y_train[sample], state)
            val_acc = accuracy(net, params, x_val, y_val, state)
            history = result.history.after_epoch(epoch, epoch_losses, train_acc, val_acc, time.perf_counter() - started)
            best = {"best_params": params, "best_state": state} if history.best_epoch == epoch else {}
            result = replace(result, params=params, opt_state=opt_state, state=state, history=history, **best)
            if saving is not None:
                save_checkpoint(saving.path, checkpoint_tree(epoch, result, config))
            done = epoch
            if log:
                seconds = history.epoch_seconds[-1]
                log(
                    f"{progress.label}  loss {np.mean(epoch_losses):.4f}  train acc {train_acc:.3f}  "
                    f"val acc {val_acc:.3f}  "
                    f"{n / seconds:,.0f} {unit}/s  {seconds:.1f} s  left {_clock(seconds * (epochs - epoch))}"
                )
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
