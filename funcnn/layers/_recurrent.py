"""Recurrent layers with the course's shapes and names (CS231n assignment 3, ``rnn_layers.py``).

Cells (one time step): ``rnn_step``, ``lstm_step``, ``gru_step``, input ``(x (N, D), prev_h (N, H)[,
prev_c (N, H)])``. Sequences: ``rnn``, ``lstm``, ``gru``, input ``(x (N, T, D), h0 (N, H))`` -> ``h (N, T, H)``
(the LSTM's ``c0`` is zero, as in the course). The factories ``rnn_cell(hidden)``, ``lstm_cell``, ``gru_cell``,
``rnn_layer(hidden)``, ``lstm_layer``, ``gru_layer`` know their sizes for :func:`funcnn.init_params`.

Speed: the input projection ``x wx + b`` of all steps is one product before the loop; each step is one
product ``h wh`` plus one fused pass of the gate arithmetic (``funcnn.kernels.recurrent``; the LSTM's
tanh and sigmoids in NumPy's SIMD tanh); the weight
gradients are one product each after the loop, over all steps at once (no array per step).
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
    same_dtype,
    tuple_input,
)
from funcnn.core import VJP, Layer, WeightScale, layer_factory
from funcnn.kernels.recurrent import gru_backward_step, gru_forward_step, lstm_backward_step, lstm_forward_step
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


def _dy(name: str, dy: Any, outs: tuple[np.ndarray, ...], names: tuple[str, ...]) -> list[np.ndarray]:
    """A vjp's cotangent: one array per output (a single one when the layer has one output); None is zero."""
    parts = (dy,) if len(outs) == 1 else tuple_input(name + " vjp", dy, names, "dy")
    return [np.zeros_like(y) if d is None else cotangent(name, d, y) for d, y in zip(parts, outs)]


def _previous(h0: np.ndarray, h: np.ndarray) -> np.ndarray:
    """``(N*T, H)``: the state each step starts from (``h0``, then ``h`` of the steps before)."""
    return np.concatenate([h0[:, None], h[:, :-1]], axis=1).reshape(-1, h.shape[2])


def _input_grads(x: np.ndarray, wx: np.ndarray, dxa: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(dwx, db, dx)`` of the input projection ``x wx + b`` of every step, from its cotangent ``dxa``."""
    n, t, d = x.shape
    dxa2 = dxa.reshape(n * t, -1)
    return x.reshape(n * t, d).T @ dxa2, dxa2.sum(axis=0), (dxa2 @ wx.T).reshape(x.shape)


def _project(x: np.ndarray, wx: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``x wx + b`` for all steps at once: ``(N, T, D)`` -> ``(N, T, G)``."""
    n, t, d = x.shape
    projected: np.ndarray = (x.reshape(n * t, d) @ wx + b).reshape(n, t, -1)
    return projected


def _rnn_core(
    params: dict[str, np.ndarray], x: np.ndarray, h0: np.ndarray
) -> tuple[np.ndarray, Callable[[np.ndarray], tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]]]:
    wx, wh, b = params["wx"], params["wh"], params["b"]
    xw = _project(x, wx, b)
    n, t, hidden = xw.shape
    h = np.empty_like(xw)
    prev = h0
    for s in range(t):
        a = prev @ wh
        np.add(a, xw[:, s], out=a)
        np.tanh(a, out=h[:, s])
        prev = h[:, s]

    def back(dh: np.ndarray) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
        da = np.empty_like(h)
        rec = np.zeros_like(h0)
        for s in reversed(range(t)):
            np.add(dh[:, s], rec, out=rec)
            np.multiply(rec, 1 - h[:, s] * h[:, s], out=da[:, s])
            np.matmul(da[:, s], wh.T, out=rec)
        dwx, db, dx = _input_grads(x, wx, da)
        return {"wx": dwx, "wh": _previous(h0, h).T @ da.reshape(n * t, hidden), "b": db}, dx, rec

    return h, back


