"""Classification losses ``loss(scores, y) -> (loss, vjp)`` and :func:`loss_layer` to chain them."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from funcnn._checks import check_ndim, cotangent, example_shape, float_array, no_params
from funcnn.core import VJP, Layer, Shape, layer_factory
from funcnn.tree import PyTree

LossVJP = Callable[..., np.ndarray]
Loss = Callable[[np.ndarray, np.ndarray], tuple[np.floating, LossVJP]]


def _check_problem(name: str, scores: Any, y: Any) -> tuple[np.ndarray, np.ndarray]:
    scores = float_array(name, "scores", scores)
    check_ndim(name, "scores", scores, 2, "(N, C)")
    y = np.asarray(y)
    if y.dtype.kind not in "iu":
        raise TypeError(f"{name}: labels y must be an integer array, got dtype {y.dtype}")
    if y.shape != (scores.shape[0],):
        raise ValueError(
            f"{name}: labels y must have shape ({scores.shape[0]},) to match scores {scores.shape}, got {y.shape}"
        )
    if y.size and (y.min() < 0 or y.max() >= scores.shape[1]):
        raise ValueError(
            f"{name}: labels y must be in [0, {scores.shape[1]}) for scores {scores.shape}, "
            f"got min {y.min()}, max {y.max()}"
        )
    if scores.shape[0] == 0:
        raise ValueError(f"{name}: scores must hold at least one example, got shape {scores.shape}")
    return scores, y


def _loss_vjp(name: str, loss: np.floating, dscores_unit: np.ndarray) -> LossVJP:
    """``vjp(dloss=1.0) -> dloss * dscores_unit``, with ``dloss`` checked to be a scalar."""

    def vjp(dloss: Any = 1.0) -> np.ndarray:
        scale = cotangent(name, dloss, np.asarray(loss))
        dscores: np.ndarray = dscores_unit * scale
        return dscores

    return vjp


def softmax_loss(scores: np.ndarray, y: np.ndarray) -> tuple[np.floating, LossVJP]:
    """Mean cross-entropy of softmax(scores) against integer labels.

    scores: ``(N, C)``; y: ``(N,)`` ints in ``[0, C)``. Returns the loss (a scalar of scores' dtype)
    and ``vjp(dloss=1.0) -> dscores`` of shape ``(N, C)``.

    Args:
        scores: class scores ``(N, C)``.
        y: integer labels ``(N,)`` in ``[0, C)``.

    Returns:
        ``(loss, vjp)``: the mean cross-entropy, and ``vjp(dloss=1.0) -> dscores`` of shape ``(N, C)``.

    >>> loss, vjp = fn.softmax_loss(np.array([[0.0, 0.0]]), np.array([1]))
    >>> round(float(loss), 4)                                 # log 2
    0.6931
    >>> vjp()
    array([[ 0.5, -0.5]])
    """
    scores, y = _check_problem("softmax_loss", scores, y)
    n = scores.shape[0]
    shifted = scores - scores.max(axis=1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    loss = scores.dtype.type(-log_probs[np.arange(n), y].mean())
    dscores = np.exp(log_probs)
    dscores[np.arange(n), y] -= 1
    return loss, _loss_vjp("softmax_loss", loss, dscores / n)


def svm_loss(scores: np.ndarray, y: np.ndarray) -> tuple[np.floating, LossVJP]:
    """Multiclass hinge loss with margin 1, summed over classes and averaged over examples.

    scores: ``(N, C)``; y: ``(N,)`` ints in ``[0, C)``. Returns the loss (a scalar of scores' dtype)
    and ``vjp(dloss=1.0) -> dscores`` of shape ``(N, C)``.

    Args:
        scores: class scores ``(N, C)``.
        y: integer labels ``(N,)`` in ``[0, C)``.

    Returns:
        ``(loss, vjp)``: the mean multiclass hinge loss (margin 1), and ``vjp(dloss=1.0) -> dscores``.

    >>> loss, vjp = fn.svm_loss(np.array([[1.0, 0.5, 3.0]]), np.array([0]))
    >>> float(loss)                                           # (0.5 - 1 + 1) + (3 - 1 + 1)
    3.5
    >>> vjp()
    array([[-2.,  1.,  1.]])
    """
    scores, y = _check_problem("svm_loss", scores, y)
    n = scores.shape[0]
    rows = np.arange(n)
    margins = np.maximum(0, scores - scores[rows, y][:, None] + 1)
    margins[rows, y] = 0
    loss = scores.dtype.type(margins.sum() / n)
    dscores = (margins > 0).astype(scores.dtype)
    dscores[np.isnan(margins)] = np.nan  # NaN in, NaN out: also in the gradient
    dscores[rows, y] -= dscores.sum(axis=1)
    return loss, _loss_vjp("svm_loss", loss, dscores / n)


def sigmoid_bce_loss(logits: np.ndarray, y: np.ndarray) -> tuple[np.floating, LossVJP]:
    """Mean binary cross-entropy of sigmoid(logits) against targets in [0, 1], over all elements
    (PyTorch's ``BCEWithLogitsLoss`` with its default mean): ``max(l, 0) - l y + log(1 + exp(-|l|))``,
    finite for any finite logits (|l| of 1e4 included).

    logits: any shape ``(N, ...)``; y: floats in ``[0, 1]`` of the same shape (soft targets allowed).
    Returns the loss (a scalar of logits' dtype) and ``vjp(dloss=1.0) -> dlogits``, ``(sigmoid(l) - y) / size``.

    Args:
        logits: any shape.
        y: targets in ``[0, 1]`` of the logits' shape.

    Returns:
        ``(loss, vjp)``: the mean binary cross-entropy over all elements, and ``vjp(dloss=1.0) -> dlogits``.

    >>> loss, vjp = fn.sigmoid_bce_loss(np.array([[0.0, 0.0]]), np.array([[1.0, 0.0]]))
    >>> round(float(loss), 4)                                 # log 2
    0.6931
    >>> vjp()
    array([[-0.25,  0.25]])
    """
    name = "sigmoid_bce_loss"
    logits = float_array(name, "logits", logits)
    if logits.ndim == 0 or logits.size == 0:
        raise ValueError(f"{name}: logits must hold at least one example, got shape {logits.shape}")
    y = np.asarray(y)
    if y.dtype.kind not in "biuf":
        raise TypeError(f"{name}: targets y must be numbers in [0, 1], got dtype {y.dtype}")
    if y.shape != logits.shape:
        raise ValueError(f"{name}: targets y must have the logits' shape {logits.shape}, got {y.shape}")
    y = y.astype(logits.dtype)
    if (y < 0).any() or (y > 1).any():
        raise ValueError(f"{name}: targets y must be in [0, 1], got min {y.min()}, max {y.max()}")
    negative = np.exp(-np.abs(logits))  # in (0, 1]: never overflows
    loss = logits.dtype.type(np.mean(np.maximum(logits, 0) - logits * y + np.log1p(negative)))
    probs = np.where(logits >= 0, 1 / (1 + negative), negative / (1 + negative))
    return loss, _loss_vjp(name, loss, (probs - y) / logits.size)


@layer_factory
def loss_layer(loss: Loss, y: np.ndarray) -> Layer:
    """A loss bound to labels ``y``, as a layer ``((), scores) -> (loss as a 0-d array, vjp)``.

    Put it last in a ``chain`` to check or train a whole network: ``vjp(dloss) -> ((), dscores)``.
    scores ``(N, C)`` -> a scalar (its ``out_shape`` is ``()``: the loss has no batch axis).

    Args:
        loss: a loss ``loss(scores, y) -> (value, vjp)``.
        y: the labels it is bound to.

    Returns:
        A layer without params ``(scores) -> loss`` whose vjp takes ``dloss`` and returns ``((), dscores)``.

    >>> net = fn.chain(fn.dense(2), fn.loss_layer(fn.softmax_loss, np.array([1, 0])))
    >>> net.out_shape((3,))
    ()
    >>> _, params = fn.init_params(net, np.random.default_rng(0), (3,), np.float64)
    >>> loss, vjp = net(params, np.zeros((2, 3)))
    >>> round(float(loss), 4), vjp(1.0)[1].shape              # zero inputs: equal scores, loss log 2
    (0.6931, (2, 3))
    """
    name = f"{getattr(loss, '__name__', 'loss')}(y)"
    labels = np.array(y)

    def apply(params: PyTree, scores: np.ndarray) -> tuple[np.ndarray, VJP]:
        no_params(name, params)
        value, loss_vjp = loss(scores, labels)
        out = np.asarray(value)

        def vjp(dloss: Any = 1.0) -> tuple[PyTree, np.ndarray]:
            return (), loss_vjp(dloss)

        return out, vjp

    def out_shape(in_shape: Shape) -> Shape:
        example_shape(name, in_shape, 1, "(C,), the class scores")
        return ()

    return Layer(apply, name, param_keys=(), out_shape=out_shape, op="loss")


def temporal_softmax_loss(scores: np.ndarray, y: np.ndarray, mask: np.ndarray) -> tuple[np.floating, LossVJP]:
    """The course's ``temporal_softmax_loss``: softmax cross-entropy at every time step, **summed**
    over the unmasked steps and **divided by N** (not by the number of unmasked steps), as in the course.

    scores: ``(N, T, V)``; y: ``(N, T)`` ints in ``[0, V)``; mask: ``(N, T)`` booleans (or 0/1), True
    where the step counts. Returns the loss (a scalar of scores' dtype) and ``vjp(dloss=1.0) -> dscores``
    of shape ``(N, T, V)``.

    Args:
        scores: scores ``(N, T, V)``.
        y: integer labels ``(N, T)``.
        mask: ``(N, T)``, true where a step counts.

    Returns:
        ``(loss, vjp)``: cross-entropy summed over unmasked steps and divided by N (the course's), and
            ``vjp(dloss=1.0) -> dscores``.

    >>> loss, vjp = fn.temporal_softmax_loss(np.zeros((1, 2, 2)), np.array([[0, 1]]), np.array([[True, False]]))
    >>> round(float(loss), 4), bool((vjp()[0, 1] == 0).all())  # log 2 from the one unmasked step
    (0.6931, True)
    """
    name = "temporal_softmax_loss"
    scores = float_array(name, "scores", scores)
    check_ndim(name, "scores", scores, 3, "(N, T, V)")
    n, t, v = scores.shape
    y, mask = np.asarray(y), np.asarray(mask)
    for arg, value in (("y", y), ("mask", mask)):
        if value.shape != (n, t):
            raise ValueError(
                f"{name}: {arg} must have shape (N, T) = {(n, t)} to match scores {scores.shape}, got {value.shape}"
            )
    if mask.dtype.kind not in "biu" or (mask.dtype.kind != "b" and not np.isin(mask, (0, 1)).all()):
        raise TypeError(f"{name}: mask must hold booleans (or 0 and 1), got dtype {mask.dtype}")
    if n == 0:
        raise ValueError(f"{name}: scores must hold at least one example, got shape {scores.shape}")
    flat, labels = _check_problem(name, scores.reshape(n * t, v), y.reshape(n * t))
    keep = mask.reshape(n * t).astype(scores.dtype)
    shifted = flat - flat.max(axis=1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    rows = np.arange(n * t)
    loss = scores.dtype.type(-(keep * log_probs[rows, labels]).sum() / n)
    dscores = np.exp(log_probs)
    dscores[rows, labels] -= 1
    dscores *= keep[:, None] / n
    return loss, _loss_vjp(name, loss, dscores.reshape(scores.shape))
