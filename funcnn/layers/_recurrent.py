"""Recurrent layers with the course's shapes and names (CS231n assignment 3, ``rnn_layers.py``).

Cells (one time step): ``rnn_step``, ``lstm_step``, ``gru_step``, input ``(x (N, D), prev_h (N, H)[,
prev_c (N, H)])``. Sequences: ``rnn``, ``lstm``, ``gru``, input ``(x (N, T, D), h0 (N, H))`` -> ``h (N, T, H)``
(the LSTM's ``c0`` is zero, as in the course). The factories ``rnn_cell(hidden)``, ``lstm_cell``, ``gru_cell``,
``rnn_layer(hidden)``, ``lstm_layer``, ``gru_layer`` know their sizes for :func:`funcnn.init_params`.

Built on :func:`funcnn.scan`: the input projection ``x wx + b`` of all steps is one product before
the scan, which runs the recurrence cell of ``funcnn.layers._recurrence`` (one product ``h wh`` plus
one fused, vectorised Numba pass of the gate arithmetic per step, forward and backward); the cell hands
scan its ``wh`` gradient as factors, multiplied once over all steps (no array per step).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from funcnn._checks import (
    check_ndim,
    cotangent,
    dict_params,
    example_shape,
    float_array,
    int_at_least,
    like,
    same_dtype,
    tuple_input,
)
from funcnn.core import VJP, Layer, WeightScale, layer_factory
from funcnn.layers._recurrence import BACKWARD_WIDTH, FORWARD_WIDTH, Arena, Context, recurrence
from funcnn.layers._scan import scan
from funcnn.tree import PyTree

# gates per kind: the width of wx, wh and the biases is gates * H
GATES = {"rnn": 1, "lstm": 4, "gru": 3}
BIASES = {"rnn": ("b",), "lstm": ("b",), "gru": ("bx", "bh")}


def _checked(
    name: str, kind: str, params: PyTree, x: Any, names: tuple[str, ...], seq: bool
) -> tuple[dict[str, np.ndarray], list[np.ndarray]]:
    """The params and the input arrays of a recurrent layer, every shape checked against the params."""
    keys = ("wx", "wh", *BIASES[kind])
    p = dict_params(name, params, keys)
    arrays = [float_array(name, arg, a) for arg, a in zip(names, tuple_input(name, x, names))]
    same_dtype(name, **dict(zip(names, arrays)), **p)
    g = GATES[kind]
    check_ndim(name, "params['wh']", p["wh"], 2, f"(H, {g}H)")
    hidden = p["wh"].shape[0]
    if p["wh"].shape != (hidden, g * hidden):
        raise ValueError(f"{name}: params['wh'] must have shape (H, {g}H), got {p['wh'].shape}")
    check_ndim(name, "params['wx']", p["wx"], 2, f"(D, {g}H)")
    if p["wx"].shape[1] != g * hidden:
        raise ValueError(
            f"{name}: params['wx'] {p['wx'].shape} must have {g * hidden} columns to match params['wh'] {p['wh'].shape}"
        )
    for key in BIASES[kind]:
        if p[key].shape != (g * hidden,):
            raise ValueError(f"{name}: params['{key}'] must have shape ({g * hidden},), got {p[key].shape}")
    x0 = arrays[0]
    layout = "(N, T, D)" if seq else "(N, D)"
    check_ndim(name, names[0], x0, 3 if seq else 2, layout)
    if x0.shape[-1] != p["wx"].shape[0]:
        raise ValueError(
            f"{name}: {names[0]} has D={x0.shape[-1]} (shape {x0.shape}) but params['wx'] has shape {p['wx'].shape}"
        )
    for arg, a in zip(names[1:], arrays[1:]):
        if a.shape != (x0.shape[0], hidden):
            raise ValueError(
                f"{name}: {arg} must have shape (N, H) = {(x0.shape[0], hidden)} for {names[0]} {x0.shape} and "
                f"params['wh'] {p['wh'].shape}, got {a.shape}"
            )
    return p, arrays


def _dy(name: str, dy: Any, outs: tuple[Any, ...], names: tuple[str, ...]) -> list[np.ndarray]:
    """A vjp's cotangent: one array per output (a single one when the layer has one output); None is zero."""
    parts = (dy,) if len(outs) == 1 else tuple_input(name + " vjp", dy, names, "dy")
    return [np.zeros(y.shape, y.dtype) if d is None else cotangent(name, d, y) for d, y in zip(parts, outs)]


