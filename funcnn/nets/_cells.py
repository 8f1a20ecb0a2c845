"""What the sequence nets share: the recurrent cells by name, their course-style init, and one step of a cell
for sampling (no vjp kept beyond the step)."""

from __future__ import annotations

import numpy as np

from funcnn.core import Layer
from funcnn.layers import lstm, lstm_step, rnn, rnn_step
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
    if cell == "lstm":
        (h, c), _ = lstm_step(params, (x, *state))
        return h, c
    h, _ = rnn_step(params, (x, *state))
    return (h,)
