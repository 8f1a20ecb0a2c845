"""Training: loss and gradients of a network, L2 regularization, and a reproducible ``fit`` loop."""

from __future__ import annotations

import json
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from funcnn.checkpoint import SEP, load_checkpoint, save_checkpoint
from funcnn.core import Apply, Layer, State, layer_name, pull_back, run
from funcnn.init import init_state
from funcnn.losses import Loss, softmax_loss
from funcnn.memory import keep_freed_memory
from funcnn.optim import Optimizer, restore_state
from funcnn.progress import EpochProgress
from funcnn.tree import PyTree, tree_add, tree_leaves_with_path, tree_map, tree_map_with_path
from funcnn.validation import int_at_least, number_at_least, whole_number

Objective = Callable[[PyTree, np.ndarray, np.ndarray], tuple[float, PyTree]]
# step(params, x, y, state, rng) -> (loss, grads, new_state): one training-mode evaluation of a network.
Step = Callable[[PyTree, np.ndarray, np.ndarray, State, "np.random.Generator | None"], tuple[float, PyTree, State]]
AddL2 = Callable[[float, PyTree, PyTree], tuple[float, PyTree]]


def _is_weight(path: tuple[Any, ...]) -> bool:
    return bool(path) and path[-1] == "w"


def l2_penalty(params: PyTree, reg: float) -> tuple[float, PyTree]:
    """``0.5 * reg * sum(w ** 2)`` over the leaves named ``"w"`` (weights, not biases), and its
    gradient (``reg * w`` on weights, 0 elsewhere), mirroring ``params``."""
    reg = float(reg)
    weights = [leaf for path, leaf in tree_leaves_with_path(params) if _is_weight(path)]
    squares = (float(np.sum(np.square(leaf, dtype=np.float64))) for leaf in weights)
    grads = tree_map_with_path(lambda p, leaf: reg * leaf if _is_weight(p) else np.zeros_like(leaf), params)
    return 0.5 * reg * sum(squares), grads


def _l2_term(owner: str, reg: float) -> AddL2:
    """``add(loss, grads, params) -> (loss, grads)`` plus :func:`l2_penalty` at ``reg`` (checked here, the one
    place, and named as ``owner``'s argument); with ``reg == 0`` it returns them as they are."""
    reg = number_at_least(owner, "reg", reg, 0)

    def add(value: float, grads: PyTree, params: PyTree) -> tuple[float, PyTree]:
        if not reg:
            return value, grads
        penalty, penalty_grads = l2_penalty(params, reg)
        return value + penalty, tree_add(grads, penalty_grads)

    return add


def _step(net: Apply, loss: Loss, add_l2: AddL2) -> Step:
    """The training step, written once: the forward pass in training mode, the loss, the pull-back to the
    params (``need_dx=False``: nobody needs the data's gradient) and the L2 term."""

    def step(params: PyTree, x: np.ndarray, y: np.ndarray, state: State = (),
             rng: np.random.Generator | None = None) -> tuple[float, PyTree, State]:
        scores, net_vjp, new_state = run(net, params, x, state, train=True, rng=rng)
        value, loss_vjp = loss(scores, y)
        grads, _ = pull_back(net_vjp, loss_vjp(1.0), need_dx=False)
        return *add_l2(float(value), grads, params), new_state

    return step


def training_step(net: Apply, loss: Loss = softmax_loss, reg: float = 0.0) -> Step:
    """``step(params, x, y, state=(), rng=None) -> (loss, grads, new_state)``: ``net`` in training mode on
    ``x`` (``(N, ...)``) from ``state``, ``loss`` on labels ``y`` (``(N,)``) plus the L2 term at ``reg``,
    and the gradients of it all, mirroring ``params``. What :func:`fit` and :func:`funcnn.doctor` run."""
    return _step(net, loss, _l2_term("training_step", reg))


