"""Export a network to ONNX (needs the ``onnx`` extra), in evaluation mode: batch norms with their
running statistics, dropout as the identity. One graph, with a dynamic batch axis ``N``."""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from funcnn.attention_onnx import EXPORTERS as ATTENTION_EXPORTERS
from funcnn.combinators import children_parts
from funcnn.core import Layer, Shape, State, run
from funcnn.init import init_state
from funcnn.tree import PyTree, tree_leaves
from funcnn.validation import checked_input_shape, output_size

__all__ = ["OPSET", "to_onnx"]

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


def _leaf(g: _Graph, layer: Layer, params: PyTree, state: State, x: str, shape: Shape) -> str:
    """The nodes of one leaf layer fed ``x`` (one example of ``shape``); returns its output's name."""
    op, hp = layer.op, layer.hparams
    if op in ATTENTION_EXPORTERS:
        return ATTENTION_EXPORTERS[op](g, layer, params, x, shape)
    if op in ACTIVATIONS:
        return g.node(ACTIVATIONS[op], [x])
    if op == "leaky_relu":
        return g.node("LeakyRelu", [x], alpha=float(hp["alpha"]))
    if op == "conv":
        w, b = g.weight(params["w"], "w"), g.weight(params["b"], "b")
        pad, stride = int(hp["pad"]), int(hp["stride"])
        kernel = list(np.shape(params["w"])[2:])
        return g.node("Conv", [x, w, b], pads=[pad] * 4, strides=[stride] * 2, kernel_shape=kernel)
    if op == "affine":
        flat = x if len(shape) == 1 else g.node("Flatten", [x], axis=1)
        return g.node("Gemm", [flat, g.weight(params["w"], "w"), g.weight(params["b"], "b")])
    if op in ("max_pool", "avg_pool"):
        window, stride = [int(hp["pool_height"]), int(hp["pool_width"])], int(hp["stride"])
        if op == "avg_pool":
            return g.node("AveragePool", [x], kernel_shape=window, strides=[stride] * 2)
        return _max_pool(g, x, window, stride)
    if op == "global_avg_pool":
        return g.node("Flatten", [g.node("GlobalAveragePool", [x])], axis=1)
    if op in ("batch_norm", "spatial_batch_norm"):
        inputs = [params["gamma"], params["beta"], state["running_mean"], state["running_var"]]
        names = [g.weight(a, key) for a, key in zip(inputs, ("gamma", "beta", "mean", "var"))]
        return g.node("BatchNormalization", [x, *names], epsilon=float(hp["eps"]))
    if op == "layer_norm":
        gamma, beta = g.weight(params["gamma"], "gamma"), g.weight(params["beta"], "beta")
        return g.node("LayerNormalization", [x, gamma, beta], axis=1, epsilon=float(hp["eps"]))
    if op == "group_norm":
        return _group_norm(g, params, x, shape, int(hp["groups"]), float(hp["eps"]))
    raise ValueError(
        f"to_onnx: {layer.name} (op {op!r}) has no ONNX counterpart; export a network made of funcnn's layers "
        "(conv, affine, activations, pools, norms, dropout, chain, sandwich, fan_out, residual)"
    )


def _max_pool(g: _Graph, x: str, window: list[int], stride: int) -> str:
    """MaxPool where a NaN wins its window, as in funcnn (onnxruntime's MaxPool drops a NaN in some
    window positions): ``Where(MaxPool(IsNaN(x)), NaN, MaxPool(x))``."""
    pool = {"kernel_shape": window, "strides": [stride] * 2}
    nan_in_window = g.node("MaxPool", [g.node("Cast", [g.node("IsNaN", [x])], to=g.element)], **pool)
    has_nan = g.node("Cast", [nan_in_window], to=g.onnx.TensorProto.BOOL)
    return g.node("Where", [has_nan, g.weight(np.nan, "nan"), g.node("MaxPool", [x], **pool)])


def _group_norm(g: _Graph, params: PyTree, x: str, shape: Shape, groups: int, eps: float) -> str:
    """Group norm as a layer norm of each group (``(N, groups, rest)``), then the per-channel scale and shift."""
    rest = math.prod(shape) // groups
    grouped = g.node("Reshape", [x, g.weight([0, groups, rest], "shape", np.int64)])
    ones, zeros = g.weight(np.ones(rest), "ones"), g.weight(np.zeros(rest), "zeros")
    normalized = g.node("LayerNormalization", [grouped, ones, zeros], axis=2, epsilon=eps)
    back = g.node("Reshape", [normalized, g.weight([0, *shape], "shape", np.int64)])
    per_channel = (-1,) + (1,) * (len(shape) - 1)
    gamma = g.weight(np.reshape(params["gamma"], per_channel), "gamma")
    return g.node("Add", [g.node("Mul", [back, gamma]), g.weight(np.reshape(params["beta"], per_channel), "beta")])


