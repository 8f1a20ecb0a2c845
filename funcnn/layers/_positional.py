"""The course's sinusoidal positional encoding, added to a sequence ``(N, S, D)``."""

from __future__ import annotations

from typing import Any

import numpy as np

from funcnn._checks import (
    check_ndim,
    cotangent,
    example_shape,
    float_array,
    fraction,
    int_at_least,
    like,
    no_params,
)
from funcnn.core import VJP, Layer, Shape, State, moded_layer
from funcnn.layers._dropout import dropout as dropout_layer
from funcnn.tree import PyTree


def sinusoid_table(length: int, dim: int, dtype: Any = np.float64) -> np.ndarray:
    """The course's table ``P (length, dim)``: ``P[i, j] = sin(i * 10000^(-j / dim))`` for even j,
    ``cos(i * 10000^(-(j - 1) / dim))`` for odd j."""
    i = np.arange(length, dtype=np.float64)[:, None]
    j = np.arange(dim)
    angle = i * 10000.0 ** (-(j - j % 2) / dim)
    table: np.ndarray = np.where(j % 2 == 0, np.sin(angle), np.cos(angle)).astype(dtype)
    return table


def positional_encoding(max_len: int = 5000, dropout: float = 0.0) -> Layer:
    """The course's ``PositionalEncoding(D, dropout, max_len)``: ``y = dropout(x + P[:S])`` for x ``(N, S, D)``
    with ``S <= max_len`` and ``P`` the sin/cos table of :func:`sinusoid_table`. params ``()``. With
    ``dropout > 0`` the layer is moded (``layer.run((), x, train=..., rng=...)``); the vjp is the identity
    (times the dropout mask).

    Args:
        max_len: the longest sequence S it takes.
        dropout: the probability of dropping a value in training.

    Returns:
        The layer ``x (N, S, D) -> y (N, S, D)``.

    >>> y, _ = fn.positional_encoding()((), np.zeros((1, 2, 4)))
    >>> y.round(3)                                            # P[0] = sin 0, cos 0, ...; P[1] = sin 1, cos 1, ...
    array([[[0.   , 1.   , 0.   , 1.   ],
            [0.841, 0.54 , 0.01 , 1.   ]]])
    """
    name = f"positional_encoding(max_len={max_len}{f', dropout={dropout}' if dropout else ''})"
    max_len = int_at_least(name, "max_len", max_len, 1)
    drop_prob = fraction(name, "dropout", dropout)
    drop = dropout_layer(drop_prob) if drop_prob else None
    tables: dict[tuple[int, Any], np.ndarray] = {}

    def add(params: PyTree, x: Any) -> tuple[np.ndarray, VJP]:
        no_params(name, params)
        x = float_array(name, "x", x)
        check_ndim(name, "x", x, 3, "(N, S, D)")
        if x.shape[1] > max_len:
            raise ValueError(f"{name}: x has S={x.shape[1]} positions (shape {x.shape}), more than max_len={max_len}")
        key = (x.shape[2], x.dtype)
        if key not in tables:  # the table of one width and dtype, made once
            tables[key] = sinusoid_table(max_len, x.shape[2], x.dtype)
            tables[key].flags.writeable = False
        y = x + tables[key][: x.shape[1]]
        out = like(y)
        return y, lambda dy: ((), cotangent(name, dy, out).copy())

    def run_fn(params: PyTree, x: Any, state: State, train: bool, rng: Any) -> tuple[np.ndarray, VJP, State]:
        y, add_vjp = add(params, x)
        assert drop is not None
        z, drop_vjp, _ = drop.run((), y, state, train=train, rng=rng)

        def vjp(dz: np.ndarray) -> tuple[PyTree, np.ndarray]:
            return (), drop_vjp(dz)[1]

        return z, vjp, ()

    def out_shape(shape: Shape) -> Shape:
        s = example_shape(name, shape, 2, "(S, D)")
        if s[0] > max_len:
            raise ValueError(f"{name}: the input has S={s[0]} positions, more than max_len={max_len}")
        return s

    layer: dict[str, Any] = {"out_shape": out_shape, "op": "positional_encoding", "doc": positional_encoding.__doc__}
    layer["hparams"] = {"max_len": max_len, "dropout": drop_prob}
    if drop is None:
        return Layer(add, name, **layer)
    return moded_layer(run_fn, name, **layer)
