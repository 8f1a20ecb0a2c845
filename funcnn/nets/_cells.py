"""What the sequence nets share: the recurrent cells by name, their course-style init, and one step of a cell
for sampling (no vjp kept beyond the step)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from funcnn.core import Layer
from funcnn.layers import lstm, lstm_step, rnn, rnn_step, temporal_affine, word_embedding
from funcnn.tree import PyTree

CELLS: dict[str, tuple[Layer, int]] = {"rnn": (rnn, 1), "lstm": (lstm, 4)}
"""Each cell's sequence layer ``(x (N, T, D), h0 (N, H)) -> h (N, T, H)`` and its number of gates."""


def check_cell(owner: str, cell: str) -> tuple[Layer, int]:
    """The sequence layer and gate count of ``cell``, "rnn" or "lstm"; a ValueError naming ``owner`` else."""
    if cell not in CELLS:
        raise ValueError(f"{owner}: cell must be one of {', '.join(CELLS)}, got {cell!r}")
    return CELLS[cell]


def normal(rng: np.random.Generator, shape: tuple[int, ...], std: float, dtype: np.dtype) -> np.ndarray:
    """Weights drawn from N(0, std^2) as ``dtype``."""
    return (rng.standard_normal(shape) * std).astype(dtype)


def cell_params(rng: np.random.Generator, cell: str, input_dim: int, hidden_dim: int, dtype: np.dtype) -> PyTree:
    """The course's init of a cell: ``wx`` ``(D, kH)`` / sqrt(D), ``wh`` ``(H, kH)`` / sqrt(H), ``b`` 0 (k gates)."""
    k = CELLS[cell][1] * hidden_dim
    return {
        "wx": normal(rng, (input_dim, k), input_dim**-0.5, dtype),
        "wh": normal(rng, (hidden_dim, k), hidden_dim**-0.5, dtype),
        "b": np.zeros(k, dtype),
    }


def start(cell: str, h0: np.ndarray) -> tuple[np.ndarray, ...]:
    """A cell's state before the first step: ``(h0,)``, and for an LSTM ``(h0, c0 = 0)`` as in the course."""
    return (h0, np.zeros_like(h0)) if cell == "lstm" else (h0,)


def step(cell: str, params: PyTree, x: np.ndarray, state: tuple[np.ndarray, ...]) -> tuple[np.ndarray, ...]:
    """One step of ``cell`` on inputs ``x`` ``(N, D)`` from ``state`` (see :func:`start`): the next state, its
    hidden state first."""
    inputs: Any = (x, *state)  # a tuple input (the Layer type still names an array)
    if cell == "lstm":
        (h, c), _ = lstm_step(params, inputs)
        return h, c
    h, _ = rnn_step(params, inputs)
    return (h,)


def words_to_scores(
    sequence: Layer, params: PyTree, words: np.ndarray, h0: np.ndarray
) -> tuple[np.ndarray, Callable[[np.ndarray], tuple[PyTree, np.ndarray]]]:
    """The decoder both nets share: embed ``words`` ``(N, T)``, run the cell's ``sequence`` layer from ``h0``,
    score each step by a temporal affine layer. ``params``: ``{"embed", "cell", "out"}``. Returns the scores
    ``(N, T, V)`` and ``vjp(dscores) -> (dparams, dh0)``."""
    x, embed_vjp = word_embedding(params["embed"], words)
    inputs: Any = (x, h0)  # a tuple input (the Layer type still names an array)
    h, cell_vjp = sequence(params["cell"], inputs)
    scores, out_vjp = temporal_affine(params["out"], h)

    def vjp(dscores: np.ndarray) -> tuple[PyTree, np.ndarray]:
        dout, dh = out_vjp(dscores)
        dcell, (dx, dh0) = cell_vjp(dh)
        dembed, _ = embed_vjp(dx)
        return {"embed": dembed, "cell": dcell, "out": dout}, dh0

    return scores, vjp