def _step_rows(a: np.ndarray) -> tuple[np.ndarray, bool]:
    """``a`` (N, T, ...) as the (T * N, ...) rows of its steps one after another, a view when its memory holds
    them so (in either time order: the flag says whether last step first), a copy in time order otherwise."""
    steps = a.transpose(1, 0, *range(2, a.ndim))
    backwards = steps.strides[0] < 0
    rows = np.ascontiguousarray(steps[::-1] if backwards else steps)
    return rows.reshape(-1, *a.shape[2:]), backwards


def _with_ones(x: np.ndarray, backwards: bool = False) -> np.ndarray:
    """``[x | 1]``: the (T * N, D + 1) rows of ``x`` (N, T, D) step by step (last step first if ``backwards``)
    and a column of ones, so that one product with ``[wx; b]`` adds the bias, and one with ``dxa`` sums ``db``."""
    n, t, d = x.shape
    rows = np.empty((t, n, d + 1), x.dtype)
    rows[..., :d] = x.transpose(1, 0, 2)[::-1] if backwards else x.transpose(1, 0, 2)
    rows[..., d] = 1
    return rows.reshape(t * n, d + 1)


def _input_grads(x: np.ndarray, wx: np.ndarray, dxa: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(dwx, db, dx)`` of the input projection ``x wx + b`` of every step, from its cotangent ``dxa`` (N, T, G)
    (``dwx`` and ``db`` one product ``[x | 1].T @ dxa``, rows in the order ``dxa``'s memory holds its steps)."""
    n, t, d = x.shape
    rows, backwards = _step_rows(dxa)
    both = _with_ones(x, backwards).T @ rows
    dx = (rows @ wx.T).reshape(t, n, d)
    return both[:d], both[d], np.ascontiguousarray((dx[::-1] if backwards else dx).transpose(1, 0, 2))


def _time_major(a: np.ndarray) -> np.ndarray:
    """``a`` (N, T, ...) as an equal view whose every step ``[:, t]`` is C-contiguous (the kernels vectorise then)."""
    return np.ascontiguousarray(a.transpose(1, 0, *range(2, a.ndim))).transpose(1, 0, *range(2, a.ndim))


def _project(x: np.ndarray, wx: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``x wx + b`` for all steps in one product: ``(N, T, D)`` -> ``(N, T, G)``, each step contiguous."""
    n, t, d = x.shape
    projected: np.ndarray = _with_ones(x) @ np.vstack([wx, b])  # the bias in the product: no pass of its own
    return projected.reshape(t, n, -1).transpose(1, 0, 2)


def _recurrent_params(kind: str, p: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {"wh": p["wh"], "bh": p["bh"]} if kind == "gru" else {"wh": p["wh"]}


def _all_grads(kind: str, dwx: np.ndarray, db: np.ndarray, recurrent: PyTree) -> dict[str, np.ndarray]:
    """The layer's parameter gradients from the input projection's and the recurrence's."""
    return {"wx": dwx, BIASES[kind][0]: db, **recurrent}


def _one_step(kind: str, params: PyTree, x: Any) -> tuple[Any, VJP]:
    """One step of any kind: the input projection, then the recurrence cell that :func:`scan` runs in the sequences."""
    name = f"{kind}_step"
    names = ("x", "prev_h", "prev_c") if kind == "lstm" else ("x", "prev_h")
    p, (x0, *state) = _checked(name, kind, params, x, names, seq=False)
    xw = x0 @ p["wx"] + p[BIASES[kind][0]]
    carry = tuple(state) if kind == "lstm" else state[0]
    cell: Any = recurrence(kind, p["wh"], Context())  # a tuple input
    (new_carry, next_h), cell_vjp = cell(_recurrent_params(kind, p), (carry, xw))
    outs = tuple(new_carry) if kind == "lstm" else (next_h,)

    def vjp(dy: Any) -> tuple[PyTree, tuple[np.ndarray, ...]]:
        ds = _dy(name, dy, outs, ("dnext_h", "dnext_c"))
        if kind == "lstm":
            rec, ((dprev_h, dprev_c), dxw) = cell_vjp(((ds[0], ds[1]), np.zeros_like(ds[0])))
            dstate: tuple[np.ndarray, ...] = (dprev_h, dprev_c)
        else:
            rec, (dprev, dxw) = cell_vjp((ds[0], np.zeros_like(ds[0])))
            dstate = (dprev,)
        grads = _all_grads(kind, x0.T @ dxw, dxw.sum(axis=0), rec)
        return grads, (dxw @ p["wx"].T, *dstate)

    return (outs if kind == "lstm" else next_h), vjp  # type: ignore[return-value]


def _rnn_step(params: PyTree, x: Any) -> tuple[np.ndarray, VJP]:
    """``next_h = tanh(x wx + prev_h wh + b)``, the course's ``rnn_step_forward``.

    params: ``{"wx": (D, H), "wh": (H, H), "b": (H,)}``; x: the tuple ``(x (N, D), prev_h (N, H))``.
    Returns ``next_h (N, H)`` and ``vjp(dnext_h) -> (dparams, (dx, dprev_h))``.

    >>> params = {"wx": np.ones((3, 2)), "wh": np.zeros((2, 2)), "b": np.zeros(2)}
    >>> next_h, vjp = fn.rnn_step(params, (np.zeros((1, 3)), np.zeros((1, 2))))
    >>> next_h
    array([[0., 0.]])
    >>> dparams, (dx, dprev_h) = vjp(np.ones((1, 2)))
    >>> dx
    array([[2., 2., 2.]])
    """
    return _one_step("rnn", params, x)


def _lstm_step(params: PyTree, x: Any) -> tuple[Any, VJP]:
    """One LSTM step, the course's ``lstm_step_forward``; gates ``a = x wx + prev_h wh + b`` split in the
    order i, f, o, g: ``next_c = f * prev_c + i * g``, ``next_h = o * tanh(next_c)``.

    params: ``{"wx": (D, 4H), "wh": (H, 4H), "b": (4H,)}``; x: ``(x (N, D), prev_h (N, H), prev_c (N, H))``.
    Returns ``(next_h, next_c)`` and ``vjp((dnext_h, dnext_c)) -> (dparams, (dx, dprev_h, dprev_c))``
    (a ``None`` cotangent counts as zero).
    """
    return _one_step("lstm", params, x)


def _gru_step(params: PyTree, x: Any) -> tuple[np.ndarray, VJP]:
    """One GRU step with PyTorch's equations (``torch.nn.GRUCell``), gates in the order r, z, n:
    ``r, z = sigmoid(x wx_rz + bx_rz + prev_h wh_rz + bh_rz)``, ``n = tanh(x wx_n + bx_n + r * (prev_h wh_n + bh_n))``,
    ``next_h = (1 - z) * n + z * prev_h``.

    params: ``{"wx": (D, 3H), "wh": (H, 3H), "bx": (3H,), "bh": (3H,)}``; x: ``(x (N, D), prev_h (N, H))``.
    Returns ``next_h (N, H)`` and ``vjp(dnext_h) -> (dparams, (dx, dprev_h))``. PyTorch's ``weight_ih`` is ``wx.T``.
    """
    return _one_step("gru", params, x)


def _sequence(kind: str) -> Callable[[PyTree, Any], tuple[np.ndarray, VJP]]:
    """The sequence layer: the input projection of all steps (one product), then :func:`scan` of the
    recurrence cell from ``h0`` (the LSTM's ``c0`` zero)."""

    def apply(params: PyTree, x: Any) -> tuple[np.ndarray, VJP]:
        p, (xs, h0) = _checked(kind, kind, params, x, ("x", "h0"), seq=True)
        h0 = np.ascontiguousarray(h0)
        carry0 = (h0, np.zeros_like(h0)) if kind == "lstm" else h0
        xw = _project(xs, p["wx"], p[BIASES[kind][0]])
        n, steps, _ = xs.shape
        size = n * steps * h0.shape[1]
        context = Context(forward=Arena(FORWARD_WIDTH[kind] * size, xs.dtype))
        sequence: Any = scan(recurrence(kind, p["wh"], context))  # a tuple input
        # the LSTM's forward product is faster in the transposed order (see _recurrence.recurrence); the others' not
        context.wh_t = np.ascontiguousarray(p["wh"].T) if kind == "lstm" else None
        try:
            (h, _), scan_vjp = sequence(_recurrent_params(kind, p), (carry0, xw))
        finally:
            context.wh_t = None  # made again by the vjp: the closures need not keep it
        out = like(h)  # every step's h is kept by its closure; the stacked copy need not be

        def vjp(dy: Any) -> tuple[PyTree, tuple[np.ndarray, np.ndarray]]:
            (d,) = _dy(kind, dy, (out,), ("dh",))
            context.backward = Arena(BACKWARD_WIDTH[kind] * size, xs.dtype)
            context.wh_t = None if kind == "lstm" else np.ascontiguousarray(p["wh"].T)  # the LSTM's is faster without
            try:
                rec, (dcarry0, dxw) = scan_vjp((_time_major(d), None))
            finally:
                context.backward = context.wh_t = None
            dwx, db, dx = _input_grads(xs, p["wx"], dxw)
            return _all_grads(kind, dwx, db, rec), (dx, dcarry0[0] if kind == "lstm" else dcarry0)

        return h, vjp  # type: ignore[return-value]

    return apply


_SEQUENCE_DOC = """``{kind}`` over a whole sequence, the course's ``{course}``{extra}.

params: ``{params}``; x: the tuple ``(x (N, T, D), h0 (N, H))``. Returns ``h (N, T, H)``, the hidden
state of every step, and ``vjp(dh) -> (dparams, (dx, dh0))`` (backprop through time).
"""


def _step_shape(kind: str, name: str) -> Callable[[Any], Any]:
    count = 3 if kind == "lstm" else 2

    def out_shape(shape: Any) -> Any:
        parts = tuple_input(name, shape, ("x", "prev_h", "prev_c")[:count], "the input shape")
        (d,), (hidden,), *rest = [example_shape(name, s, 1, "((D,), (H,)[, (H,)])") for s in parts]
        if any(r != (hidden,) for r in rest):
            raise ValueError(f"{name}: prev_h and prev_c must have one width, got input shape {shape}")
        return ((hidden,), (hidden,)) if kind == "lstm" else (hidden,)

    return out_shape


def _sequence_shape(name: str) -> Callable[[Any], Any]:
    def out_shape(shape: Any) -> Any:
        xs, h0 = tuple_input(name, shape, ("x", "h0"), "the input shape")
        (t, _), (hidden,) = example_shape(name, xs, 2, "(T, D)"), example_shape(name, h0, 1, "(H,)")
        return (t, hidden)

    return out_shape


rnn_step = Layer(
    _rnn_step, "rnn_step", param_keys=("wx", "wh", "b"), out_shape=_step_shape("rnn", "rnn_step"), op="rnn_step"
)
lstm_step = Layer(
    _lstm_step, "lstm_step", param_keys=("wx", "wh", "b"), out_shape=_step_shape("lstm", "lstm_step"), op="lstm_step"
)
gru_step = Layer(
    _gru_step, "gru_step", param_keys=("wx", "wh", "bx", "bh"), out_shape=_step_shape("gru", "gru_step"), op="gru_step"
)


def _sequence_layer(kind: str, course: str, extra: str, params: str) -> Layer:
    doc = _SEQUENCE_DOC.format(kind=kind, course=course, extra=extra, params=params)
    return Layer(
        _sequence(kind), kind, param_keys=("wx", "wh", *BIASES[kind]), out_shape=_sequence_shape(kind), op=kind, doc=doc
    )


rnn = _sequence_layer("rnn", "rnn_forward", "", '{"wx": (D, H), "wh": (H, H), "b": (H,)}')
lstm = _sequence_layer("lstm", "lstm_forward", "; c0 is zero", '{"wx": (D, 4H), "wh": (H, 4H), "b": (4H,)}')
gru = _sequence_layer("gru", "(none: PyTorch's nn.GRU)", "", '{"wx": (D, 3H), "wh": (H, 3H), "bx": (3H,), "bh": (3H,)}')


def recurrent_std(name: str, weight_scale: WeightScale, fan_in: int) -> float:
    """The standard deviation of a recurrent layer's weight: ``1 / sqrt(fan_in)`` for the default
    ``"he"`` (the course's ``randn(D, H) / sqrt(D)`` and ``randn(H, H) / sqrt(H)``: tanh and sigmoid
    units, not ReLU), or ``weight_scale`` itself when it is a number."""
    if weight_scale == "he":
        return 1.0 / math.sqrt(max(fan_in, 1))
    if isinstance(weight_scale, str) or not weight_scale > 0:
        raise ValueError(f"{name}: weight_scale must be 'he' or a positive number, got {weight_scale!r}")
    return float(weight_scale)


def _sized(base: Layer, kind: str, hidden: int, seq: bool) -> Layer:
    name = f"{base.name}({hidden})"
    hidden = int_at_least(name, "hidden", hidden, 1)
    g = GATES[kind]
    count = 3 if kind == "lstm" and not seq else 2

    def input_size(shape: Any) -> int:
        parts = tuple_input(name, shape, (("x", "h0") if seq else ("x", "prev_h", "prev_c")[:count]), "the input shape")
        xs = example_shape(name, parts[0], 2 if seq else 1, "(T, D)" if seq else "(D,)")
        for part in parts[1:]:
            if example_shape(name, part, 1, "(H,)") != (hidden,):
                raise ValueError(f"{name}: the state's shape must be ({hidden},), got input shape {shape}")
        return xs[-1]

    def out_shape(shape: Any) -> Any:
        input_size(shape)
        return base.out_shape(shape) if base.out_shape else None

    def init(rng: np.random.Generator, shape: Any, dtype: np.dtype, weight_scale: WeightScale) -> tuple[Any, PyTree]:
        d = input_size(shape)
        wx = recurrent_std(name, weight_scale, d) * rng.standard_normal((d, g * hidden))
        wh = recurrent_std(name, weight_scale, hidden) * rng.standard_normal((hidden, g * hidden))
        params = {"wx": wx.astype(dtype), "wh": wh.astype(dtype)}
        params.update({key: np.zeros(g * hidden, dtype) for key in BIASES[kind]})
        return out_shape(shape), params

    def apply(params: PyTree, x: Any) -> tuple[Any, VJP]:
        wh = params.get("wh") if isinstance(params, dict) else None
        if wh is not None and np.shape(wh) != (hidden, g * hidden):
            raise ValueError(
                f"{name}: params['wh'] has shape {np.shape(wh)}, but the layer was declared with hidden={hidden} "
                f"(wh must be ({hidden}, {g * hidden}))"
            )
        return base.apply(params, x)

    return Layer(
        apply,
        name,
        param_keys=base.param_keys,
        init=init,
        out_shape=out_shape,
        op=base.op,
        hparams={"hidden": hidden},
    )


@layer_factory
def rnn_cell(hidden: int) -> Layer:
    """:data:`rnn_step` with its hidden size ``H``, for :func:`funcnn.init_params` (input shape
    ``((D,), (H,))``); weights ``randn / sqrt(fan_in)`` by default (see :func:`recurrent_std`), bias 0.

    Args:
        hidden: H, the size of the hidden state.

    Returns:
        The vanilla RNN step with its hidden size: ``(x (N, D), prev_h (N, H)) -> next_h``.
    """
    return _sized(rnn_step, "rnn", hidden, False)


@layer_factory
def lstm_cell(hidden: int) -> Layer:
    """:data:`lstm_step` with its hidden size ``H`` (input shape ``((D,), (H,), (H,))``), as :func:`rnn_cell`.

    Args:
        hidden: H, the size of the hidden and cell states.

    Returns:
        The LSTM step with its hidden size: ``(x, prev_h, prev_c) -> (next_h, next_c)``.
    """
    return _sized(lstm_step, "lstm", hidden, False)


@layer_factory
def gru_cell(hidden: int) -> Layer:
    """:data:`gru_step` with its hidden size ``H`` (input shape ``((D,), (H,))``), as :func:`rnn_cell`.

    Args:
        hidden: H, the size of the hidden state.

    Returns:
        The GRU step with its hidden size: ``(x (N, D), prev_h (N, H)) -> next_h``.
    """
    return _sized(gru_step, "gru", hidden, False)


@layer_factory
def rnn_layer(hidden: int) -> Layer:
    """:data:`rnn` with its hidden size ``H``, for :func:`funcnn.init_params`: input shape
    ``((T, D), (H,))``, output ``(T, H)``; weights ``randn / sqrt(fan_in)`` by default, bias 0.

    Args:
        hidden: H, the size of the hidden state.

    Returns:
        The vanilla RNN over a sequence with its hidden size: ``(x (N, T, D), h0 (N, H)) -> h (N, T, H)``.

    >>> _, params = fn.init_params(fn.lstm_layer(8), np.random.default_rng(0), ((5, 3), (8,)))
    >>> {key: value.shape for key, value in params.items()}
    {'wx': (3, 32), 'wh': (8, 32), 'b': (32,)}
    """
    return _sized(rnn, "rnn", hidden, True)


@layer_factory
def lstm_layer(hidden: int) -> Layer:
    """:data:`lstm` with its hidden size ``H`` (input shape ``((T, D), (H,))``), as :func:`rnn_layer`.

    Args:
        hidden: H, the size of the hidden and cell states.

    Returns:
        The LSTM over a sequence with its hidden size: ``(x (N, T, D), h0 (N, H)) -> h (N, T, H)``.
    """
    return _sized(lstm, "lstm", hidden, True)


@layer_factory
def gru_layer(hidden: int) -> Layer:
    """:data:`gru` with its hidden size ``H`` (input shape ``((T, D), (H,))``), as :func:`rnn_layer`.

    Args:
        hidden: H, the size of the hidden state.

    Returns:
        The GRU over a sequence with its hidden size: ``(x (N, T, D), h0 (N, H)) -> h (N, T, H)``.
    """
    return _sized(gru, "gru", hidden, True)