def value_and_grad(net: Apply, loss: Loss = softmax_loss) -> Objective:
    """``objective(params, x, y) -> (loss, grads)`` for a network ending in class scores and a loss
    such as :func:`funcnn.softmax_loss`; ``grads`` mirrors ``params``. A moded network (batch norm,
    dropout) needs its state and mode: :func:`funcnn.bind` it first, or train it with :func:`fit`."""
    if isinstance(net, Layer) and net.moded:
        raise TypeError(f"value_and_grad: {net.name} needs a mode and a state; pass fn.bind(net, state, train=True, "
                        "rng=...) instead, or train it with fn.fit, which carries its state")
    step = _step(net, loss, _l2_term("value_and_grad", 0.0))

    def objective(params: PyTree, x: np.ndarray, y: np.ndarray) -> tuple[float, PyTree]:
        value, grads, _ = step(params, x, y, (), None)
        return value, grads

    return objective


def with_l2(objective: Objective, reg: float) -> Objective:
    """``objective`` plus :func:`l2_penalty`: the course's ``reg`` on weights only."""
    add_l2 = _l2_term("with_l2", reg)

    def regularized(params: PyTree, x: np.ndarray, y: np.ndarray) -> tuple[float, PyTree]:
        return add_l2(*objective(params, x, y), params)

    return regularized if reg else objective


def predict(net: Apply, params: PyTree, x: np.ndarray, state: State = (), batch_size: int = 500) -> np.ndarray:
    """Predicted class of each example, in evaluation mode: ``argmax`` of the scores, computed in
    batches; ``(N,)``. ``state`` is the network's (batch norm's running statistics), if it has one."""
    batches = range(0, len(x), batch_size)
    scores = (run(net, params, x[i : i + batch_size], state, train=False)[0] for i in batches)
    return np.concatenate([s.argmax(axis=1) for s in scores])


def accuracy(
    net: Apply, params: PyTree, x: np.ndarray, y: np.ndarray, state: State = (), batch_size: int = 500
) -> float:
    """Fraction of examples whose predicted class (in evaluation mode) is ``y`` (``(N,)`` ints)."""
    if np.shape(y) != (len(x),):
        raise ValueError(f"accuracy: labels y must have shape ({len(x)},) to match x of shape {np.shape(x)}, "
                         f"got {np.shape(y)}")
    return float(np.mean(predict(net, params, x, state, batch_size) == y))


