"""Inverted dropout: a moded layer with an explicit random generator."""

from __future__ import annotations

from typing import Any

import numpy as np

from funcnn.core import VJP, Layer, State, moded_layer
from funcnn.tree import PyTree
from funcnn.validation import cotangent, describe, float_array, is_empty, no_params, number_at_least, read_only


def dropout(drop_prob: float = 0.5) -> Layer:
    """Zero each value with probability ``drop_prob`` in training and scale the rest by
    ``1 / (1 - drop_prob)``, so evaluation is the identity (y is a read-only view of x). params and
    state ``()``; any shape.

    ``layer.run((), x, train=True, rng=np.random.default_rng(seed))``; training without ``rng``
    is an error. The mask is drawn from ``rng``: the same generator state gives the same mask.
    """
    name = f"dropout(drop_prob={drop_prob})"
    drop_prob = number_at_least(name, "drop_prob", drop_prob, 0.0)
    if not drop_prob < 1:
        raise ValueError(f"{name}: drop_prob must be in [0, 1), got {drop_prob}")

    def run_fn(params: PyTree, x: Any, state: State, train: bool, rng: Any) -> tuple[np.ndarray, VJP, State]:
        no_params(name, params)
        if not is_empty(state):
            raise TypeError(f"{name}: keeps no state, so state must be (), got {describe(state)}")
        x = float_array(name, "x", x)
        if not train:
            return read_only(x), lambda dy: ((), read_only(cotangent(name, dy, x))), ()
        if not isinstance(rng, np.random.Generator):
            raise ValueError(f"{name}: training draws a random mask, so it needs rng=np.random.default_rng(seed), got {rng!r}")
        mask = (rng.random(x.shape) >= drop_prob).astype(x.dtype) / x.dtype.type(1 - drop_prob)
        y = x * mask

        def vjp(dy: np.ndarray) -> tuple[PyTree, np.ndarray]:
            return (), cotangent(name, dy, y) * mask

        return y, vjp, ()

    return moded_layer(run_fn, name)
