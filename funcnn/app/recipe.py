"""What `funcnn train` and every sweep trial build from the same options: the optimizer and the augmentation."""

from __future__ import annotations

from typing import Any

from funcnn.augment import Augment, crop_and_flip
from funcnn.optim import OPTIMIZERS, LearningRate, Optimizer, step_decay, with_clipping


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
