"""Layer and group normalization: PyTorch's ``nn.LayerNorm`` and ``nn.GroupNorm``, without state.

Both split each example into groups of values, standardize every group with its mean and biased
variance, ``xhat = (x - mean) / sqrt(var + eps)``, then scale and shift: ``y = gamma * xhat + beta``.
They keep no running statistics, so training and evaluation are the same.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from funcnn._checks import (
    cotangent,
    dict_params,
    example_shape,
    float_array,
    int_at_least,
    like,
    number_at_least,
    same_dtype,
)
from funcnn.core import VJP, Layer, Shape, WeightScale, layer_factory
from funcnn.tree import PyTree


def _normalize(
    name: str, params: PyTree, x: np.ndarray, groups: int, eps: float, param_shape: Shape
) -> tuple[np.ndarray, VJP]:
    """``gamma * xhat + beta`` with ``xhat`` standardized over each of the ``groups`` runs of
    consecutive values of every example; gamma and beta of ``param_shape`` line up with x's
    leading non-batch axes and broadcast over the rest."""
    gamma, beta = gamma_beta(name, params, x, param_shape)
    trailing = (1,) * (x.ndim - 1 - len(param_shape))
    gamma, beta = gamma.reshape(param_shape + trailing), beta.reshape(param_shape + trailing)
    summed_axes = (0, *range(1 + len(param_shape), x.ndim))  # the axes gamma is broadcast over

    x3 = x.reshape(x.shape[0], groups, math.prod(x.shape[1:]) // groups)
    centered = x3 - x3.mean(axis=2, keepdims=True)
    rstd = 1 / np.sqrt((centered * centered).mean(axis=2, keepdims=True) + eps)
    xhat3 = centered * rstd
    xhat = xhat3.reshape(x.shape)
    y = gamma * xhat + beta
    out, shape, shape3 = like(y), x.shape, x3.shape  # not x, nor y: the backward pass needs xhat and rstd

    def vjp(dy: np.ndarray) -> tuple[PyTree, np.ndarray]:
        dy = cotangent(name, dy, out)
        g = (dy * gamma).reshape(shape3)
        # d xhat / d x in closed form: rstd * (g - mean(g) - xhat * mean(g * xhat)) per group.
        dx3 = rstd * (g - g.mean(axis=2, keepdims=True) - xhat3 * (g * xhat3).mean(axis=2, keepdims=True))
        dparams = {"gamma": (dy * xhat).sum(axis=summed_axes), "beta": dy.sum(axis=summed_axes)}
        return dparams, dx3.reshape(shape)

    return y, vjp


def gamma_beta(name: str, params: PyTree, x: np.ndarray, param_shape: Shape) -> tuple[np.ndarray, np.ndarray]:
    """``(gamma, beta)`` of ``params``, checked: both of ``param_shape`` and of x's dtype."""
    gamma, beta = dict_params(name, params, ("gamma", "beta")).values()
    for arg, value in (("params['gamma']", gamma), ("params['beta']", beta)):
        if value.shape != param_shape:
            raise ValueError(
                f"{name}: {arg} must have shape {param_shape} to match x of shape {x.shape}, got {value.shape}"
            )
    same_dtype(name, x=x, gamma=gamma, beta=beta)
    return gamma, beta


def nonempty_example_shape(name: str, in_shape: Shape, form: str) -> Shape:
    """One example's shape (no batch axis) from ``in_shape``, refused when it has no axis."""
    shape = example_shape(name, in_shape, None, form)
    if len(shape) < 1:
        raise ValueError(f"{name}: the input shape (one example, no batch axis) must be {form}, got {shape}")
    return shape


def ones_and_zeros(shape: Shape, dtype: np.dtype) -> dict[str, np.ndarray]:
    """Initial ``{"gamma": ones, "beta": zeros}`` of ``shape``."""
    return {"gamma": np.ones(shape, dtype=dtype), "beta": np.zeros(shape, dtype=dtype)}


