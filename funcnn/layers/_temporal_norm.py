"""Layer norm over the last axis: PyTorch's ``nn.LayerNorm(D)`` on ``(N, T, D)``, as transformers use it."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from funcnn._checks import cotangent, float_array, like, number_at_least
from funcnn.core import VJP, Layer, Shape, WeightScale
from funcnn.layers._norms import gamma_beta, nonempty_example_shape, ones_and_zeros
from funcnn.tree import PyTree

NormBack = Callable[[np.ndarray], tuple[dict[str, np.ndarray], np.ndarray]]


def norm_core(gamma: np.ndarray, beta: np.ndarray, x: np.ndarray, eps: float) -> tuple[np.ndarray, NormBack]:
    """``gamma * (x - mean) / sqrt(var + eps) + beta`` over the last axis of checked arrays; ``back(dy) ->
    ({"gamma", "beta"}, dx)``. Keeps the normalized x and ``1/std`` of every row."""
    d = x.shape[-1]
    x2 = x.reshape(-1, d)
    centered = x2 - x2.mean(axis=1, keepdims=True)
    rstd = 1 / np.sqrt(np.einsum("ij,ij->i", centered, centered)[:, None] / d + x.dtype.type(eps))
    centered *= rstd
    xhat = centered
    y = (xhat * gamma + beta).reshape(x.shape)
    shape = x.shape

    def back(dy: np.ndarray) -> tuple[dict[str, np.ndarray], np.ndarray]:
        dy2 = dy.reshape(-1, d)
        g = dy2 * gamma
        # d xhat / d x in closed form: rstd * (g - mean(g) - xhat * mean(g * xhat)) per row
        dx = g - g.mean(axis=1, keepdims=True)
        dx -= xhat * (np.einsum("ij,ij->i", g, xhat)[:, None] / d)
        dx *= rstd
        return {"gamma": np.einsum("ij,ij->j", dy2, xhat), "beta": dy2.sum(axis=0)}, dx.reshape(shape)

    return y, back


def temporal_layer_norm(eps: float = 1e-5) -> Layer:
    """Layer norm over the last axis, PyTorch's ``nn.LayerNorm(D, eps)``: x ``(N, ..., D)`` (a sequence
    ``(N, T, D)``); params ``{"gamma": (D,), "beta": (D,)}`` (ones and zeros from :func:`funcnn.init_params`);
    y the shape of x. Each position's D values are standardized (biased variance, ``eps`` inside the root).
    (:func:`funcnn.layer_norm` standardizes each example over all its values.)

    Args:
        eps: added to the variance inside the square root (> 0).

    Returns:
        The layer ``x (N, ..., D) -> y``, params ``{"gamma": (D,), "beta": (D,)}``.

    >>> layer = fn.temporal_layer_norm()
    >>> _, params = fn.init_params(layer, np.random.default_rng(0), (2, 4), np.float64)
    >>> y, vjp = layer(params, np.array([[[1.0, 2.0, 3.0, 4.0], [0.0, 0.0, 0.0, 8.0]]]))
    >>> y.round(3)
    array([[[-1.342, -0.447,  0.447,  1.342],
            [-0.577, -0.577, -0.577,  1.732]]])
    """
    name = f"temporal_layer_norm(eps={eps})"
    eps = number_at_least(name, "eps", eps, 0.0, strict=True)

    def apply(params: PyTree, x: np.ndarray) -> tuple[np.ndarray, VJP]:
        x = float_array(name, "x", x)
        if x.ndim < 2:
            raise ValueError(f"{name}: x must be at least 2-D (N, ..., D), got shape {x.shape}")
        y, back = norm_core(*gamma_beta(name, params, x, x.shape[-1:]), x, eps)
        out = like(y)
        return y, lambda dy: back(cotangent(name, dy, out))

    def out_shape(in_shape: Shape) -> Shape:
        return nonempty_example_shape(name, in_shape, "(..., D)")

    def init(
        rng: np.random.Generator, shape: Shape, dtype: np.dtype, weight_scale: WeightScale
    ) -> tuple[Shape, PyTree]:
        return out_shape(shape), ones_and_zeros(out_shape(shape)[-1:], dtype)

    return Layer(
        apply, name, param_keys=("gamma", "beta"), init=init, out_shape=out_shape, op="temporal_layer_norm",
        hparams={"eps": eps}, doc=temporal_layer_norm.__doc__,
    )  # fmt: skip