@dataclass(frozen=True)
class History:
    """What ``fit`` recorded, with the course Solver's names: the loss of every step, and the
    train (on a subsample) and validation accuracy after every epoch. Immutable: ``fit`` hands out
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
        best = val_acc > self.best_val_acc
        return History(self.loss_history + tuple(losses), self.train_acc_history + (train_acc,),
                       self.val_acc_history + (val_acc,), val_acc if best else self.best_val_acc,
                       epoch if best else self.best_epoch, self.epoch_seconds + (seconds,))


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


def _asks_to_stop(callbacks: Sequence[Callback], end: EpochEnd) -> str | None:
    """The name of the first callback that returns "stop" (every callback is called), else None."""
    stopped_by = None
    for callback in callbacks:
        answer = callback(end)
        if answer not in (None, "stop"):
            raise ValueError(f"fit: callback {callback_name(callback)} returned {answer!r}; a callback returns "
                             '"stop" or None')
        if answer == "stop" and stopped_by is None:
            stopped_by = callback_name(callback)
    return stopped_by


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


def _checkpoint_tree(epoch: int, result: FitResult, config: dict[str, Any]) -> dict[str, Any]:
    return {"epoch": np.asarray(epoch), "params": result.params, "best_params": result.best_params,
            "state": result.state,
            "best_state": result.best_state, "opt_state": result.opt_state, "history": result.history.as_arrays(),
            "config": np.asarray(json.dumps(config, sort_keys=True))}


def _config_changes(saved: dict[str, Any], config: dict[str, Any]) -> list[str]:
    """``"key: saved -> now"`` for every setting that differs."""
    missing = "(not set)"
    return [f"{key}: {saved.get(key, missing)!r} -> {config.get(key, missing)!r}"
            for key in sorted(saved.keys() | config.keys()) if saved.get(key, missing) != config.get(key, missing)]


def _non_finite(tree: PyTree) -> list[str]:
    """Key paths of the float leaves of ``tree`` that hold NaN or infinity."""
    return [SEP.join(map(str, path)) for path, leaf in tree_leaves_with_path(tree)
            if np.asarray(leaf).dtype.kind == "f" and not np.isfinite(leaf).all()]


def _saved_config(checkpoint: str | Path) -> dict[str, Any]:
    """The configuration stored in ``checkpoint``, read before anything else it holds."""
    text = load_checkpoint(checkpoint, {"config": None}, strict=False)["config"]
    if text.shape != () or text.dtype.kind != "U":
        problem = f"an array of shape {text.shape}" if text.shape else f"a {text.dtype} array"
    else:
        try:
            config = json.loads(str(text))
        except ValueError as error:
            config, problem = None, str(error)
        else:
            problem = f"a JSON {type(config).__name__}"
        if isinstance(config, dict):
            return config
    raise ValueError(f"checkpoint {checkpoint}: 'config' is not a JSON object of settings ({problem})")


def _saved_history(checkpoint: str | Path, arrays: dict[str, np.ndarray]) -> History:
    for key, value in arrays.items():
        scalar = key in ("best_val_acc", "best_epoch")
        if key == "best_epoch":
            whole_number(f"checkpoint {checkpoint}", f"'history/{key}'", value)
        elif value.ndim != (0 if scalar else 1) or value.dtype.kind not in "biuf":
            what = "a number" if scalar else "a list of numbers"
            raise ValueError(f"checkpoint {checkpoint}: 'history/{key}' must be {what}, "
                             f"got an array of {value.dtype} of shape {value.shape}")
    return History.from_arrays(arrays)


@dataclass(frozen=True)
class Checkpoint:
    """Where :func:`fit` saves, after every epoch, everything needed to resume (an ``.npz``), and how it
    resumes. ``resume``: continue after the epoch saved in ``path`` when the file exists. ``config``:
    JSON-able settings (such as the learning rate) stored with fit's own (optimizer and its
    hyperparameters, batch size, seed, reg, dtype, network); a resume whose configuration differs is
    refused, listing the differences, unless ``allow_config_change``."""

    path: str | Path
    resume: bool = False
    config: Mapping[str, Any] | None = None
    allow_config_change: bool = False


def _checkpoint_options(checkpoint: str | Path | Checkpoint | None, legacy: dict[str, Any]) -> Checkpoint | None:
    """``checkpoint`` as a :class:`Checkpoint`; fit's former ``resume``, ``config`` and ``allow_config_change``
    arguments still work for this release, with a DeprecationWarning."""
    unknown = sorted(set(legacy) - {"resume", "config", "allow_config_change"})
    if unknown:
        raise TypeError(f"fit() got an unexpected keyword argument {unknown[0]!r}")
    if legacy:
        warnings.warn(f"fit: {', '.join(sorted(legacy))} moved into checkpoint=fn.Checkpoint(path, resume=..., "
                      "config=..., allow_config_change=...); the old arguments go in the next release",
                      DeprecationWarning, stacklevel=3)
    if checkpoint is None or isinstance(checkpoint, Checkpoint):
        return replace(checkpoint, **legacy) if checkpoint is not None and legacy else checkpoint
    return Checkpoint(checkpoint, **legacy)


def _resume(
    checkpoint: Checkpoint, result: FitResult, config: dict[str, Any], optimizer: Optimizer
) -> tuple[FitResult, int]:
    """The run saved in ``checkpoint`` and its epoch, after checking its configuration (first: a
    changed network is reported as such, not as missing keys) and its values."""
    path = checkpoint.path
    changes = _config_changes(_saved_config(path), config)
    if changes and not checkpoint.allow_config_change:
        raise ValueError(f"fit: checkpoint {path} was written with another configuration ({'; '.join(changes)}); "
                         "resume with the same settings, or allow the change (Checkpoint(..., "
                         "allow_config_change=True), --allow-config-change)")
    like = _checkpoint_tree(0, result, config)
    like["history"] = {k: None for k in like["history"]}
    like["config"] = like["epoch"] = None  # checked below, never cast
    like["opt_state"] = tree_map(lambda _: None, like["opt_state"])  # the optimizer checks its own state
    try:
        saved = load_checkpoint(path, like)
    except ValueError as error:
        if not changes:
            raise
        raise ValueError(f"{error}: the network changed with the configuration ({'; '.join(changes)}), and a run "
                         "cannot continue in another network") from None
    epoch = whole_number(f"checkpoint {path}", "'epoch'", saved["epoch"])
    try:
        opt_state = restore_state(optimizer, saved["opt_state"], saved["params"])
    except ValueError as error:
        raise ValueError(f"checkpoint {path}: opt_state: {error}") from None
    history = _saved_history(path, saved["history"])
    trees = ("params", "best_params", "state", "best_state")
    bad = _non_finite({**{k: saved[k] for k in trees}, "opt_state": opt_state})
    if bad:
        raise ValueError(f"fit: checkpoint {path} holds NaN or infinite values in {', '.join(bad[:5])}; "
                         "refusing to resume from it")
    params, best_params, state, best_state = (saved[k] for k in trees)
    return FitResult(params, best_params, opt_state, history, state, best_state), epoch


def early_stopping(patience: int) -> Callback:
    """A callback that stops training when validation accuracy has not improved for ``patience``
    epochs in a row (``epoch - history.best_epoch >= patience``); ``fit``'s ``stopped_by`` is then
    ``"patience"``. Use ``result.best_params`` (the best epoch's), not ``result.params`` (the last's).
    It keeps no state of its own (the history has it), so it works across a resumed run."""
    int_at_least("early_stopping", "patience", patience, 1)

    def patience_(end: EpochEnd) -> str | None:
        return "stop" if end.epoch - end.history.best_epoch >= patience else None

    patience_.__name__ = patience_.__qualname__ = "patience"
    return patience_


def batch_starts(n: int, batch_size: int) -> list[int]:
    """Where each minibatch of an epoch over ``n`` examples starts; a last batch of a single example is
    merged into the one before (batch norm cannot normalize one example). ``len()`` is the steps per epoch."""
    starts = list(range(0, n, batch_size))
    if len(starts) > 1 and n - starts[-1] == 1:
        starts.pop()
    return starts


def _check_pair(what: str, pair: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """``pair`` as ``(x, y)``, refused unless it holds at least one example and one label per example."""
    x, y = pair
    if np.ndim(y) != 1 or len(x) != len(y):
        raise ValueError(f"fit: {what} must be (x, y) with one label per example, "
                         f"got x of shape {np.shape(x)} and y of shape {np.shape(y)}")
    if len(x) == 0:
        raise ValueError(f"fit: {what} has no examples (x of shape {np.shape(x)})")
    return x, y


def _train_epoch(
    step: Step, optimizer: Optimizer, result: FitResult, data: tuple[np.ndarray, np.ndarray], batches: list[np.ndarray],
    rng: np.random.Generator, epoch: int, progress: EpochProgress, diverged: Callable[[str], ValueError],
) -> tuple[PyTree, Any, State, list[float]]:
    """Epoch ``epoch``: one optimizer step per batch of indices into ``data``, from ``result``'s params,
    optimizer state and network state; ``(params, opt_state, state, losses)``. A non-finite loss raises
    ``diverged(what happened)``."""
    (x, y), params, opt_state, state = data, result.params, result.opt_state, result.state
    losses = []
    try:
        for i, batch in enumerate(batches):
            value, grads, state = step(params, x[batch], y[batch], state, rng)
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
    **deprecated: Any,
) -> FitResult:
    """Train ``net`` from ``params`` with minibatch ``optimizer`` steps; nothing is modified in place.

    train, val: ``(x, y)`` pairs. Each epoch visits the training set once in an order drawn from
    ``seed`` and the epoch number, so a run is reproducible and a resumed run continues it exactly.
    A last minibatch of one example is merged into the one before. After each epoch it measures train
    accuracy (on ``num_train_samples`` examples) and validation accuracy and keeps the best params.

    Progress goes through ``log`` (None: silent): within an epoch a tqdm bar (loss, images/s) when
    stdout is a terminal and tqdm is installed, else a line at most every 10 s; after each epoch a line
    (loss, accuracies, images/s, time left).

    ``checkpoint`` (a path, or a :class:`Checkpoint` to resume or add settings) is saved after every
    epoch with everything needed to resume; a checkpoint whose configuration differs is refused
    unless allowed, and so is one holding NaN or infinite values. A non-finite loss, or an update that
    leaves params (or optimizer or network state) non-finite, stops training with a ValueError, the
    last finite checkpoint kept. Ctrl-C raises :class:`TrainingInterrupted` (a KeyboardInterrupt)
    naming the last completed epoch.

    ``callbacks`` are called in order after every epoch (after its checkpoint and line) with an
    :class:`EpochEnd`; when one returns ``"stop"`` (all of them are called first), training ends after
    that epoch and ``stopped_by`` names it. What a callback raises propagates. :func:`early_stopping`
    is one. Returns a :class:`FitResult`: ``params`` and ``state`` of the last epoch run (to continue
    from), ``best_params`` and ``best_state`` of the epoch with the best validation accuracy (the
    first of equals). Neither it nor its history changes after it is returned.

    A moded network (batch norm, dropout) trains in training mode with a generator drawn from
    ``seed`` and the epoch, and is evaluated in evaluation mode; its ``state`` (default: its initial
    state) is carried from step to step, returned, and saved in checkpoints with the params.
    Speed: ``fit`` calls :func:`funcnn.keep_freed_memory` (glibc keeps freed blocks for reuse, so
    the steps do not page-fault their arrays in again; ``FUNCNN_KEEP_FREED_MEMORY=0`` turns it off).
    """
    saving = _checkpoint_options(checkpoint, deprecated)
    x_train, y_train = _check_pair("train", train)
    x_val, y_val = _check_pair("val", val)
    keep_freed_memory()  # each step's arrays reuse the last step's memory instead of page-faulting anew
    step = _step(net, loss, _l2_term("fit", reg))
    for name, value in (("epochs", epochs), ("batch_size", batch_size)):
        int_at_least("fit", name, value, 1)
    if state is None:
        state = init_state(net, x_train.shape[1:], x_train.dtype)
    config = {"net": layer_name(net), "optimizer": optimizer.name, "optimizer_hyperparams": _hyperparams(optimizer),
              "batch_size": int(batch_size), "seed": int(seed), "reg": float(reg),
              "num_train_samples": int(num_train_samples), "dtype": str(x_train.dtype),
              **(saving.config or {} if saving is not None else {})}
    config = json.loads(json.dumps(config))  # as it reads back: tuples become lists
    result = FitResult(params, params, optimizer.init(params), History(), state, state)
    start_epoch = 0
    if saving is not None and saving.resume and Path(saving.path).exists():
        result, start_epoch = _resume(saving, result, config, optimizer)
        if start_epoch >= epochs:
            raise ValueError(f"fit: checkpoint {saving.path} is already after epoch {start_epoch}; "
                             f"ask for more epochs than {epochs} to continue")
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
            progress = EpochProgress(log, epoch, epochs, len(batches))
            params, opt_state, state, epoch_losses = _train_epoch(
                step, optimizer, result, (x_train, y_train), batches, rng, epoch, progress, diverged)
            bad = _non_finite({"params": params, "state": state, "opt_state": opt_state})
            if bad:  # an update can overflow after a finite loss: never save, nor continue from, such params
                raise diverged(f"after epoch {epoch}, {', '.join(bad[:5])} hold NaN or infinity")
            sample = np.random.default_rng([seed, epoch, 1]).permutation(n)[:num_train_samples]
            train_acc = accuracy(net, params, x_train[sample], y_train[sample], state)
            val_acc = accuracy(net, params, x_val, y_val, state)
            history = result.history.after_epoch(epoch, epoch_losses, train_acc, val_acc, time.perf_counter() - started)
            best = {"best_params": params, "best_state": state} if history.best_epoch == epoch else {}
            result = replace(result, params=params, opt_state=opt_state, state=state, history=history, **best)
            if saving is not None:
                save_checkpoint(saving.path, _checkpoint_tree(epoch, result, config))
            done = epoch
            if log:
                seconds = history.epoch_seconds[-1]
                log(f"{progress.label}  loss {np.mean(epoch_losses):.4f}  train acc {train_acc:.3f}  "
                    f"val acc {val_acc:.3f}  "
                    f"{n / seconds:,.0f} img/s  {seconds:.1f} s  left {_clock(seconds * (epochs - epoch))}")
            stopped_by = _asks_to_stop(callbacks, EpochEnd(epoch, history, params, state))
            if stopped_by is not None:
                if log:
                    log(f"stopped after epoch {epoch} by {stopped_by}")
                return replace(result, stopped_by=stopped_by)
    except (KeyboardInterrupt, SystemError) as error:
        if not is_ctrl_c(error):
            raise
        raise TrainingInterrupted(done) from None
    return result