def _add(g: _Graph, layer: Layer, params: PyTree, state: State, x: str, shape: Shape) -> tuple[str, Shape]:
    """The nodes of ``layer`` (any depth) fed ``x``; returns its output's name and per-example shape."""
    if layer.out_shape is None:
        raise ValueError(f"to_onnx: {layer.name} has no ONNX counterpart (a user's function)")
    if not layer.children:
        return _leaf(g, layer, params, state, x, shape), _leaf_shape(layer, params, shape)
    if layer.op == "bind" and any(child.moded for child in layer.children):
        raise ValueError(f"to_onnx: {layer.name}: export the network itself, with its state, not a bound copy")
    pairs = zip(layer.children, children_parts(layer, params, "params"), children_parts(layer, state, "state"))
    if layer.op in ("chain", "sandwich", "bind", "remat"):
        for child, p, s in pairs:
            x, shape = _add(g, child, p, s, x, shape)
        return x, shape
    outputs, shapes = zip(*(_add(g, child, p, s, x, shape) for child, p, s in pairs))
    total = x if layer.op == "residual" else outputs[0]
    for output in outputs[layer.op != "residual" :]:
        total = g.node("Add", [total, output])
    return total, shapes[0]


def _leaf_shape(layer: Layer, params: PyTree, shape: Shape) -> Shape:
    """A leaf's output shape for one example of ``shape``: conv's and affine's from their params (a
    course-style ``fn.affine`` or ``fn.conv(stride, pad)`` has no sizes of its own), the others' rule."""
    if layer.op == "affine":
        return (int(np.shape(params["w"])[1]),)
    if layer.op == "conv":
        hp, w_shape = layer.hparams, np.shape(params["w"])
        return w_shape[0], *output_size(layer.name, shape, w_shape[2:], int(hp["stride"]), int(hp["pad"]), "kernel")
    assert layer.out_shape is not None  # checked by _add
    return layer.out_shape(shape)


def _has(layer: Layer, test: Callable[[Layer], bool]) -> bool:
    return test(layer) or any(_has(child, test) for child in layer.children)


def to_onnx(
    net: Layer,
    params: PyTree,
    input_shape: Shape,
    path: str | Path,
    state: State | None = None,
    *,
    overwrite: bool = False,
) -> Path:
    """Write ``net`` with ``params`` (and ``state``: batch norms' running statistics) as an ONNX model
    to ``path``, in evaluation mode. Input ``x`` ``(N, *input_shape)``, output ``y``; ``N`` is dynamic.
    The dtype is the params' (onnxruntime 1.32's CPU provider has no float64 Conv: export float32
    params for it). A layer without an ONNX counterpart (a user's function, a loss) is a ValueError
    naming it. An existing file at ``path`` is refused (ValueError) unless ``overwrite``; the model is written
    atomically (a crash leaves the old file or the new one). Needs the ``onnx`` extra. Returns the path written."""
    path = Path(path)
    if path.exists() and not overwrite:
        raise ValueError(f"to_onnx: {path} already exists; replace it with overwrite=True, or choose another path")
    onnx = _onnx()
    if not isinstance(net, Layer):
        raise TypeError(f"to_onnx: net must be a funcnn Layer, got {net!r}"[:200])
    floats = [leaf for leaf in tree_leaves(params) if np.asarray(leaf).dtype.kind == "f"]
    dtype = np.asarray(floats[0]).dtype if floats else np.dtype(np.float32)
    shape = checked_input_shape("to_onnx", input_shape)
    if shape and isinstance(shape[0], tuple):
        raise ValueError(f"to_onnx: {net.name} takes a tuple input {shape}; the exported graph has one input x")
    if state is None:
        if _has(net, lambda layer: layer.op in ("batch_norm", "spatial_batch_norm")):
            raise ValueError(
                f"to_onnx: {net.name} has batch norm: pass its state (the running statistics), e.g. result.best_state"
            )
        state = init_state(net, shape, dtype)
    # params or state that do not fit: the layer says
    zero_run, _, _ = run(net, params, np.zeros((1, *shape), dtype), state, train=False)
    g = _Graph(onnx, dtype)
    y, out_shape = _add(g, net, params, state, "x", shape)
    if tuple(out_shape) != zero_run.shape[1:]:
        raise ValueError(
            f"to_onnx: {net.name}: its layers' shape rules give an output of shape {tuple(out_shape)} per example, "
            f"but running it gives {zero_run.shape[1:]}: a layer's out_shape does not match what it computes"
        )
    g.nodes.append(onnx.helper.make_node("Identity", [y], ["y"], name="y"))
    element = g.element
    graph = onnx.helper.make_graph(
        g.nodes, net.name[:200], [onnx.helper.make_tensor_value_info("x", element, ["N", *shape])],
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
