"""What `funcnn train` and every sweep trial build from the same options: the optimizer and the augmentation."""

from __future__ import annotations

from typing import Any

from funcnn.augment import Augment, crop_and_flip
from funcnn.optim import OPTIMIZERS, Optimizer, step_decay, with_clipping


def optimizer_for(options: Any, steps_per_epoch: int) -> Optimizer:
    """``--optimizer`` at ``--lr``, decayed by ``--lr-decay`` after each epoch; adamw with ``--weight-decay``;
    the gradients clipped to a global norm of ``--clip`` when it is given."""
    schedule = step_decay(options.lr, options.lr_decay, steps_per_epoch)
    extra = {"weight_decay": options.weight_decay} if options.optimizer == "adamw" else {}
    optimizer = OPTIMIZERS[options.optimizer](learning_rate=schedule, **extra)
    return optimizer if options.clip is None else with_clipping(optimizer, options.clip)


def augment_for(options: Any) -> Augment | None:
    """``--augment``: random crops of an eighth of the image size each way, and mirror images on CIFAR-10 only
    (a mirrored digit is another shape, not the same digit)."""
    if not options.augment:
        return None
    pad = 4 if options.dataset == "cifar10" else 1
    flip = options.dataset == "cifar10"

    def crop(rng: Any, x: Any) -> Any:
        return crop_and_flip(rng, x, pad=pad, flip=flip)

    crop.__name__ = f"crop_and_flip(pad={pad}, flip={flip})"
    return crop
