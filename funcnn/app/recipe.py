"""The course's training recipe, shared by ``funcnn train``, every sweep trial, ``doctor`` and ``lr-find``: the
network from the options, the optimizer and augmentation they name, and the one ``fit`` call they configure."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from funcnn.augment import Augment, crop_and_flip
from funcnn.core import Layer, LayerFn, Shape
from funcnn.data import Split
from funcnn.layers import init_params
from funcnn.losses import Loss, softmax_loss
from funcnn.optim import OPTIMIZERS, LearningRate, Optimizer, step_decay, with_clipping
from funcnn.training import Callback, Checkpoint, FitResult, accuracy, batch_starts, early_stopping, fit
from funcnn.tree import PyTree

Log = Callable[[str], None] | None


def course_net(options: dict[str, Any]) -> tuple[Layer, Shape]:
    """The convnet that ``funcnn train`` builds from these options, and one example's shape."""
    from funcnn.app.datasets import INPUT_SHAPES, NUM_CLASSES
    from funcnn.nets import three_layer_convnet

    sizes = options["filters"], options["filter_size"], options["hidden"], NUM_CLASSES[options["dataset"]]
    net = three_layer_convnet(*sizes, options["batch_norm"], options["dropout"])
    return net, INPUT_SHAPES[options["dataset"]]


def net_and_params(options: Any, data: Split) -> tuple[Layer, PyTree]:
    """The course's convnet with the data set's number of classes (not the labels seen: a file holding
    only some classes keeps the others) and its initial params, as the options say."""
    net, _ = course_net(vars(options))
    rng = np.random.default_rng(options.seed)
    _, params = init_params(net, rng, data.train.x.shape[1:], options.dtype, options.weight_scale)
    return net, params


def optimizer_named(options: Any, learning_rate: LearningRate) -> Optimizer:
    """``--optimizer`` at ``learning_rate`` (a number or a schedule), adamw with ``--weight-decay``, the gradients
    clipped to a global norm of ``--clip`` when it is given."""
    extra = {"weight_decay": options.weight_decay} if options.optimizer == "adamw" else {}
    optimizer = OPTIMIZERS[options.optimizer](learning_rate=learning_rate, **extra)
    return optimizer if options.clip is None else with_clipping(optimizer, options.clip)


def optimizer_for(options: Any, steps_per_epoch: int) -> Optimizer:
    """:func:`optimizer_named` at ``--lr``, decayed by ``--lr-decay`` after each epoch of ``steps_per_epoch``."""
    return optimizer_named(options, step_decay(options.lr, options.lr_decay, steps_per_epoch))


def augment_for(options: Any) -> Augment | None:
    """``--augment``: random shifts of up to 4 pixels each way on CIFAR-10 (with mirror images) and of 1 pixel on
    the digit data sets (without: a mirrored digit is another shape, not the same digit)."""
    if not options.augment:
        return None
    pad = 4 if options.dataset == "cifar10" else 1
    flip = options.dataset == "cifar10"

    def crop(rng: Any, x: Any) -> Any:
        return crop_and_flip(rng, x, pad=pad, flip=flip)

    crop.__name__ = f"crop_and_flip(pad={pad}, flip={flip})"
    return crop


def fit_job(
    options: Any,
    net: LayerFn,
    params: PyTree,
    train: tuple[np.ndarray, np.ndarray],
    val: tuple[np.ndarray, np.ndarray],
    optimizer: Optimizer,
    *,
    checkpoint: Checkpoint,
    callbacks: Sequence[Callback] = (),
    log: Log = None,
    loss: Loss = softmax_loss,
    augment: Augment | None = None,
    unit: str = "img",
) -> FitResult:
    """:func:`funcnn.fit` with the options' epochs, batch size, reg and seed, ``callbacks`` then early stopping
    after ``--patience`` (when given); ``unit`` names an example in the rates."""
    stopping = [early_stopping(options.patience)] if options.patience else []
    return fit(
        net, params, train, val, optimizer, epochs=options.epochs, batch_size=options.batch_size, loss=loss,
        reg=options.reg, seed=options.seed, checkpoint=checkpoint, callbacks=[*callbacks, *stopping], log=log,
        augment=augment, unit=unit,
    )  # fmt: skip


@dataclass(frozen=True)
class CourseRun:
    """A trained course convnet: the network, what :func:`funcnn.fit` returned, the best epoch's test accuracy."""

    net: Layer
    result: FitResult
    test_acc: float


def train_course(
    options: Any, data: Split, checkpoint: Checkpoint, callbacks: Sequence[Callback] = (), log: Log = None
) -> CourseRun:
    """The course's recipe on ``data``: the convnet and params of the options, their optimizer and augmentation,
    :func:`fit_job`, then the test accuracy of the best epoch's params."""
    net, params = net_and_params(options, data)
    optimizer = optimizer_for(options, len(batch_starts(len(data.train), options.batch_size)))
    train, val = (data.train.x, data.train.y), (data.val.x, data.val.y)
    result = fit_job(
        options, net, params, train, val, optimizer, checkpoint=checkpoint, callbacks=callbacks, log=log,
        augment=augment_for(options),
    )  # fmt: skip
    return CourseRun(net, result, accuracy(net, result.best_params, data.test.x, data.test.y, result.best_state))
