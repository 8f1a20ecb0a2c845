"""Parameter initialization with shape inference through a network, as jax's stax does."""

from __future__ import annotations

from typing import Any

import numpy as np

from funcnn.core import Apply, Layer, Shape, State, WeightScale, layer_name, run
from funcnn.tree import PyTree


def weight_std(name: str, weight_scale: WeightScale, fan_in: int) -> float:
    """The standard deviation of a weight matrix: ``sqrt(2 / fan_in)`` for ``"he"`` (Kaiming, for
    ReLU nets), or ``weight_scale`` itself when it is a number (the course's ``weight_scale``)."""
    if weight_scale == "he":
        return float(np.sqrt(2.0 / fan_in))
    if isinstance(weight_scale, str) or not weight_scale > 0:
        raise ValueError(f"{name}: weight_scale must be 'he' or a positive number, got {weight_scale!r}")
    return float(weight_scale)


def weights_and_bias(rng: np.random.Generator, w_shape: Shape, dtype: Any, std: float) -> dict[str, np.ndarray]:
    """``{"w": normal(0, std) of w_shape, "b": zeros(w_shape[0 or 1])}`` in ``dtype``."""
    out_dim = w_shape[0] if len(w_shape) == 4 else w_shape[1]
    return {"w": (std * rng.standard_normal(w_shape)).astype(dtype), "b": np.zeros(out_dim, dtype=dtype)}


def infer(layer: Apply, rng: np.random.Generator, input_shape: Shape, dtype: Any, weight_scale: WeightScale) -> tuple[Shape, PyTree]:
    """``(output_shape, params)`` of one layer. A layer without ``init`` must take no params; its
    output shape is found by running it on one example of zeros."""
    if isinstance(layer, Layer) and layer.init is not None:
        return layer.init(rng, tuple(input_shape), np.dtype(dtype), weight_scale)
    if isinstance(layer, Layer) and layer.param_keys == ():
        state = infer_state(layer, input_shape, dtype)
        y, _, _ = run(layer, (), np.zeros((1, *input_shape), dtype=dtype), state, train=False)
        return y.shape[1:], ()
    raise TypeError(
        f"init: {layer_name(layer)} has no init, so its params (and the shapes after it) cannot be made; give it its sizes "
        "(fn.dense(out_dim), fn.conv(..., filters=F, kernel_size=K)) or wrap it with fn.layer(..., init=...)"
    )


def init_params(
    layer: Apply,
    rng: np.random.Generator,
    input_shape: Shape,
    dtype: Any = np.float32,
    weight_scale: WeightScale = "he",
) -> tuple[Shape, PyTree]:
    """Make params for ``layer`` (a layer, sandwich or chain) fed examples of ``input_shape``.

    input_shape: one example's shape, without the batch axis, e.g. ``(1, 8, 8)``. Weights are drawn
    from ``rng`` with He scaling (``weight_scale="he"``) or a fixed standard deviation; biases are 0.
    Returns ``(output_shape, params)``; ``layer(params, x)`` then works on ``x`` of shape ``(N, *input_shape)``.
    """
    return infer(layer, rng, input_shape, dtype, weight_scale)


def infer_state(layer: Apply, input_shape: Shape, dtype: Any) -> State:
    """The initial state of one layer: ``()`` unless it is a moded layer with a ``state_init``."""
    if isinstance(layer, Layer) and layer.state_init is not None:
        return layer.state_init(tuple(input_shape), np.dtype(dtype))
    return ()


def init_state(layer: Apply, input_shape: Shape, dtype: Any = np.float32) -> State:
    """The initial state of ``layer`` (a layer, sandwich or chain) fed examples of ``input_shape``:
    batch norm's running mean 0 and variance 1, ``()`` for layers that keep none; chains give a
    tuple with one entry per layer, sandwiches a merged dict."""
    return infer_state(layer, input_shape, dtype)
