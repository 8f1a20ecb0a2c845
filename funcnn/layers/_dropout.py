"""Inverted dropout: a moded layer with an explicit random generator."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from funcnn._checks import (
    cotangent,
    float_array,
    fraction,
    like,
    no_params,
    no_state,
    read_only,
    same_shape_as_input,
)
from funcnn.core import VJP, Layer, State, layer_factory, moded_layer
from funcnn.tree import PyTree


@layer_factory
def dropout(drop_prob: float = 0.5) -> Layer:
    """Zero each value with probability ``drop_prob`` in training and scale the rest by
    ``1 / (1 - drop_prob)``, so evaluation is the identity (y is a read-only view of x). params and
    state ``()``; any shape.

    ``layer.run((), x, train=True, rng=np.random.default_rng(seed))``; training without ``rng``
    is an error. The mask is drawn from ``rng``: the same generator state gives the same mask.

    Args:
        drop_prob: the probability of zeroing an element in training, in ``[0, 1)``; kept elements are scaled
            by ``1 / (1 - drop_prob)``.

    Returns:
        The moded layer: call it as ``layer.run(params, x, state, train=..., rng=...) -> (y, vjp, new_state)``.

    >>> layer = fn.dropout(0.5)
    >>> y, vjp, _ = layer.run((), np.ones((2, 4)), train=True, rng=np.random.default_rng(0))
    >>> sorted(set(y.ravel().tolist()))                       # dropped, or kept and scaled by 1 / (1 - 0.5)
    [0.0, 2.0]
    >>> y, _, _ = layer.run((), np.ones((2, 4)), train=False)
    >>> bool((y == 1).all()), y.flags.writeable               # evaluation: the identity, a read-only view
    (True, False)
    """
    name = f"dropout(drop_prob={drop_prob})"
    drop_prob = fraction(name, "drop_prob", drop_prob)

    def run_fn(params: PyTree, x: Any, state: State, train: bool, rng: Any) -> tuple[np.ndarray, VJP, State]:
        no_params(name, params)
        no_state(name, state)
        x = float_array(name, "x", x)
        if not train:
            return read_only(x), lambda dy: ((), read_only(cotangent(name, dy, x))), ()
        if not isinstance(rng, np.random.Generator):  # a missing rng is the usual case: ValueError, as documented
            raise ValueError(  # noqa: TRY004
                f"{name}: training draws a random mask, so it needs rng=np.random.default_rng(seed), got {rng!r}"
            )
        keep = rng.random(x.shape) >= drop_prob
        scale, zero = x.dtype.type(1) / x.dtype.type(1 - drop_prob), x.dtype.type(0)
        y = x * np.where(keep, scale, zero)
        bits, out = np.packbits(keep, axis=None), like(y)  # 1 bit an element kept for the backward pass

        def vjp(dy: np.ndarray) -> tuple[PyTree, np.ndarray]:
            kept = np.unpackbits(bits, count=math.prod(out.shape)).view(bool).reshape(out.shape)
            return (), cotangent(name, dy, out) * np.where(kept, scale, zero)

        return y, vjp, ()

    return moded_layer(
        run_fn,
        name,
        out_shape=same_shape_as_input(name),
        op="dropout",
        hparams={"drop_prob": drop_prob},
    )