def _lstm_core(
    params: dict[str, np.ndarray], x: np.ndarray, h0: np.ndarray, c0: np.ndarray
) -> tuple[np.ndarray, np.ndarray, Callable[..., tuple[dict[str, np.ndarray], np.ndarray, np.ndarray, np.ndarray]]]:
    wx, wh, b = params["wx"], params["wh"], params["b"]
    xw = _project(x, wx, b)
    n, t, g = xw.shape
    hidden = g // 4
    h, c, tanh_c = (np.empty((n, t, hidden), x.dtype) for _ in range(3))
    gates, hw = np.empty_like(xw), np.empty((n, g), x.dtype)
    prev_h, prev_c = h0, c0
    for s in range(t):
        np.matmul(prev_h, wh, out=hw)
        np.add(hw, xw[:, s], out=hw)
        hw[:, : 3 * hidden] *= 0.5  # sigmoid(a) = (1 + tanh(a / 2)) / 2
        np.tanh(hw, out=hw)
        lstm_forward_step(hw, prev_c, gates[:, s], c[:, s])
        np.tanh(c[:, s], out=tanh_c[:, s])
        np.multiply(gates[:, s, 2 * hidden : 3 * hidden], tanh_c[:, s], out=h[:, s])
        prev_h, prev_c = h[:, s], c[:, s]

    def back(dh: np.ndarray, dc_last: np.ndarray) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray, np.ndarray]:
        da = np.empty_like(gates)
        rec, dc = np.zeros_like(h0), np.array(dc_last, order="C")
        for s in reversed(range(t)):
            lstm_backward_step(gates[:, s], c[:, s - 1] if s else c0, tanh_c[:, s], dh[:, s], rec, dc, da[:, s])
            np.matmul(da[:, s], wh.T, out=rec)
        dwx, db, dx = _input_grads(x, wx, da)
        return {"wx": dwx, "wh": _previous(h0, h).T @ da.reshape(n * t, g), "b": db}, dx, rec, dc

    return h, c, back


def _gru_core(
    params: dict[str, np.ndarray], x: np.ndarray, h0: np.ndarray
) -> tuple[np.ndarray, Callable[[np.ndarray], tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]]]:
    wx, wh, bx, bh = params["wx"], params["wh"], params["bx"], params["bh"]
    xa = _project(x, wx, bx)
    n, t, g = xa.shape
    hidden = g // 3
    h, gates, ha = np.empty((n, t, hidden), x.dtype), np.empty_like(xa), np.empty_like(xa)
    prev = h0
    for s in range(t):
        np.add(prev @ wh, bh, out=ha[:, s])
        gru_forward_step(xa[:, s], ha[:, s], prev, gates[:, s], h[:, s])
        prev = h[:, s]

    def back(dh: np.ndarray) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
        dxa, dha = np.empty_like(gates), np.empty_like(gates)  # not of xa, which the closure need not keep
        rec, direct = np.zeros_like(h0), np.empty_like(h0)
        for s in reversed(range(t)):
            gru_backward_step(
                gates[:, s], ha[:, s], h[:, s - 1] if s else h0, dh[:, s], rec, dxa[:, s], dha[:, s], direct
            )
            np.matmul(dha[:, s], wh.T, out=rec)
            rec += direct
        dwx, dbx, dx = _input_grads(x, wx, dxa)
        dha2 = dha.reshape(n * t, g)
        return {"wx": dwx, "wh": _previous(h0, h).T @ dha2, "bx": dbx, "bh": dha2.sum(axis=0)}, dx, rec

    return h, back


def _one_step(kind: str, core: Callable[..., Any], params: PyTree, x: Any) -> tuple[np.ndarray, VJP]:
    """The vanilla or GRU cell: its sequence core run over one step."""
    name = f"{kind}_step"
    p, (x0, prev_h) = _checked(name, kind, params, x, ("x", "prev_h"), seq=False)
    h, back = core(p, x0[:, None], prev_h)
    next_h = h[:, 0]

    def vjp(dy: Any) -> tuple[PyTree, tuple[np.ndarray, np.ndarray]]:
        (d,) = _dy(name, dy, (next_h,), ("dnext_h",))
        dp, dx, dprev = back(d[:, None])
        return dp, (dx[:, 0], dprev)

    return next_h, vjp  # type: ignore[return-value]


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
    return _one_step("rnn", _rnn_core, params, x)


