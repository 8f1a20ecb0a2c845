"""The ONNX exporters of the single-input attention layers in :data:`funcnn.export.EXPORTERS` (opset 17):
``self_attention``, ``temporal_layer_norm``, ``positional_encoding`` and ``transformer_encoder_layer``
(its mask, when causal, a constant of the graph). The graph's ``g.weight(array, hint, dtype)`` and
``g.node(op_type, inputs, **attributes)`` give the names of new values; x is ``(N, S, E)``.
Multi-head attention and the decoder layer take tuple inputs, which ``to_onnx``'s one input cannot feed.
"""

from __future__ import annotations

import math
from typing import Any, Protocol

import numpy as np

from funcnn.core import Layer, Shape, State, output_shape
from funcnn.export._onnx import exporter
from funcnn.layers import causal_mask, positional_encoding
from funcnn.tree import PyTree


class Graph(Protocol):
    """What an exporter needs of the graph being built (``funcnn.export``'s)."""

    dtype: np.dtype

    def weight(self, array: Any, hint: str, dtype: Any = None) -> str: ...

    def node(self, op_type: str, inputs: list[str], **attributes: Any) -> str: ...


def _affine(g: Graph, x: str, p: PyTree, scale: float = 1.0) -> str:
    """``x @ (w * scale) + b * scale`` on the last axis."""
    w = g.weight(np.asarray(p["w"]) * scale, "w")
    return g.node("Add", [g.node("MatMul", [x, w]), g.weight(np.asarray(p["b"]) * scale, "b")])


def _attention(g: Graph, x: str, p: PyTree, shape: tuple[int, ...], heads: int, causal: bool) -> str:
    """Self-attention of ``x (N, S, E)``: the nodes of :func:`funcnn.self_attention`."""
    s, e = shape
    dh = e // heads
    split = g.weight([0, s, heads, dh], "shape", np.int64)

    def by_head(name: str, perm: list[int], scale: float = 1.0) -> str:
        return g.node("Transpose", [g.node("Reshape", [_affine(g, x, p[name], scale), split])], perm=perm)

    q = by_head("query", [0, 2, 1, 3], 1 / math.sqrt(dh))  # (N, h, S, Dh), scaled as funcnn scales it
    k = by_head("key", [0, 2, 3, 1])  # (N, h, Dh, S)
    v = by_head("value", [0, 2, 1, 3])
    scores = g.node("MatMul", [q, k])
    if causal:
        mask = g.weight(causal_mask(s), "mask", np.bool_)
        scores = g.node("Where", [mask, scores, g.weight(-np.inf, "minus_inf")])
    o = g.node("MatMul", [g.node("Softmax", [scores], axis=-1), v])
    joined = g.node("Reshape", [g.node("Transpose", [o], perm=[0, 2, 1, 3]), g.weight([0, s, e], "shape", np.int64)])
    return _affine(g, joined, p["proj"])


def _norm(g: Graph, x: str, p: PyTree, eps: float) -> str:
    gamma, beta = g.weight(p["gamma"], "gamma"), g.weight(p["beta"], "beta")
    return g.node("LayerNormalization", [x, gamma, beta], axis=-1, epsilon=eps)


def _encoder(g: Graph, x: str, p: PyTree, shape: tuple[int, ...], hp: Any) -> str:
    """PyTorch's encoder layer: post-norm ``norm(x + block(x))`` or pre-norm ``x + block(norm(x))``."""
    eps, norm_first = float(hp["eps"]), bool(hp["norm_first"])

    def attention(h: str) -> str:
        return _attention(g, h, p["self_attn"], shape, int(hp["num_heads"]), bool(hp["causal"]))

    def feed_forward(h: str) -> str:
        return _affine(g, g.node("Relu", [_affine(g, h, p["ffn1"])]), p["ffn2"])

    for norm, block in (("norm1", attention), ("norm2", feed_forward)):
        if norm_first:
            x = g.node("Add", [x, block(_norm(g, x, p[norm], eps))])
        else:
            x = _norm(g, g.node("Add", [x, block(x)]), p[norm], eps)
    return x


def _positional(g: Graph, layer: Any, x: str, shape: tuple[int, ...]) -> str:
    # the table is the layer's own: run it on zeros
    table, _ = positional_encoding(int(layer.hparams["max_len"]))((), np.zeros((1, *shape), g.dtype))
    return g.node("Add", [x, g.weight(table[0], "positions")])


@exporter("self_attention")
def _self_attention(g: Graph, layer: Layer, params: PyTree, state: State, x: str, shape: Shape) -> tuple[str, Shape]:
    hp = layer.hparams
    return _attention(g, x, params, shape, int(hp["num_heads"]), bool(hp["causal"])), output_shape(layer, shape)


@exporter("temporal_layer_norm")
def _temporal_layer_norm(
    g: Graph, layer: Layer, params: PyTree, state: State, x: str, shape: Shape
) -> tuple[str, Shape]:
    return _norm(g, x, params, float(layer.hparams["eps"])), output_shape(layer, shape)


@exporter("positional_encoding")
def _positional_encoding(
    g: Graph, layer: Layer, params: PyTree, state: State, x: str, shape: Shape
) -> tuple[str, Shape]:
    return _positional(g, layer, x, shape), output_shape(layer, shape)


@exporter("transformer_encoder_layer")
def _encoder_layer(g: Graph, layer: Layer, params: PyTree, state: State, x: str, shape: Shape) -> tuple[str, Shape]:
    return _encoder(g, x, params, shape, layer.hparams), output_shape(layer, shape)
