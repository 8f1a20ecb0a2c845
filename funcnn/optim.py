"""Pure optimizers over pytrees of parameters.

In the style of ``jax.example_libraries.optimizers``, with the names, default hyperparameters
and update formulas of the cs231n course's ``optim.py``. Each optimizer is an
:class:`Optimizer` with two pure functions::

    opt = adam(learning_rate=1e-3)
    state = opt.init(params)
    params, state = opt.update(grads, state, params)

Nothing is modified in place: ``update`` returns new params and a new state. The state is a
plain dict, ``{"t": <updates done so far, an int>, <slot name>: <tree shaped like params>, ...}``
(e.g. ``{"t": 3, "m": ..., "v": ...}`` for adam), so it can be saved to .npz by key path.

Each update rule is written once, for one array, and lifted to trees in one place, ``_optimizer``.
``learning_rate`` is a positive float or a schedule: a callable ``step -> lr`` where ``step`` is
the number of updates done so far (0 for the first update).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import numpy as np

from funcnn._checks import fraction, int_at_least, number_at_least, whole_number
from funcnn.tree import (
    PyTree,
    keystr,
    tree_flatten,
    tree_leaves,
    tree_leaves_with_path,
    tree_map,
    tree_structure,
    tree_unflatten,
)

__all__ = [
    "OPTIMIZERS",
    "OptState",
    "Optimizer",
    "Schedule",
    "adam",
    "adamw",
    "constant",
    "cosine_decay",
    "exponential_decay",
    "restore_state",
    "rmsprop",
    "sgd",
    "one_cycle",
    "sgd_momentum",
    "step_decay",
    "warmup_cosine",
    "with_clipping",
]

Schedule = Callable[[int], float]
LearningRate = float | Schedule
OptState = dict[str, Any]


@dataclass(frozen=True)
class Optimizer:
    """A pure optimizer: ``init(params) -> state`` and
    ``update(grads, state, params) -> (new_params, new_state)``."""

    name: str
    init: Callable[[PyTree], OptState]
    update: Callable[[PyTree, OptState, PyTree], tuple[PyTree, OptState]]
    hyperparams: Mapping[str, Any] = field(default_factory=dict, compare=False, hash=False)


# ----------------------------------------------------------------------------------------------
# Learning-rate schedules


def constant(lr: float) -> Schedule:
    """The schedule that returns ``lr`` at every step.

    Args:
        lr: the learning rate, ``> 0``.

    Returns:
        A schedule ``step -> learning rate`` (an int step ``>= 0``).
    """
    lr = number_at_least("constant", "lr", lr, 0, strict=True)

    def schedule(step: int) -> float:
        int_at_least("constant", "step", step, 0)
        return lr

    return schedule


def step_decay(lr: float, decay_rate: float, decay_steps: int) -> Schedule:
    """``lr * decay_rate ** (step // decay_steps)``: cs231n's per-epoch ``lr_decay`` when
    ``decay_steps`` is the number of steps per epoch.

    Args:
        lr: the first learning rate.
        decay_rate: the factor applied every ``decay_steps``.
        decay_steps: steps between decays, ``>= 1``.

    Returns:
        A schedule ``step -> learning rate`` (an int step ``>= 0``).
    """
    lr = number_at_least("step_decay", "lr", lr, 0, strict=True)
    decay_rate = number_at_least("step_decay", "decay_rate", decay_rate, 0, strict=True)
    decay_steps = int_at_least("step_decay", "decay_steps", decay_steps, 1)

    def schedule(step: int) -> float:
        step = int_at_least("step_decay", "step", step, 0)
        return lr * decay_rate ** (step // decay_steps)

    return schedule


def exponential_decay(lr: float, decay_rate: float, decay_steps: int) -> Schedule:
    """``lr * decay_rate ** (step / decay_steps)``: a smooth version of :func:`step_decay`.

    Args:
        lr: the first learning rate.
        decay_rate: the factor over ``decay_steps``.
        decay_steps: the steps one factor takes, ``>= 1``.

    Returns:
        A schedule ``step -> learning rate`` (an int step ``>= 0``).
    """
    lr = number_at_least("exponential_decay", "lr", lr, 0, strict=True)
    decay_rate = number_at_least("exponential_decay", "decay_rate", decay_rate, 0, strict=True)
    decay_steps = int_at_least("exponential_decay", "decay_steps", decay_steps, 1)

    def schedule(step: int) -> float:
        step = int_at_least("exponential_decay", "step", step, 0)
        return float(lr * decay_rate ** (step / decay_steps))

    return schedule


def cosine_decay(lr: float, total_steps: int, end: float = 0.0) -> Schedule:
    """``end + (lr - end) * (1 + cos(pi * step / total_steps)) / 2`` up to ``total_steps``, then ``end``:
    from ``lr`` at step 0 down to ``end`` (Loshchilov and Hutter's SGDR without restarts).

    Args:
        lr: the first learning rate.
        total_steps: the step it reaches ``end`` at.
        end: the last learning rate.

    Returns:
        A schedule ``step -> learning rate`` (an int step ``>= 0``).
    """
    lr = number_at_least("cosine_decay", "lr", lr, 0, strict=True)
    total_steps = int_at_least("cosine_decay", "total_steps", total_steps, 1)
    end = number_at_least("cosine_decay", "end", end, 0)

    def schedule(step: int) -> float:
        step = int_at_least("cosine_decay", "step", step, 0)
        return end + (lr - end) * (1 + math.cos(math.pi * min(step, total_steps) / total_steps)) / 2

    return schedule


def warmup_cosine(peak: float, warmup_steps: int, total_steps: int, end: float = 0.0) -> Schedule:
    """A linear warm-up, ``peak * (step + 1) / warmup_steps`` for ``step < warmup_steps`` (the first step
    is not 0; the last warm-up step reaches ``peak``), then a cosine from ``peak`` at ``warmup_steps``
    down to ``end`` at ``total_steps`` and after. ``warmup_steps=0`` is :func:`cosine_decay`.

    Args:
        peak: the learning rate at the end of the warm-up.
        warmup_steps: steps of the linear rise from 0.
        total_steps: the step it reaches ``end`` at.
        end: the last learning rate.

    Returns:
        A schedule ``step -> learning rate`` (an int step ``>= 0``).
    """
    peak = number_at_least("warmup_cosine", "peak", peak, 0, strict=True)
    warmup_steps = int_at_least("warmup_cosine", "warmup_steps", warmup_steps, 0)
    total_steps = int_at_least("warmup_cosine", "total_steps", total_steps, warmup_steps + 1)
    end = number_at_least("warmup_cosine", "end", end, 0)

    def schedule(step: int) -> float:
        step = int_at_least("warmup_cosine", "step", step, 0)
        if step < warmup_steps:
            return peak * (step + 1) / warmup_steps
        done = min(step - warmup_steps, total_steps - warmup_steps) / (total_steps - warmup_steps)
        return end + (peak - end) * (1 + math.cos(math.pi * done)) / 2

    return schedule


def one_cycle(peak: float, total_steps: int, warmup_fraction: float = 0.3, div: float = 25.0) -> Schedule:
    """Smith's one-cycle policy (PyTorch's ``OneCycleLR`` with cosine annealing): a cosine up from
    ``peak / div`` to ``peak`` over the first ``warmup_fraction`` of ``total_steps``, then a cosine down
    to ``peak / (div * 1e4)`` at ``total_steps`` and after.

    Args:
        peak: the highest learning rate.
        total_steps: the length of the cycle.
        warmup_fraction: the share of the cycle spent rising.
        div: the first learning rate is ``peak / div``.

    Returns:
        A schedule ``step -> learning rate`` (an int step ``>= 0``).
    """
    peak = number_at_least("one_cycle", "peak", peak, 0, strict=True)
    total_steps = int_at_least("one_cycle", "total_steps", total_steps, 2)
    warmup_fraction = number_at_least("one_cycle", "warmup_fraction", warmup_fraction, 0, strict=True)
    if not warmup_fraction < 1:
        raise ValueError(f"one_cycle: warmup_fraction must be in (0, 1), got {warmup_fraction!r}")
    div = number_at_least("one_cycle", "div", div, 1)
    start, final = peak / div, peak / (div * 1e4)
    up = max(1, round(warmup_fraction * total_steps))

    def anneal(a: float, b: float, done: float) -> float:
        return b + (a - b) * (1 + math.cos(math.pi * done)) / 2

    def schedule(step: int) -> float:
        step = int_at_least("one_cycle", "step", step, 0)
        if step < up:
            return anneal(start, peak, step / up)
        return anneal(peak, final, min(step - up, total_steps - up) / max(1, total_steps - up))

    return schedule


def _make_schedule(owner: str, learning_rate: LearningRate) -> Schedule:
    if callable(learning_rate):
        return learning_rate
    number_at_least(owner, "learning_rate", learning_rate, 0, strict=True)
    return constant(float(learning_rate))


# ----------------------------------------------------------------------------------------------
# Lifting a rule for one array to trees


@dataclass(frozen=True)
class _LeafRule:
    """An update rule for one array: ``update(lr, t, g, x, *slots) -> (new_x, *new_slots)``,
    where ``t`` counts updates including this one (1 for the first) and each slot starts as
    zeros shaped like ``x``."""

    slots: tuple[str, ...]
    schedule: Schedule
    update: Callable[..., tuple[np.ndarray, ...]]


def _is_float(dtype: np.dtype) -> bool:
    return np.issubdtype(dtype, np.floating)


def _check_like_params(owner: str, what: str, params: PyTree, tree: PyTree) -> list[np.ndarray]:
    """The leaves of ``tree`` (grads or a state slot) after checking they match ``params``."""
    params_paths = [path for path, _ in tree_leaves_with_path(params)]
    tree_items = tree_leaves_with_path(tree)
    tree_paths = [path for path, _ in tree_items]
    if tree_structure(tree) != tree_structure(params):
        params_set, tree_set = set(params_paths), set(tree_paths)
        missing = [keystr(p, "params") for p in params_paths if p not in tree_set]
        extra = [keystr(p, what) for p in tree_paths if p not in params_set]
        detail = ""
        if missing:
            detail += f"\n  {what} lacks {', '.join(missing)}"
        if extra:
            detail += f"\n  {what} has extra {', '.join(extra)}"
        raise ValueError(
            f"{owner}: {what} and params differ in structure:{detail}"
            f"\n  params: {tree_structure(params)!r}\n  {what}: {tree_structure(tree)!r}"
        )
    leaves = []
    for (path, x), (_, g) in zip(tree_leaves_with_path(params), tree_items):
        g = np.asarray(g)
        if not _is_float(g.dtype):
            raise TypeError(f"{owner}: {keystr(path, what)} must be a float array, got dtype {g.dtype}")
        if g.shape != x.shape:
            raise ValueError(
                f"{owner}: {keystr(path, what)} has shape {g.shape} but {keystr(path, 'params')} has shape {x.shape}"
            )
        leaves.append(g)
    return leaves


def _check_params(owner: str, params: PyTree) -> None:
    for path, x in tree_leaves_with_path(params):
        if not isinstance(x, np.ndarray) or not _is_float(x.dtype):
            got = f"dtype {x.dtype}" if isinstance(x, np.ndarray) else type(x).__name__
            raise TypeError(f"{owner}: {keystr(path, 'params')} must be a NumPy float array, got {got}")


def _check_state(owner: str, rule: _LeafRule, state: Any) -> int:
    expected = {"t", *rule.slots}
    if not isinstance(state, dict) or set(state) != expected:
        got = sorted(state) if isinstance(state, dict) else type(state).__name__
        raise ValueError(f"{owner}: state must be a dict with keys {sorted(expected)}, got {got}")
    t = state["t"]
    if isinstance(t, np.ndarray) and t.shape == ():  # as loaded back from .npz
        t = t.item()
    if isinstance(t, bool) or not isinstance(t, (int, np.integer)) or t < 0:
        raise ValueError(f"{owner}: state['t'] must be an int >= 0, got {t!r}")
    return int(t)


def _optimizer(name: str, rule: _LeafRule, hyperparams: dict[str, Any]) -> Optimizer:
    """Lift a one-array :class:`_LeafRule` to an :class:`Optimizer` over trees: the one place
    where rules meet trees, checks and the learning-rate schedule."""

    def init(params: PyTree) -> OptState:
        _check_params(name, params)
        leaves, treedef = tree_flatten(params)
        state: OptState = {"t": 0}
        for slot in rule.slots:
            state[slot] = tree_unflatten(treedef, [np.zeros_like(x) for x in leaves])
        return state

    def update(grads: PyTree, state: OptState, params: PyTree) -> tuple[PyTree, OptState]:
        _check_params(name, params)
        t = _check_state(name, rule, state)
        g_leaves = _check_like_params(name, "grads", params, grads)
        slot_leaves = [_check_like_params(name, f"state['{s}']", params, state[s]) for s in rule.slots]
        lr = rule.schedule(t)
        if isinstance(lr, bool) or not isinstance(lr, (int, float, np.integer, np.floating)):
            raise TypeError(f"{name}: learning_rate schedule returned {lr!r} at step {t}, not a number")
        lr = float(lr)
        if not (lr >= 0 and math.isfinite(lr)):  # 0 is where cosine schedules end
            raise ValueError(f"{name}: learning_rate schedule returned {lr!r} at step {t}; it must be >= 0")
        x_leaves, treedef = tree_flatten(params)
        new_x: list[np.ndarray] = []
        new_slots: list[list[np.ndarray]] = [[] for _ in rule.slots]
        for x, g, *slots in zip(x_leaves, g_leaves, *slot_leaves):
            x_out, *slots_out = rule.update(lr, t + 1, g, x, *slots)
            new_x.append(np.asarray(x_out).astype(x.dtype, copy=False))
            for acc, s in zip(new_slots, slots_out):
                acc.append(np.asarray(s).astype(x.dtype, copy=False))
        new_state: OptState = {"t": t + 1}
        for slot, leaves in zip(rule.slots, new_slots):
            new_state[slot] = tree_unflatten(treedef, leaves)
        return tree_unflatten(treedef, new_x), new_state

    return Optimizer(name=name, init=init, update=update, hyperparams=MappingProxyType(dict(hyperparams)))


def restore_state(optimizer: Optimizer, saved: PyTree, params: PyTree) -> OptState:
    """An optimizer state read back from a file (every number a 0-d array, dtypes as stored) in the
    form ``optimizer.update`` takes, checked against ``optimizer.init(params)``: the same tree, each
    array of the same shape (cast to the fresh state's dtype), each count (an int in a fresh state,
    such as adam's ``t``) a whole number >= 0. Works for any :class:`Optimizer`; what the state holds
    stays the optimizer's business. ValueError naming the first entry that differs.

    Args:
        optimizer: the optimizer the state belongs to.
        saved: the state as read from a file.
        params: the params it updates, for ``optimizer.init``.

    Returns:
        The state, ready for ``optimizer.update``.
    """
    fresh = optimizer.init(params)
    if tree_structure(saved) != tree_structure(fresh):
        raise ValueError(
            f"{optimizer.name}: the saved state has structure {tree_structure(saved)!r}, "
            f"expected {tree_structure(fresh)!r}"
        )
    leaves: list[Any] = []
    for (path, new), (_, old) in zip(tree_leaves_with_path(fresh), tree_leaves_with_path(saved)):
        where = keystr(path, "state")
        if isinstance(new, (int, np.integer)):
            leaves.append(whole_number(optimizer.name, where, old))
            continue
        new, old = np.asarray(new), np.asarray(old)
        if old.shape != new.shape or old.dtype.kind not in "biuf":
            raise ValueError(
                f"{optimizer.name}: {where} must be numbers of shape {new.shape}, got {old.dtype} of shape {old.shape}"
            )
        leaves.append(old.astype(new.dtype, copy=False))
    restored: OptState = tree_unflatten(tree_structure(fresh), leaves)
    return restored


# ----------------------------------------------------------------------------------------------
# The rules, each written once for one array (as a fused kernel in funcnn.kernels.updates)


def _kernels() -> Any:
    """funcnn.kernels.updates, the fused update kernels: Numba is imported on the first update."""
    from funcnn.kernels import updates

    return updates


def _contiguous(w: np.ndarray, *others: np.ndarray) -> list[np.ndarray]:
    """``w`` and the arrays shaped like it, C-contiguous in ``w``'s dtype, for the kernels."""
    return [np.asarray(a, dtype=w.dtype, order="C") for a in (w, *others)]


def sgd(learning_rate: LearningRate = 1e-2) -> Optimizer:
    """Vanilla stochastic gradient descent: ``w -= lr * dw``. State: ``{"t"}``.

    Args:
        learning_rate: a number or a schedule.

    Returns:
        An :class:`Optimizer`: ``w -= learning_rate * dw``.
    """

    def update(lr: float, t: int, dw: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, ...]:
        return (w - lr * dw,)

    rule = _LeafRule((), _make_schedule("sgd", learning_rate), update)
    return _optimizer("sgd", rule, {"learning_rate": learning_rate})


def sgd_momentum(learning_rate: LearningRate = 1e-2, momentum: float = 0.9) -> Optimizer:
    """SGD with momentum: ``v = momentum * v - lr * dw; w += v``. State: ``{"t", "velocity"}``.

    Args:
        learning_rate: a number or a schedule.
        momentum: the share of the velocity kept each step.

    Returns:
        An :class:`Optimizer` with the course's momentum update.
    """
    schedule = _make_schedule("sgd_momentum", learning_rate)
    mu = fraction("sgd_momentum", "momentum", momentum)

    def update(lr: float, t: int, dw: np.ndarray, w: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, ...]:
        steps: tuple[np.ndarray, ...] = _kernels().momentum_step(*_contiguous(w, dw, v), lr, mu)
        return steps

    rule = _LeafRule(("velocity",), schedule, update)
    return _optimizer("sgd_momentum", rule, {"learning_rate": learning_rate, "momentum": momentum})


def rmsprop(learning_rate: LearningRate = 1e-2, decay_rate: float = 0.99, epsilon: float = 1e-8) -> Optimizer:
    """RMSProp: ``cache = d * cache + (1 - d) * dw**2; w -= lr * dw / (sqrt(cache) + eps)``.
    State: ``{"t", "cache"}``.

    Args:
        learning_rate: a number or a schedule.
        decay_rate: the moving average's factor for the squared gradients.
        epsilon: added to the root of the average.

    Returns:
        An :class:`Optimizer` with the course's RMSProp update.
    """
    schedule = _make_schedule("rmsprop", learning_rate)
    d = fraction("rmsprop", "decay_rate", decay_rate)
    eps = number_at_least("rmsprop", "epsilon", epsilon, 0, strict=True)

    def update(lr: float, t: int, dw: np.ndarray, w: np.ndarray, cache: np.ndarray) -> tuple[np.ndarray, ...]:
        steps: tuple[np.ndarray, ...] = _kernels().rmsprop_step(*_contiguous(w, dw, cache), lr, d, eps)
        return steps

    rule = _LeafRule(("cache",), schedule, update)
    hyperparams = {"learning_rate": learning_rate, "decay_rate": decay_rate, "epsilon": epsilon}
    return _optimizer("rmsprop", rule, hyperparams)


def adam(
    learning_rate: LearningRate = 1e-3, beta1: float = 0.9, beta2: float = 0.999, epsilon: float = 1e-8
) -> Optimizer:
    """Adam with bias correction, as in cs231n: ``t += 1; m = b1*m + (1-b1)*dw;
    v = b2*v + (1-b2)*dw**2; w -= lr * m_hat / (sqrt(v_hat) + eps)`` with
    ``m_hat = m / (1-b1**t)``, ``v_hat = v / (1-b2**t)``. State: ``{"t", "m", "v"}``.

    Args:
        learning_rate: a number or a schedule.
        beta1: the first moment's factor.
        beta2: the second moment's factor.
        epsilon: added to the root of the second moment.

    Returns:
        An :class:`Optimizer` with the course's Adam update (bias-corrected).
    """
    schedule = _make_schedule("adam", learning_rate)
    b1 = fraction("adam", "beta1", beta1)
    b2 = fraction("adam", "beta2", beta2)
    eps = number_at_least("adam", "epsilon", epsilon, 0, strict=True)

    def update(
        lr: float, t: int, dw: np.ndarray, w: np.ndarray, m: np.ndarray, v: np.ndarray
    ) -> tuple[np.ndarray, ...]:
        steps: tuple[np.ndarray, ...] = _kernels().adam_step(*_contiguous(w, dw, m, v), lr, b1, b2, eps, t)
        return steps

    rule = _LeafRule(("m", "v"), schedule, update)
    hyperparams = {"learning_rate": learning_rate, "beta1": beta1, "beta2": beta2, "epsilon": epsilon}
    return _optimizer("adam", rule, hyperparams)


def adamw(
    learning_rate: LearningRate = 1e-3,
    beta1: float = 0.9,
    beta2: float = 0.999,
    epsilon: float = 1e-8,
    weight_decay: float = 1e-2,
    mask: PyTree | Callable[[str], bool] | None = None,
) -> Optimizer:
    """Adam with decoupled weight decay (Loshchilov and Hutter; PyTorch's ``AdamW``): Adam's step, and
    ``w -= lr * weight_decay * w`` beside it, on the leaves ``mask`` selects. State: adam's.

    ``mask`` None decays the leaves with two or more dimensions (the weights of products), never biases
    or norm scales; a pytree of booleans shaped like params picks leaves by position; a function gets
    each leaf's path (``'params[0]["w"]'``) and returns whether to decay it. With ``weight_decay=0``
    the update is adam's, bit for bit.

    Args:
        learning_rate: a number or a schedule.
        beta1: as in :func:`adam`.
        beta2: as in :func:`adam`.
        epsilon: as in :func:`adam`.
        weight_decay: the decoupled decay, ``w -= learning_rate * weight_decay * w``.
        mask: which leaves decay: a tree of booleans like params, a function of the leaf's path, or None (leaves of 2
            or more dimensions).

    Returns:
        An :class:`Optimizer`; with ``weight_decay=0`` it equals :func:`adam`.
    """
    inner = adam(learning_rate, beta1, beta2, epsilon)
    schedule = _make_schedule("adamw", learning_rate)
    decay = number_at_least("adamw", "weight_decay", weight_decay, 0)
    if not (mask is None or callable(mask) or tree_leaves(mask)):
        raise TypeError(f"adamw: mask must be None, a tree of booleans or a function of a leaf's path, got {mask!r}")

    def decayed(params: PyTree) -> list[bool]:
        paths = [(keystr(path, "params"), leaf) for path, leaf in tree_leaves_with_path(params)]
        if mask is None:
            return [np.ndim(leaf) >= 2 for _, leaf in paths]
        if callable(mask):
            return [bool(mask(path)) for path, _ in paths]
        if tree_structure(mask) != tree_structure(params):
            raise ValueError(
                f"adamw: mask and params differ in structure:\n  params: {tree_structure(params)!r}"
                f"\n  mask: {tree_structure(mask)!r}"
            )
        return [bool(m) for m in tree_leaves(mask)]

    def update(grads: PyTree, state: OptState, params: PyTree) -> tuple[PyTree, OptState]:
        new_params, new_state = inner.update(grads, state, params)
        if decay == 0:
            return new_params, new_state
        lr = float(schedule(int(new_state["t"]) - 1))
        new_leaves, treedef = tree_flatten(new_params)
        old_leaves = tree_leaves(params)
        for i, selected in enumerate(decayed(params)):
            if selected:
                w = old_leaves[i]
                new_leaves[i] = (new_leaves[i] - lr * decay * w).astype(w.dtype, copy=False)
        return tree_unflatten(treedef, new_leaves), new_state

    masked = None if mask is None else getattr(mask, "__name__", "tree")
    hyperparams = {**inner.hyperparams, "weight_decay": weight_decay, "mask": masked}
    return Optimizer(name="adamw", init=inner.init, update=update, hyperparams=MappingProxyType(hyperparams))


def global_norm(tree: PyTree) -> float:
    """The Euclidean norm of all the float leaves of ``tree`` together, ``sqrt(sum of squares)``, in float64
    (scaled by the largest magnitude first, so that it neither overflows nor underflows). NaN or infinity
    in a leaf gives NaN or infinity.

    Args:
        tree: a tree of arrays.

    Returns:
        The square root of the sum of the squares of all its elements.
    """
    leaves = [np.asarray(leaf, dtype=np.float64) for leaf in tree_leaves(tree) if np.asarray(leaf).dtype.kind == "f"]
    if not leaves:
        return 0.0
    largest = max(float(np.max(np.abs(leaf), initial=0.0)) for leaf in leaves)
    if largest == 0 or not math.isfinite(largest):
        return largest
    return largest * math.sqrt(sum(float(np.sum((leaf / largest) ** 2)) for leaf in leaves))


def with_clipping(optimizer: Optimizer, max_norm: float) -> Optimizer:
    """``optimizer`` on gradients rescaled to a global norm (:func:`global_norm`) of at most ``max_norm``:
    ``grads * min(1, max_norm / norm)``, the direction kept. A norm of 0 leaves them alone. Non-finite
    gradients are refused with a ValueError naming the leaves (fit then stops, as for a NaN loss), never
    turned into NaN params. Same state as ``optimizer`` (checkpoints save and restore it alike).

    Args:
        optimizer: the optimizer whose update follows.
        max_norm: the largest global norm the gradients keep, ``> 0``.

    Returns:
        An :class:`Optimizer` with ``optimizer``'s state.
    """
    max_norm = number_at_least("with_clipping", "max_norm", max_norm, 0, strict=True)
    name = f"{optimizer.name} (clipped)"

    def update(grads: PyTree, state: OptState, params: PyTree) -> tuple[PyTree, OptState]:
        norm = global_norm(grads)
        if not math.isfinite(norm):
            bad = [keystr(path, "grads") for path, g in tree_leaves_with_path(grads) if not np.isfinite(g).all()]
            raise ValueError(f"{name}: {', '.join(bad[:5])} hold NaN or infinity; nothing updated")
        if norm > max_norm:
            scale = max_norm / norm
            grads = tree_map(lambda g: (np.asarray(g) * scale).astype(np.asarray(g).dtype, copy=False), grads)
        return optimizer.update(grads, state, params)

    hyperparams = {**optimizer.hyperparams, "max_norm": max_norm}
    return Optimizer(name=name, init=optimizer.init, update=update, hyperparams=MappingProxyType(hyperparams))


OPTIMIZERS: dict[str, Callable[..., Optimizer]] = {
    "sgd": sgd,
    "sgd_momentum": sgd_momentum,
    "rmsprop": rmsprop,
    "adam": adam,
    "adamw": adamw,
}