@layer_factory
def layer_norm(eps: float = 1e-5) -> Layer:
    """A layer-norm layer: PyTorch's ``nn.LayerNorm(x.shape[1:], eps)``.

    x: ``(N, d1, ..., dk)`` with ``k >= 1``; params ``{"gamma": (d1, ..., dk), "beta": (d1, ..., dk)}``,
    a scale and a shift per value of an example; y: the shape of x. Each example is standardized
    over all its values (biased variance, ``eps > 0`` inside the square root).
    :func:`funcnn.init_params` makes gamma ones and beta zeros.

    Args:
        eps: added to the variance before its square root.

    Returns:
        The layer: call it as ``layer(params, x) -> (y, vjp)``, with ``vjp(dy) -> (dparams, dx)``.

    >>> layer = fn.layer_norm()
    >>> _, params = fn.init_params(layer, np.random.default_rng(0), (4,), np.float64)
    >>> y, vjp = layer(params, np.array([[1.0, 2.0, 3.0, 4.0]]))
    >>> y.round(3)
    array([[-1.342, -0.447,  0.447,  1.342]])
    """
    name = f"layer_norm(eps={eps})"
    eps = number_at_least(name, "eps", eps, 0.0, strict=True)

    def apply(params: PyTree, x: np.ndarray) -> tuple[np.ndarray, VJP]:
        x = float_array(name, "x", x)
        if x.ndim < 2:
            raise ValueError(f"{name}: x must be at least 2-D (N, d1, ..., dk), got shape {x.shape}")
        return _normalize(name, params, x, 1, eps, x.shape[1:])

    def out_shape(in_shape: Shape) -> Shape:
        return nonempty_example_shape(name, in_shape, "(d1, ..., dk)")

    def init(
        rng: np.random.Generator, shape: Shape, dtype: np.dtype, weight_scale: WeightScale
    ) -> tuple[Shape, PyTree]:
        return out_shape(shape), ones_and_zeros(out_shape(shape), dtype)

    hparams = {"eps": eps}
    return Layer(
        apply,
        name,
        param_keys=("gamma", "beta"),
        init=init,
        out_shape=out_shape,
        op="layer_norm",
        hparams=hparams,
    )


@layer_factory
def group_norm(groups: int, eps: float = 1e-5) -> Layer:
    """A group-norm layer: PyTorch's ``nn.GroupNorm(groups, C, eps)``.

    x: ``(N, C, H, W)``, or any ``(N, C, ...)``, with C divisible by ``groups``; params
    ``{"gamma": (C,), "beta": (C,)}``; y: the shape of x. Each example's channels are split into
    ``groups`` groups of ``C // groups`` consecutive channels; each group is standardized over its
    channels and positions (biased variance, ``eps > 0`` inside the square root), then channel c is
    scaled by ``gamma[c]`` and shifted by ``beta[c]``. ``groups=1`` normalizes each example as a whole,
    ``groups=C`` each channel (instance norm). :func:`funcnn.init_params` makes gamma ones and beta zeros.

    Args:
        groups: G, the number of channel groups; C must be a multiple of it.
        eps: added to the variance before its square root.

    Returns:
        The layer: call it as ``layer(params, x) -> (y, vjp)``, with ``vjp(dy) -> (dparams, dx)``.

    >>> layer = fn.group_norm(2)                              # channels (0, 1) and (2, 3)
    >>> _, params = fn.init_params(layer, np.random.default_rng(0), (4, 1, 1), np.float64)
    >>> y, vjp = layer(params, np.array([1.0, 3.0, 10.0, 30.0]).reshape(1, 4, 1, 1))
    >>> y.ravel().round(3)
    array([-1.,  1., -1.,  1.])
    """
    name = f"group_norm(groups={groups}, eps={eps})"
    groups = int_at_least(name, "groups", groups, 1)
    eps = number_at_least(name, "eps", eps, 0.0, strict=True)

    def check_channels(channels: int, shape: Any) -> None:
        if channels % groups:
            raise ValueError(f"{name}: groups={groups} must divide the channels of x, but C={channels} (shape {shape})")

    def apply(params: PyTree, x: np.ndarray) -> tuple[np.ndarray, VJP]:
        x = float_array(name, "x", x)
        if x.ndim < 2:
            raise ValueError(f"{name}: x must be at least 2-D (N, C, ...), got shape {x.shape}")
        check_channels(x.shape[1], x.shape)
        return _normalize(name, params, x, groups, eps, x.shape[1:2])

    def out_shape(in_shape: Shape) -> Shape:
        shape = example_shape(name, in_shape, None, "(C, ...)")
        if len(shape) < 1:
            raise ValueError(f"{name}: the input shape (one example, no batch axis) must be (C, ...), got {shape}")
        check_channels(shape[0], shape)
        return shape

    def init(
        rng: np.random.Generator, shape: Shape, dtype: np.dtype, weight_scale: WeightScale
    ) -> tuple[Shape, PyTree]:
        return out_shape(shape), ones_and_zeros(out_shape(shape)[:1], dtype)

    hparams = {"groups": groups, "eps": eps}
    return Layer(
        apply,
        name,
        param_keys=("gamma", "beta"),
        init=init,
        out_shape=out_shape,
        op="group_norm",
        hparams=hparams,
    )
