"""Export a network to ONNX (needs the ``onnx`` extra), in evaluation mode: batch norms with their
running statistics, dropout as the identity. One graph, with a dynamic batch axis ``N``; a layer taking
a tuple input gets one graph input per entry, named and typed as :data:`INPUTS` says."""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from funcnn._checks import checked_input_shape, output_size
from funcnn.core import Layer, OpRules, Shape, State, output_shape, run
from funcnn.layers import children_parts, init_state
from funcnn.tree import PyTree, tree_leaves

__all__ = ["EXPORTERS", "INPUTS", "NOT_EXPORTABLE", "OPSET", "exporter", "to_onnx"]

OPSET = 17  # LayerNormalization's first opset; onnxruntime 1.14 and newer run it
INSTALL_HINT = 'ONNX export needs the onnx extra: pip install "funcnn[onnx]" (from a clone: pip install -e ".[onnx]")'
ACTIVATIONS = {"relu": "Relu", "tanh": "Tanh", "sigmoid": "Sigmoid", "dropout": "Identity", "identity": "Identity"}


def _onnx() -> Any:
    try:
        import onnx
    except ImportError:
        raise ImportError(INSTALL_HINT) from None
    return onnx


class _Graph:
    """The nodes and weights of the graph being built; every value gets a fresh name."""

    def __init__(self, onnx: Any, dtype: np.dtype) -> None:
        self.onnx, self.dtype = onnx, dtype
        self.element = onnx.helper.np_dtype_to_tensor_dtype(dtype)
        self.nodes: list[Any] = []
        self.weights: list[Any] = []

    def _name(self, hint: str) -> str:
        return f"{hint}_{len(self.nodes) + len(self.weights)}"

    def weight(self, array: Any, hint: str, dtype: Any = None) -> str:
        name = self._name(hint)
        self.weights.append(self.onnx.numpy_helper.from_array(np.asarray(array, dtype=dtype or self.dtype), name))
        return name

    def node(self, op_type: str, inputs: list[str], **attributes: Any) -> str:
        output = self._name(op_type.lower())
        self.nodes.append(self.onnx.helper.make_node(op_type, inputs, [output], name=output, **attributes))
        return output


def _pair(value: Any) -> list[int]:
    return [int(v) for v in value] if isinstance(value, (tuple, list)) else [int(value)] * 2


# exporter(g, layer, params, state, x, shape) -> (output, output_shape): the nodes of ``layer`` fed the value
# ``x`` (one example of ``shape``), added to ``g``. A layer taking a tuple input gets a tuple of values and
# a tuple of shapes.
Exporter = Callable[[_Graph, Layer, PyTree, State, Any, Any], tuple[str, Shape]]
EXPORTERS: OpRules[Exporter] = OpRules("ONNX exporter", "@funcnn.export.exporter(op), or list it in NOT_EXPORTABLE")
exporter = EXPORTERS.register
# The built-in ops without an ONNX counterpart here, and why.
NOT_EXPORTABLE = {
    "custom": "a user's function",
    "loss": "a loss needs the labels",
    **dict.fromkeys(("scan", "rnn", "lstm", "gru", "rnn_step", "lstm_step", "gru_step"), "a recurrent layer"),
    **dict.fromkeys(("char_rnn", "captioning_rnn"), "a recurrent net"),
}
# The graph inputs of the ops whose input is not one float array: op -> (name, kind) per entry of the
# input (one entry for a single input, named ``x``), kind "float" (the params' dtype, shape (N, ...)),
# "index" (int64 indices, (N, ...)) or "mask" (bool, no batch axis). A tuple input shorter than its
# entries (no mask) takes the first ones; an op not listed takes float inputs x, or input_0, input_1, ...
INPUTS: dict[str, tuple[tuple[str, str], ...]] = {"word_embedding": (("x", "index"),)}
# The combinators whose input is their first layer's.
FIRST_LAYER_READS = ("chain", "sandwich", "bind", "remat")


@exporter("relu", "tanh", "sigmoid", "dropout", "identity")
def _activation(g: _Graph, layer: Layer, params: PyTree, state: State, x: str, shape: Shape) -> tuple[str, Shape]:
    return g.node(ACTIVATIONS[layer.op], [x]), output_shape(layer, shape)


