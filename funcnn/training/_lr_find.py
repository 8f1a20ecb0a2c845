"""The learning-rate range test (Smith, "Cyclical learning rates for training neural networks", 2017)."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from funcnn._checks import int_at_least, number_at_least
from funcnn.core import LayerFn, State
from funcnn.layers import init_state
from funcnn.losses import Loss, softmax_loss
from funcnn.optim import Optimizer, adam
from funcnn.training._objective import training_step
from funcnn.tree import PyTree, tree_leaves


@dataclass(frozen=True)
class LRFind:
    """The range test's curve: ``lrs[i]`` was used for step ``i``, whose loss was ``losses[i]``
    (``smoothed[i]`` after exponential smoothing). ``suggestion`` is the learning rate a tenth of the one
    where the smoothed loss was lowest; ``steepest`` the one where it fell fastest (per log learning rate).
    ``diverged`` says whether the test stopped early because the smoothed loss rose past
    ``divergence`` times its lowest value (or was not finite)."""

    lrs: tuple[float, ...]
    losses: tuple[float, ...]
    smoothed: tuple[float, ...]
    suggestion: float
    steepest: float
    diverged: bool


def lr_find(
    net: LayerFn,
    params: PyTree,
    x: np.ndarray,
    y: np.ndarray,
    *,
    optimizer: Callable[..., Optimizer] = adam,
    loss: Loss = softmax_loss,
    reg: float = 0.0,
    batch_size: int = 50,
    min_lr: float = 1e-6,
    max_lr: float = 1.0,
    steps: int = 100,
    smoothing: float = 0.9,
    divergence: float = 4.0,
    seed: int = 0,
    state: State | None = None,
) -> LRFind:
    """Smith's learning-rate range test: ``steps`` training steps of ``optimizer(learning_rate=...)`` from
    ``params`` on minibatches of ``(x, y)`` (drawn from ``seed``), the learning rate growing exponentially
    from ``min_lr`` to ``max_lr``; stops early when the smoothed loss passes ``divergence`` times its lowest.
    The caller's ``params`` and ``state`` are not changed (the steps work on their own copies' results), and
    the same arguments give the same curve.

    How the suggestion is chosen, and how it can mislead: the loss is smoothed by an exponential moving
    average (weight ``smoothing`` on the past, bias-corrected as in fastai); ``suggestion`` is a tenth of the
    learning rate at the smoothed loss's minimum (fastai's rule; the minimum itself is already too fast
    to train at), ``steepest`` the learning rate of the steepest fall past the first tenth of the steps
    (Lightning's rule). Both come from one
    noisy run: another seed, batch size or smoothing moves them, often by a factor of 2-3 and sometimes by
    more; a curve with no clear fall (a network that learns little in ``steps`` steps) suggests nothing
    useful. Read the curve (``funcnn.plot.plot_lr_find``), not just the number, and confirm with a short run.

    Args:
        net: a network ``(params, x) -> (scores, vjp)``, moded or not.
        params: its params (not changed).
        x: training examples.
        y: their labels.
        optimizer: a factory ``optimizer(learning_rate=...)`` such as :func:`funcnn.optim.adam`.
        loss: ``loss(scores, y) -> (value, vjp)``.
        reg: the L2 strength on weights.
        batch_size: the minibatch size.
        min_lr: the first learning rate.
        max_lr: the last learning rate.
        steps: how many training steps.
        smoothing: the exponential moving average's factor for the loss.
        divergence: stop when the smoothed loss passes this many times its lowest.
        seed: draws the minibatches.
        state: the network's state (default: its initial state).

    Returns:
        An :class:`LRFind`: the curve, ``suggestion`` and ``steepest``.
    """
    name = "lr_find"
    min_lr = number_at_least(name, "min_lr", min_lr, 0, strict=True)
    max_lr = number_at_least(name, "max_lr", max_lr, min_lr, strict=True)
    steps = int_at_least(name, "steps", steps, 2)
    batch_size = int_at_least(name, "batch_size", batch_size, 1)
    smoothing = number_at_least(name, "smoothing", smoothing, 0)
    if not smoothing < 1:
        raise ValueError(f"{name}: smoothing must be in [0, 1), got {smoothing!r}")
    divergence = number_at_least(name, "divergence", divergence, 1, strict=True)
    if len(x) != len(y) or len(x) == 0:
        raise ValueError(f"{name}: x and y must hold the same number (>= 1) of examples, got {len(x)} and {len(y)}")
    ratio = (max_lr / min_lr) ** (1 / (steps - 1))
    opt = optimizer(learning_rate=lambda step: min_lr * ratio**step)
    step = training_step(net, loss, reg, owner=name)
    rng = np.random.default_rng(seed)
    state = init_state(net, x.shape[1:], x.dtype) if state is None else state
    opt_state = opt.init(params)
    lrs: list[float] = []
    losses: list[float] = []
    smoothed: list[float] = []
    average, diverged = 0.0, False
    for i in range(steps):
        batch = rng.choice(len(x), size=min(batch_size, len(x)), replace=False)
        value, grads, state = step(params, x[batch], y[batch], state, rng)
        lrs.append(min_lr * ratio**i)
        losses.append(float(value))
        average = smoothing * average + (1 - smoothing) * float(value)
        smoothed.append(average / (1 - smoothing ** (i + 1)))
        if not math.isfinite(smoothed[-1]) or smoothed[-1] > divergence * min(smoothed):
            diverged = True
            break
        with np.errstate(over="ignore", invalid="ignore"):  # the steps past divergence may overflow
            params, opt_state = opt.update(grads, opt_state, params)
        if not all(np.isfinite(leaf).all() for leaf in tree_leaves(params)):
            diverged = True
            break
    finite = [(s, lr) for s, lr in zip(smoothed, lrs) if math.isfinite(s)]
    best = min(finite)[1] if finite else min_lr
    # the steepest fall, past the first tenth of the steps (where the average has seen few losses: Lightning
    # skips its first 10 points too)
    skip = min(len(lrs) - 2, steps // 10) if len(lrs) > 2 else 0
    slopes = np.diff(smoothed[skip:]) / np.diff(np.log(lrs[skip:])) if len(lrs) > skip + 1 else np.zeros(0)
    steepest = lrs[skip + int(np.nanargmin(slopes))] if np.isfinite(slopes).any() else min_lr
    return LRFind(tuple(lrs), tuple(losses), tuple(smoothed), best / 10, steepest, diverged)
