"""The recurrence of the RNN, LSTM and GRU as :func:`funcnn.scan` cells (the input projection of all steps
is done before the scan), and the arenas their steps take their arrays from.

A step's arrays live until the backward pass, so each would be fresh memory, its pages faulted in one
by one (small arrays get no huge pages): that cost more than the gate arithmetic. An :class:`Arena` is
one allocation for all steps, carved in order.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from funcnn.core import VJP, Layer
from funcnn.kernels.recurrent import (
    gru_backward_step,
    gru_forward_step,
    lstm_backward_step,
    lstm_forward_step,
    lstm_gates_from_tanh,
)
from funcnn.layers._scan import Outer, gives_outer
from funcnn.tree import PyTree

# the floats per example that a step of each kind takes from the forward arena (H times this) and the backward one
FORWARD_WIDTH = {"rnn": 1, "lstm": 7, "gru": 7}
BACKWARD_WIDTH = {"rnn": 1, "lstm": 4, "gru": 6}


class Arena:
    """``size`` elements of one dtype, handed out in order as arrays; past its end, fresh arrays."""

    def __init__(self, size: int, dtype: np.dtype) -> None:
        self.buffer = np.empty(size, dtype)
        self.used = 0

    def take(self, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        count = math.prod(shape)
        if dtype != self.buffer.dtype or self.used + count > self.buffer.size:
            return np.empty(shape, dtype)
        view = self.buffer[self.used : self.used + count].reshape(shape)
        self.used += count
        return view


@dataclass
class Context:
    """What the cells of one sequence call share: the arenas of the forward and backward passes and
    ``wh.T`` made contiguous (both ``None`` outside a sequence)."""

    forward: Arena | None = None
    backward: Arena | None = None
    wh_t: np.ndarray | None = None


def _outer(prev: np.ndarray, da: np.ndarray, outer: bool) -> Any:
    """The recurrent weight's gradient ``prev.T @ da``, left to :func:`scan` as one product over all steps."""
    return Outer(prev, da) if outer else prev.T @ da


def recurrence(kind: str, wh: np.ndarray, context: Context) -> Layer:
    """The recurrent part of one step as a :func:`scan` cell, the input projection ``xw_t`` done before:
    params ``{"wh"}`` (GRU: and ``"bh"``), input ``(carry, xw_t)`` with carry ``h`` (LSTM: ``(h, c)``),
    output ``(carry', h')``. It takes the arrays its steps keep from ``context``'s arenas and, when the
    params' ``wh`` is ``wh``, uses ``context.wh_t``, a contiguous copy of ``wh.T``, in its backward."""

    def transposed(w: np.ndarray) -> np.ndarray:
        return context.wh_t if w is wh and context.wh_t is not None else w.T

    def product(h: np.ndarray, w: np.ndarray, out: np.ndarray) -> np.ndarray:
        """``h @ w`` into ``out``; as ``(wh.T @ h.T).T`` when ``context.wh_t`` is there, which the LSTM's
        forward sets: OpenBLAS's AVX-512 kernel took 264 us for (32, 256) @ (256, 1024) and 187 us in that
        order, plus 20 us for the copy (LSTM forward + backward 65 against 68 ms); the GRU's (256, 768) was
        slower so (49 against 47 ms), and it keeps ``h @ w``."""
        if context.wh_t is None or w is not wh:
            return np.matmul(h, w, out=out)
        np.copyto(out, np.matmul(context.wh_t, h.T).T)
        return out

    def forward_array(shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        return context.forward.take(shape, dtype) if context.forward else np.empty(shape, dtype)

    def backward_array(shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        return context.backward.take(shape, dtype) if context.backward else np.empty(shape, dtype)

    def rnn(params: PyTree, x: Any) -> tuple[Any, VJP]:
        w = params["wh"]
        prev, xw = x
        h = product(prev, w, forward_array(prev.shape, prev.dtype))
        h += xw
        np.tanh(h, out=h)

        @gives_outer
        def vjp(d: Any, outer: bool = False) -> tuple[PyTree, tuple[np.ndarray, np.ndarray]]:
            dcarry, dy = d
            da = np.add(dcarry, dy, out=backward_array(h.shape, h.dtype))
            da *= 1 - h * h
            return {"wh": _outer(prev, da, outer)}, (da @ transposed(w), da)

        return (h, h), vjp

    def lstm(params: PyTree, x: Any) -> tuple[Any, VJP]:
        w = params["wh"]
        (prev_h, prev_c), xw = x
        hw = product(prev_h, w, np.empty((prev_h.shape[0], w.shape[1]), prev_h.dtype))
        gates = forward_array(hw.shape, hw.dtype)
        c, tanh_c, h = forward_array((3, *prev_c.shape), hw.dtype)
        if hw.dtype == np.float32:
            lstm_forward_step(hw, xw, prev_c, gates, c, tanh_c, h)
        else:  # libm's tanh is scalar in a kernel: NumPy's SIMD tanh first, then the gates' arithmetic
            hidden = prev_c.shape[1]
            hw += xw
            hw[:, : 3 * hidden] *= 0.5  # sigmoid(a) = (1 + tanh(a / 2)) / 2
            np.tanh(hw, out=hw)
            lstm_gates_from_tanh(hw, prev_c, gates, c)
            np.tanh(c, out=tanh_c)
            np.multiply(gates[:, 2 * hidden : 3 * hidden], tanh_c, out=h)

        @gives_outer
        def vjp(d: Any, outer: bool = False) -> tuple[PyTree, tuple[tuple[np.ndarray, np.ndarray], np.ndarray]]:
            (dh, dc), dy = d
            da, dprev_c = backward_array(gates.shape, gates.dtype), np.empty_like(c)
            lstm_backward_step(gates, prev_c, tanh_c, dy, dh, dc, da, dprev_c)
            dprev_h = np.empty_like(prev_h)
            np.copyto(dprev_h, np.matmul(w, da.T).T)  # faster than da @ wh.T, see below
            return {"wh": _outer(prev_h, da, outer)}, ((dprev_h, dprev_c), da)

        return ((h, c), h), vjp

    def gru(params: PyTree, x: Any) -> tuple[Any, VJP]:
        w = params["wh"]
        prev, xa = x
        ha = product(prev, w, forward_array(xa.shape, xa.dtype))
        gates = forward_array(xa.shape, xa.dtype)
        h = forward_array(prev.shape, prev.dtype)
        gru_forward_step(xa, ha, params["bh"], prev, gates, h)  # ha += bh, then the gates

        @gives_outer
        def vjp(d: Any, outer: bool = False) -> tuple[PyTree, tuple[np.ndarray, np.ndarray]]:
            dcarry, dy = d
            dxa, dha = (backward_array(gates.shape, gates.dtype) for _ in range(2))
            dprev = np.empty_like(h)
            gru_backward_step(gates, ha, prev, dy, dcarry, dxa, dha, dprev)
            dprev += dha @ transposed(w)
            return {"wh": _outer(prev, dha, outer), "bh": dha.sum(axis=0)}, (dprev, dxa)

        return (h, h), vjp

    cell = {"rnn": rnn, "lstm": lstm, "gru": gru}[kind]
    return Layer(cell, f"{kind}_recurrence", param_keys=("wh", "bh") if kind == "gru" else ("wh",))