@exporter("leaky_relu")
def _leaky_relu(g: _Graph, layer: Layer, params: PyTree, state: State, x: str, shape: Shape) -> tuple[str, Shape]:
    return g.node("LeakyRelu", [x], alpha=float(layer.hparams["alpha"])), output_shape(layer, shape)


@exporter("conv")
def _conv(g: _Graph, layer: Layer, params: PyTree, state: State, x: str, shape: Shape) -> tuple[str, Shape]:
    """The output shape from the params: a course-style ``fn.conv(stride, pad)`` has no sizes of its own."""
    w, b = g.weight(params["w"], "w"), g.weight(params["b"], "b")
    pad, stride, w_shape = int(layer.hparams["pad"]), int(layer.hparams["stride"]), np.shape(params["w"])
    out = g.node("Conv", [x, w, b], pads=[pad] * 4, strides=[stride] * 2, kernel_shape=list(w_shape[2:]))
    return out, (w_shape[0], *output_size(layer.name, shape, w_shape[2:], stride, pad, "kernel"))


@exporter("affine")
def _affine(g: _Graph, layer: Layer, params: PyTree, state: State, x: str, shape: Shape) -> tuple[str, Shape]:
    """The output shape from the params: a course-style ``fn.affine`` has no sizes of its own."""
    flat = x if len(shape) == 1 else g.node("Flatten", [x], axis=1)
    out = g.node("Gemm", [flat, g.weight(params["w"], "w"), g.weight(params["b"], "b")])
    return out, (int(np.shape(params["w"])[1]),)


@exporter("max_pool", "avg_pool")
def _pool(g: _Graph, layer: Layer, params: PyTree, state: State, x: str, shape: Shape) -> tuple[str, Shape]:
    hp = layer.hparams
    window, stride = [int(hp["pool_height"]), int(hp["pool_width"])], int(hp["stride"])
    if layer.op == "avg_pool":
        return g.node("AveragePool", [x], kernel_shape=window, strides=[stride] * 2), output_shape(layer, shape)
    return _max_pool(g, x, window, stride), output_shape(layer, shape)


@exporter("global_avg_pool")
def _global_avg_pool(g: _Graph, layer: Layer, params: PyTree, state: State, x: str, shape: Shape) -> tuple[str, Shape]:
    return g.node("Flatten", [g.node("GlobalAveragePool", [x])], axis=1), output_shape(layer, shape)


@exporter("batch_norm", "spatial_batch_norm")
def _batch_norm(g: _Graph, layer: Layer, params: PyTree, state: State, x: str, shape: Shape) -> tuple[str, Shape]:
    inputs = [params["gamma"], params["beta"], state["running_mean"], state["running_var"]]
    names = [g.weight(a, key) for a, key in zip(inputs, ("gamma", "beta", "mean", "var"))]
    return g.node("BatchNormalization", [x, *names], epsilon=float(layer.hparams["eps"])), output_shape(layer, shape)


@exporter("layer_norm")
def _layer_norm(g: _Graph, layer: Layer, params: PyTree, state: State, x: str, shape: Shape) -> tuple[str, Shape]:
    gamma, beta = g.weight(params["gamma"], "gamma"), g.weight(params["beta"], "beta")
    out = g.node("LayerNormalization", [x, gamma, beta], axis=1, epsilon=float(layer.hparams["eps"]))
    return out, output_shape(layer, shape)


@exporter("group_norm")
def _group_norm(g: _Graph, layer: Layer, params: PyTree, state: State, x: str, shape: Shape) -> tuple[str, Shape]:
    """Group norm as a layer norm of each group (``(N, groups, rest)``), then the per-channel scale and shift."""
    groups, eps = int(layer.hparams["groups"]), float(layer.hparams["eps"])
    rest = math.prod(shape) // groups
    grouped = g.node("Reshape", [x, g.weight([0, groups, rest], "shape", np.int64)])
    ones, zeros = g.weight(np.ones(rest), "ones"), g.weight(np.zeros(rest), "zeros")
    normalized = g.node("LayerNormalization", [grouped, ones, zeros], axis=2, epsilon=eps)
    back = g.node("Reshape", [normalized, g.weight([0, *shape], "shape", np.int64)])
    per_channel = (-1,) + (1,) * (len(shape) - 1)
    gamma = g.weight(np.reshape(params["gamma"], per_channel), "gamma")
    beta = g.weight(np.reshape(params["beta"], per_channel), "beta")
    return g.node("Add", [g.node("Mul", [back, gamma]), beta]), output_shape(layer, shape)


