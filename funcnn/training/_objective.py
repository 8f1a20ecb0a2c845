"""The training objective, written once: a network's loss on a batch, the L2 term on its weights, and
their gradients (:func:`training_step`), the course's ``value_and_grad`` and ``with_l2`` on top of it, and
evaluation (:func:`predict`, :func:`accuracy`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from funcnn._checks import number_at_least
from funcnn.core import Layer, LayerFn, State, run
from funcnn.layers import pull_back_last
from funcnn.losses import Loss, softmax_loss
from funcnn.tree import PyTree, tree_add, tree_leaves_with_path, tree_map_with_path

Objective = Callable[[PyTree, np.ndarray, np.ndarray], tuple[float, PyTree]]
# step(params, x, y, state, rng) -> (loss, grads, new_state): one training-mode evaluation of a network.
Step = Callable[[PyTree, np.ndarray, np.ndarray, State, "np.random.Generator | None"], tuple[float, PyTree, State]]
AddL2 = Callable[[float, PyTree, PyTree], tuple[float, PyTree]]


def _is_weight(path: tuple[Any, ...]) -> bool:
    return bool(path) and path[-1] == "w"


def l2_penalty(params: PyTree, reg: float) -> tuple[float, PyTree]:
    """``0.5 * reg * sum(w ** 2)`` over the leaves named ``"w"`` (weights, not biases), and its
    gradient (``reg * w`` on weights, 0 elsewhere), mirroring ``params``.

    Args:
        params: a params tree.
        reg: the L2 strength.

    Returns:
        ``(penalty, grads)``, ``grads`` mirroring ``params``.
    """
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


def _step(net: LayerFn, loss: Loss, add_l2: AddL2) -> Step:
    """The training step, written once: the forward pass in training mode, the loss, the pull-back to the
    params (``need_dx=False``: nobody needs the data's gradient) and the L2 term."""

    def step(
        params: PyTree, x: np.ndarray, y: np.ndarray, state: State = (), rng: np.random.Generator | None = None
    ) -> tuple[float, PyTree, State]:
        scores, net_vjp, new_state = run(net, params, x, state, train=True, rng=rng)
        value, loss_vjp = loss(scores, y)
        grads, _ = pull_back_last(net_vjp, loss_vjp(1.0), need_dx=False)  # frees activations as it goes
        return *add_l2(float(value), grads, params), new_state

    return step


def training_step(net: LayerFn, loss: Loss = softmax_loss, reg: float = 0.0, *, owner: str = "training_step") -> Step:
    """``step(params, x, y, state=(), rng=None) -> (loss, grads, new_state)``: ``net`` in training mode on
    ``x`` (``(N, ...)``) from ``state``, ``loss`` on labels ``y`` (``(N,)``) plus the L2 term at ``reg``,
    and the gradients of it all, mirroring ``params``. What :func:`funcnn.fit` and :func:`funcnn.doctor`
    run. ``owner`` is the name a bad ``reg`` is reported under (a caller such as fit gives its own).

    Args:
        net: a network ``(params, x) -> (scores, vjp)``, moded or not.
        loss: ``loss(scores, y) -> (value, vjp)``.
        reg: the L2 strength on weights.
        owner: the name errors are reported under.

    Returns:
        ``step(params, x, y, state=(), rng=None) -> (loss, grads, new_state)``.
    """
    return _step(net, loss, _l2_term(owner, reg))


def value_and_grad(net: LayerFn, loss: Loss = softmax_loss) -> Objective:
    """``objective(params, x, y) -> (loss, grads)`` for a network ending in class scores and a loss
    such as :func:`funcnn.softmax_loss`; ``grads`` mirrors ``params``. A moded network (batch norm,
    dropout) needs its state and mode: :func:`funcnn.bind` it first, or train it with :func:`fit`.

    Args:
        net: a plain network (bind a moded one).
        loss: ``loss(scores, y) -> (value, vjp)``.

    Returns:
        ``objective(params, x, y) -> (loss, grads)``.
    """
    if isinstance(net, Layer) and net.moded:
        raise TypeError(
            f"value_and_grad: {net.name} needs a mode and a state; pass fn.bind(net, state, train=True, "
            "rng=...) instead, or train it with fn.fit, which carries its state"
        )
    step = _step(net, loss, _l2_term("value_and_grad", 0.0))

    def objective(params: PyTree, x: np.ndarray, y: np.ndarray) -> tuple[float, PyTree]:
        value, grads, _ = step(params, x, y, (), None)
        return value, grads

    return objective


def with_l2(objective: Objective, reg: float) -> Objective:
    """``objective`` plus :func:`l2_penalty`: the course's ``reg`` on weights only.

    Args:
        objective: ``objective(params, x, y) -> (loss, grads)``.
        reg: the L2 strength on weights.

    Returns:
        The regularized objective, of the same form.
    """
    add_l2 = _l2_term("with_l2", reg)

    def regularized(params: PyTree, x: np.ndarray, y: np.ndarray) -> tuple[float, PyTree]:
        return add_l2(*objective(params, x, y), params)

    return regularized if reg else objective


def _predictions(
    owner: str, net: LayerFn, params: PyTree, x: np.ndarray, state: State, batch_size: int
) -> tuple[np.ndarray, int]:
    """The predicted class of each example of ``x`` (``(N,)``, or ``(N, T)`` for a sequence's scores
    ``(N, T, C)``) and the number of classes of the scores."""
    if len(x) == 0:
        raise ValueError(f"{owner}: x has no examples (shape {np.shape(x)})")
    classes = []
    predicted = []
    for i in range(0, len(x), batch_size):
        scores = run(net, params, x[i : i + batch_size], state, train=False)[0]
        classes.append(scores.shape[-1])
        predicted.append(scores.argmax(axis=-1))
    return np.concatenate(predicted), classes[0]


def predict(net: LayerFn, params: PyTree, x: np.ndarray, state: State = (), batch_size: int = 500) -> np.ndarray:
    """Predicted class of each example, in evaluation mode: ``argmax`` of the scores over their last axis,
    computed in batches; ``(N,)`` for scores ``(N, C)``, ``(N, T)`` for a sequence's scores ``(N, T, C)``.
    ``state`` is the network's (batch norm's running statistics), if it has one. An empty ``x`` is a
    ValueError.

    Args:
        net: a network ``(params, x) -> (scores, vjp)``, moded or not.
        params: its params.
        x: the examples ``(N, ...)``.
        state: its state, if it has one.
        batch_size: how many examples go through at once.

    Returns:
        The predicted classes, ``(N,)`` ints (``(N, T)`` for sequences).
    """
    return _predictions("predict", net, params, x, state, batch_size)[0]


def check_labels(owner: str, y: np.ndarray, classes: int) -> None:
    """Refuse labels ``y`` that are not integers in ``[0, classes)``, naming ``owner``."""
    y = np.asarray(y)
    if y.dtype.kind not in "iu":
        raise ValueError(f"{owner}: labels y must be integers (class indices), got dtype {y.dtype}")
    if y.size and (y.min() < 0 or y.max() >= classes):
        raise ValueError(
            f"{owner}: labels y must be in [0, {classes}) (the scores' classes), got labels from {y.min()} to {y.max()}"
        )


def accuracy(
    net: LayerFn, params: PyTree, x: np.ndarray, y: np.ndarray, state: State = (), batch_size: int = 500
) -> float:
    """Fraction of examples whose predicted class (in evaluation mode) is ``y`` (``(N,)`` ints, each one of
    the scores' classes); for sequences (``y`` ``(N, T)``, scores ``(N, T, C)``), the fraction of steps.
    An empty ``x`` is a ValueError.

    Args:
        net: a network ``(params, x) -> (scores, vjp)``, moded or not.
        params: its params.
        x: the examples ``(N, ...)``.
        y: their labels ``(N,)`` (``(N, T)`` for sequences).
        state: its state, if it has one.
        batch_size: how many examples go through at once.

    Returns:
        The fraction of correct predictions, in ``[0, 1]``.
    """
    predicted, classes = _predictions("accuracy", net, params, x, state, batch_size)
    if np.shape(y) != predicted.shape:
        raise ValueError(
            f"accuracy: labels y must have shape {predicted.shape} to match x of shape {np.shape(x)}, got {np.shape(y)}"
        )
    check_labels("accuracy", y, classes)
    return float(np.mean(predicted == y))