def _lstm_step(params: PyTree, x: Any) -> tuple[Any, VJP]:
    """One LSTM step, the course's ``lstm_step_forward``; gates ``a = x wx + prev_h wh + b`` split in the
    order i, f, o, g: ``next_c = f * prev_c + i * g``, ``next_h = o * tanh(next_c)``.

    params: ``{"wx": (D, 4H), "wh": (H, 4H), "b": (4H,)}``; x: ``(x (N, D), prev_h (N, H), prev_c (N, H))``.
    Returns ``(next_h, next_c)`` and ``vjp((dnext_h, dnext_c)) -> (dparams, (dx, dprev_h, dprev_c))``
    (a ``None`` cotangent counts as zero).
    """
    p, (x0, prev_h, prev_c) = _checked("lstm_step", "lstm", params, x, ("x", "prev_h", "prev_c"), seq=False)
    h, c, back = _lstm_core(p, x0[:, None], prev_h, prev_c)
    out = (h[:, 0], c[:, 0])

    def vjp(dy: Any) -> tuple[PyTree, tuple[np.ndarray, np.ndarray, np.ndarray]]:
        dh, dc = _dy("lstm_step", dy, out, ("dnext_h", "dnext_c"))
        dp, dx, dprev_h, dprev_c = back(dh[:, None], dc)
        return dp, (dx[:, 0], dprev_h, dprev_c)

    return out, vjp  # type: ignore[return-value]


def _gru_step(params: PyTree, x: Any) -> tuple[np.ndarray, VJP]:
    """One GRU step with PyTorch's equations (``torch.nn.GRUCell``), gates in the order r, z, n:
    ``r, z = sigmoid(x wx_rz + bx_rz + prev_h wh_rz + bh_rz)``, ``n = tanh(x wx_n + bx_n + r * (prev_h wh_n + bh_n))``,
    ``next_h = (1 - z) * n + z * prev_h``.

    params: ``{"wx": (D, 3H), "wh": (H, 3H), "bx": (3H,), "bh": (3H,)}``; x: ``(x (N, D), prev_h (N, H))``.
    Returns ``next_h (N, H)`` and ``vjp(dnext_h) -> (dparams, (dx, dprev_h))``. PyTorch's ``weight_ih`` is ``wx.T``.
    """
    return _one_step("gru", _gru_core, params, x)


SequenceBack = Callable[[np.ndarray], tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]]


def _lstm_from_zero(params: dict[str, np.ndarray], x: np.ndarray, h0: np.ndarray) -> tuple[np.ndarray, SequenceBack]:
    """The LSTM over a sequence with ``c0 = 0``, its last cell's cotangent 0 (the course's ``lstm_forward``)."""
    h, _, lstm_back = _lstm_core(params, x, h0, np.zeros_like(h0))

    def back(dh: np.ndarray) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
        dp, dx, dh0, _ = lstm_back(dh, np.zeros_like(h0))
        return dp, dx, dh0

    return h, back


def _sequence(kind: str) -> Callable[[PyTree, Any], tuple[np.ndarray, VJP]]:
    core = {"rnn": _rnn_core, "lstm": _lstm_from_zero, "gru": _gru_core}[kind]

    def apply(params: PyTree, x: Any) -> tuple[np.ndarray, VJP]:
        p, (xs, h0) = _checked(kind, kind, params, x, ("x", "h0"), seq=True)
        h, back = core(p, xs, h0)

        def vjp(dy: Any) -> tuple[PyTree, tuple[np.ndarray, np.ndarray]]:
            (d,) = _dy(kind, dy, (h,), ("dh",))
            dp, dx, dh0 = back(d)
            return dp, (dx, dh0)

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