@exporter("chain", "sandwich", "bind", "remat")
def _sequence(g: _Graph, layer: Layer, params: PyTree, state: State, x: str, shape: Shape) -> tuple[str, Shape]:
    if layer.op == "bind" and any(child.moded for child in layer.children):
        raise ValueError(f"to_onnx: {layer.name}: export the network itself, with its state, not a bound copy")
    for child, p, s in _children(layer, params, state):
        x, shape = _add(g, child, p, s, x, shape)
    return x, shape


@exporter("fan_out", "residual")
def _sum(g: _Graph, layer: Layer, params: PyTree, state: State, x: str, shape: Shape) -> tuple[str, Shape]:
    """The branches' outputs added (and, for a residual, the input)."""
    outputs, shapes = zip(*(_add(g, child, p, s, x, shape) for child, p, s in _children(layer, params, state)))
    total = x if layer.op == "residual" else outputs[0]
    for output in outputs[layer.op != "residual" :]:
        total = g.node("Add", [total, output])
    return total, shapes[0]


def _children(layer: Layer, params: PyTree, state: State) -> Iterator[tuple[Layer, PyTree, State]]:
    return zip(layer.children, children_parts(layer, params, "params"), children_parts(layer, state, "state"))


def _max_pool(g: _Graph, x: str, window: list[int], stride: int) -> str:
    """MaxPool where a NaN wins its window, as in funcnn (onnxruntime's MaxPool drops a NaN in some
    window positions): ``Where(MaxPool(IsNaN(x)), NaN, MaxPool(x))``."""
    pool = {"kernel_shape": window, "strides": [stride] * 2}
    nan_in_window = g.node("MaxPool", [g.node("Cast", [g.node("IsNaN", [x])], to=g.element)], **pool)
    has_nan = g.node("Cast", [nan_in_window], to=g.onnx.TensorProto.BOOL)
    return g.node("Where", [has_nan, g.weight(np.nan, "nan"), g.node("MaxPool", [x], **pool)])


def _add(g: _Graph, layer: Layer, params: PyTree, state: State, x: Any, shape: Any) -> tuple[str, Shape]:
    """The nodes of ``layer`` (any depth) fed ``x`` (a tuple of values for a tuple input); returns its
    output's name and per-example shape. ``to_onnx`` has checked that every layer exports."""
    return EXPORTERS.of(layer)(g, layer, params, state, x, shape)


def _check_exportable(layer: Layer) -> None:
    """A ValueError naming the first layer (any depth) without an ONNX counterpart."""
    if layer.op in NOT_EXPORTABLE or (layer.out_shape is None and layer.op not in EXPORTERS.ops):
        why = NOT_EXPORTABLE.get(layer.op, "a user's function")
        raise ValueError(
            f"to_onnx: {layer.name} (op {layer.op!r}) has no ONNX counterpart ({why}); export a network made of "
            "funcnn's layers (funcnn.export.EXPORTERS.ops lists the ops that export)"
        )
    for child in layer.children:
        _check_exportable(child)


def _has(layer: Layer, test: Callable[[Layer], bool]) -> bool:
    return test(layer) or any(_has(child, test) for child in layer.children)


def _graph_inputs(net: Layer, shape: Any) -> list[tuple[str, str, tuple[int, ...]]]:
    """``(name, kind, shape)`` of each graph input: one per entry of a tuple input (see :data:`INPUTS`)."""
    reader = net
    while reader.op in FIRST_LAYER_READS and reader.children:
        reader = reader.children[0]
    shapes = shape if shape and isinstance(shape[0], tuple) else (shape,)
    declared = INPUTS.get(reader.op, ())
    if len(declared) < len(shapes):
        declared = (("x", "float"),) if len(shapes) == 1 else tuple((f"input_{i}", "float") for i in range(len(shapes)))
    return [(name, kind, s) for (name, kind), s in zip(declared, shapes)]


def _example(inputs: list[tuple[str, str, tuple[int, ...]]], dtype: np.dtype) -> Any:
    """A valid input of one example: zeros (index 0) and masks letting every query see every key."""
    arrays = [
        np.ones(s, bool) if kind == "mask" else np.zeros((1, *s), np.int64 if kind == "index" else dtype)
        for _, kind, s in inputs
    ]
    return arrays[0] if len(arrays) == 1 else tuple(arrays)


