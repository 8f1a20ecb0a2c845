"""Elementwise activations, any shape, params ``()``: ReLU (a fused Numba pass), leaky ReLU, tanh and a
numerically stable sigmoid."""

from __future__ import annotations

from typing import Any

import numpy as np

from funcnn._checks import cotangent, float_array, like, no_params, number_at_least, same_shape_as_input
from funcnn.core import VJP, Layer, layer_factory
from funcnn.layers._handover import sole, take, takes_handover
from funcnn.tree import PyTree

NAME = "relu"


def _relu(params: PyTree, x: np.ndarray) -> tuple[np.ndarray, VJP]:
    """``y = max(x, 0)`` elementwise, any shape; params ``()``. ``relu'(0) = 0``; NaN stays NaN.

    Returns ``y`` (shape of ``x``) and ``vjp(dy) -> ((), dx)``.

    >>> y, vjp = fn.relu((), np.array([[-1.0, 0.0, 2.0]]))
    >>> y
    array([[0., 0., 2.]])
    >>> vjp(np.array([[5.0, 5.0, 5.0]]))
    ((), array([[0., 0., 5.]]))
    """
    no_params(NAME, params)
    x = float_array(NAME, "x", x)
    return _relu_into(np.asarray(x, order="C"), None)


def relu_overwriting(params: PyTree, x: np.ndarray) -> tuple[np.ndarray, VJP]:
    """:data:`relu` writing ``y`` into ``x`` itself: for a caller that holds the only reference to ``x``
    (a chain, with a conv's output), so nobody sees the change. Returns ``(y, vjp)`` as relu does."""
    no_params(NAME, params)
    x = float_array(NAME, "x", x)
    return _relu_into(x, x)


def _relu_into(x: np.ndarray, into: np.ndarray | None) -> tuple[np.ndarray, VJP]:
    from funcnn.kernels import elementwise as kernels  # Numba is imported on the first fast call

    y, bits = kernels.relu_forward(x, np.empty_like(x) if into is None else into)
    out = like(y)  # the backward pass needs only where x > 0: one bit an element, not y

    @takes_handover
    def vjp(dy: Any, need_dx: bool = True, handed: bool = False, last: bool = False) -> tuple[PyTree, np.ndarray]:
        dy = np.asarray(cotangent(NAME, take(dy, handed), out), order="C")
        dx = dy if handed and sole(dy) else np.empty_like(dy)  # a handed-over dy nobody else sees takes dx
        word = f"u{dy.itemsize}"
        kernels.relu_backward(bits, dy.view(word), dx.view(word))
        return (), dx

    return y, vjp


relu = Layer(_relu, NAME, param_keys=(), out_shape=same_shape_as_input(NAME), op="relu")


@layer_factory
def leaky_relu(alpha: float = 0.01) -> Layer:
    """A leaky ReLU layer: ``y = x if x > 0 else alpha * x`` elementwise, any shape; params ``()``.

    ``alpha >= 0``. The slope at 0 is ``alpha`` (PyTorch's rule); NaN stays NaN.
    The layer returns ``y`` (shape of ``x``) and ``vjp(dy) -> ((), dx)``.

    Args:
        alpha: the slope for negative inputs, ``>= 0`` (PyTorch's default 0.01).

    Returns:
        The layer: call it as ``layer(params, x) -> (y, vjp)``, with ``vjp(dy) -> (dparams, dx)``.

    >>> y, vjp = fn.leaky_relu(0.1)((), np.array([[-2.0, 3.0]]))
    >>> y
    array([[-0.2,  3. ]])
    >>> vjp(np.ones_like(y))
    ((), array([[0.1, 1. ]]))
    """
    name = f"leaky_relu(alpha={alpha})"
    alpha = number_at_least(name, "alpha", alpha, 0.0)

    def apply(params: PyTree, x: np.ndarray) -> tuple[np.ndarray, VJP]:
        no_params(name, params)
        x = float_array(name, "x", x)
        slope = x.dtype.type(alpha)
        y = np.where(x > 0, x, slope * x)

        def vjp(dy: np.ndarray) -> tuple[PyTree, np.ndarray]:
            dy = cotangent(name, dy, y)
            return (), np.where(y > 0, dy, slope * dy)  # y > 0 exactly where x > 0, as alpha >= 0

        return y, vjp

    return Layer(
        apply,
        name,
        param_keys=(),
        out_shape=same_shape_as_input(name),
        op="leaky_relu",
        hparams={"alpha": alpha},
    )


def _tanh(params: PyTree, x: np.ndarray) -> tuple[np.ndarray, VJP]:
    """``y = tanh(x)`` elementwise, any shape; params ``()``. ``tanh'(x) = 1 - y**2``.

    Returns ``y`` (shape of ``x``) and ``vjp(dy) -> ((), dx)``.

    >>> y, vjp = fn.tanh((), np.array([[0.0, 1.0]]))
    >>> y.round(4)
    array([[0.    , 0.7616]])
    >>> vjp(np.ones_like(y))[1].round(4)
    array([[1.  , 0.42]])
    """
    no_params("tanh", params)
    x = float_array("tanh", "x", x)
    y = np.tanh(x)

    def vjp(dy: np.ndarray) -> tuple[PyTree, np.ndarray]:
        dy = cotangent("tanh", dy, y)
        return (), dy * (1 - y * y)

    return y, vjp


def _sigmoid(params: PyTree, x: np.ndarray) -> tuple[np.ndarray, VJP]:
    """``y = 1 / (1 + exp(-x))`` elementwise, any shape; params ``()``.

    Computed from ``e = exp(-|x|)``, which never overflows: ``y = 1 / (1 + e)`` for ``x >= 0`` and
    ``e / (1 + e)`` below, and the slope ``e / (1 + e)**2`` (exact even where ``y`` rounds to 1).
    Returns ``y`` (shape of ``x``) and ``vjp(dy) -> ((), dx)``.

    >>> y, vjp = fn.sigmoid((), np.array([[0.0, -1000.0]]))
    >>> y
    array([[0.5, 0. ]])
    >>> vjp(np.ones_like(y))
    ((), array([[0.25, 0.  ]]))
    """
    no_params("sigmoid", params)
    x = float_array("sigmoid", "x", x)
    with np.errstate(under="ignore"):  # exp(-|x|) rounding to 0 for large |x| is the right answer
        e = np.exp(-np.abs(x))
        y = np.where(x >= 0, 1, e) / (1 + e)
        slope = e / (1 + e) ** 2
    out = like(y)  # the backward pass needs only the slope

    def vjp(dy: np.ndarray) -> tuple[PyTree, np.ndarray]:
        dy = cotangent("sigmoid", dy, out)
        return (), dy * slope

    return y, vjp


tanh = Layer(_tanh, "tanh", param_keys=(), out_shape=same_shape_as_input("tanh"), op="tanh")
sigmoid = Layer(_sigmoid, "sigmoid", param_keys=(), out_shape=same_shape_as_input("sigmoid"), op="sigmoid")
