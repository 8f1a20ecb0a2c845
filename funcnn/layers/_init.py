"""Params and state for a whole network from one example's input shape, as jax's stax does: each
layer's ``init`` makes its params and its ``out_shape`` gives the next layer's input shape. No
layer is run."""

from __future__ import annotations

from typing import Any

import numpy as np

from funcnn.core import Layer, LayerFn, Shape, State, WeightScale, layer_name, output_shape
from funcnn.tree import PyTree


def init_params(
    layer: LayerFn,
    rng: np.random.Generator,
    input_shape: Shape,
    dtype: Any = np.float32,
    weight_scale: WeightScale = "he",
) -> tuple[Shape, PyTree]:
    """Make params for ``layer`` (a layer, sandwich or chain) fed examples of ``input_shape``.

    input_shape: one example's shape, without the batch axis, e.g. ``(1, 8, 8)``. Weights are drawn
    from ``rng`` with He scaling (``weight_scale="he"``) or a fixed standard deviation; biases are 0.
    Returns ``(output_shape, params)``; ``layer(params, x)`` then works on ``x`` of shape ``(N, *input_shape)``.
    A layer without params needs only its ``out_shape`` (see :func:`funcnn.layer`).

    Args:
        layer: a layer whose shapes follow from its input shape (``dense``, ``conv(..., filters, kernel_size)``,
            combinations of them).
        rng: the generator the weights are drawn from.
        input_shape: one example's shape, without the batch axis.
        dtype: the params' float dtype.
        weight_scale: ``"he"`` (``sqrt(2 / fan_in)``) or a standard deviation such as the course's 1e-3.

    Returns:
        ``(output_shape, params)``: one example's output shape and a params tree for ``layer``.

    >>> net = fn.chain(fn.conv(pad=1, filters=4, kernel_size=3), fn.relu, fn.max_pool(), fn.dense(10))
    >>> out, params = fn.init_params(net, np.random.default_rng(0), (3, 8, 8))
    >>> out, params[0]["w"].shape, params[1], params[3]["w"].shape     # the dense layer gets 4 * 4 * 4 inputs
    ((10,), (4, 3, 3, 3), (), (64, 10))
    """
    if isinstance(layer, Layer) and layer.init is not None:
        return layer.init(rng, tuple(input_shape), np.dtype(dtype), weight_scale)
    if isinstance(layer, Layer) and layer.param_keys == ():
        return output_shape(layer, tuple(input_shape)), ()
    raise TypeError(
        f"init: {layer_name(layer)} has no init, so its params (and the shapes after it) cannot be made; give it its "
        "sizes (fn.dense(out_dim), fn.conv(..., filters=F, kernel_size=K)) or wrap it with fn.layer(..., init=...)"
    )


def init_state(layer: LayerFn, input_shape: Shape, dtype: Any = np.float32) -> State:
    """The initial state of ``layer`` (a layer, sandwich or chain) fed examples of ``input_shape``:
    batch norm's running mean 0 and variance 1, ``()`` for layers that keep none; chains give a
    tuple with one entry per layer, sandwiches a merged dict.

    Args:
        layer: a layer, moded or not.
        input_shape: one example's shape, without the batch axis.
        dtype: the state's float dtype.

    Returns:
        The layer's initial state (running means 0, variances 1; ``()`` for a stateless layer).

    >>> net = fn.chain(fn.dense(5), fn.batch_norm(), fn.relu)
    >>> state = fn.init_state(net, (3,))
    >>> state[0], state[1]["running_var"], state[2]
    ((), array([1., 1., 1., 1., 1.], dtype=float32), ())
    """
    if isinstance(layer, Layer) and layer.state_init is not None:
        return layer.state_init(tuple(input_shape), np.dtype(dtype))
    return ()