def _value_info(onnx: Any, element: int, name: str, kind: str, shape: tuple[int, ...]) -> Any:
    if kind == "mask":
        return onnx.helper.make_tensor_value_info(name, onnx.TensorProto.BOOL, list(shape))
    element = onnx.TensorProto.INT64 if kind == "index" else element
    return onnx.helper.make_tensor_value_info(name, element, ["N", *shape])


def to_onnx(
    net: Layer,
    params: PyTree,
    input_shape: Any,
    path: str | Path,
    state: State | None = None,
    *,
    overwrite: bool = False,
) -> Path:
    """Write ``net`` with ``params`` (and ``state``: batch norms' running statistics) as an ONNX model
    to ``path``, in evaluation mode. Input ``x`` ``(N, *input_shape)``, output ``y``; ``N`` is dynamic.
    A layer taking a tuple input (``input_shape`` a tuple of shapes) gets one graph input per entry, named
    as :data:`INPUTS` says (``query``, ``key``, ``value``, ``attn_mask`` for multi-head attention): floats
    ``(N, *shape)``, token indices int64 ``(N, *shape)``, masks bool of their own shape (no batch axis).
    The dtype is the params' (onnxruntime 1.32's CPU provider has no float64 Conv: export float32
    params for it). A layer without an ONNX counterpart (a user's function, a loss) is a ValueError
    naming it. An existing file at ``path`` is refused (ValueError) unless ``overwrite``; the model is written
    atomically (a crash leaves the old file or the new one). Needs the ``onnx`` extra. Returns the path written.

    Args:
        net: the network (a layer that knows its shapes).
        params: its params; their dtype is the model's.
        input_shape: one example's shape, without the batch axis; for a tuple input, one shape per entry
            (a mask's shape as it is, e.g. ``(S, T)``).
        path: the ``.onnx`` file to write.
        state: a moded network's state (the running statistics of its batch norms).
        overwrite: replace an existing file.

    Returns:
        The path written.
    """
    path = Path(path)
    if path.exists() and not overwrite:
        raise ValueError(f"to_onnx: {path} already exists; replace it with overwrite=True, or choose another path")
    onnx = _onnx()
    if not isinstance(net, Layer):
        raise TypeError(f"to_onnx: net must be a funcnn Layer, got {net!r}"[:200])
    floats = [leaf for leaf in tree_leaves(params) if np.asarray(leaf).dtype.kind == "f"]
    dtype = np.asarray(floats[0]).dtype if floats else np.dtype(np.float32)
    shape = checked_input_shape("to_onnx", input_shape)
    _check_exportable(net)  # before running it on an example input, which such a layer may not take
    inputs = _graph_inputs(net, shape)
    if state is None:
        if _has(net, lambda layer: layer.op in ("batch_norm", "spatial_batch_norm")):
            raise ValueError(
                f"to_onnx: {net.name} has batch norm: pass its state (the running statistics), e.g. result.best_state"
            )
        state = init_state(net, shape, dtype)
    # params or state that do not fit: the layer says
    zero_run, _, _ = run(net, params, _example(inputs, dtype), state, train=False)
    g = _Graph(onnx, dtype)
    names = inputs[0][0] if len(inputs) == 1 else tuple(name for name, _, _ in inputs)
    y, out_shape = _add(g, net, params, state, names, shape)
    if tuple(out_shape) != zero_run.shape[1:]:
        raise ValueError(
            f"to_onnx: {net.name}: its layers' shape rules give an output of shape {tuple(out_shape)} per example, "
            f"but running it gives {zero_run.shape[1:]}: a layer's out_shape does not match what it computes"
        )
    g.nodes.append(onnx.helper.make_node("Identity", [y], ["y"], name="y"))
    element = g.element
    graph = onnx.helper.make_graph(
        g.nodes, net.name[:200], [_value_info(onnx, element, *entry) for entry in inputs],
        [onnx.helper.make_tensor_value_info("y", element, ["N", *out_shape])], g.weights,
    )  # fmt: skip
    model = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", OPSET)], producer_name="funcnn")
    model.ir_version = 8  # opset 17's; read by onnxruntime 1.14 and newer
    onnx.checker.check_model(model, full_check=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        onnx.save(model, str(tmp))
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path
