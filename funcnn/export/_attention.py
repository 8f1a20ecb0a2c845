"""The ONNX exporters of the attention layers and nets in :data:`funcnn.export.EXPORTERS` (opset 17):
``multi_head_attention``, ``self_attention``, ``temporal_layer_norm``, ``positional_encoding``,
``transformer_encoder_layer``, ``transformer_decoder_layer``, ``word_embedding`` (Gather),
``temporal_affine``, and the nets ``char_transformer`` and ``captioning_transformer``. A mask is an input of
the graph (bool, True where query i may attend to key j) or, when causal, a constant. The graph's
``g.weight(array, hint, dtype)`` and ``g.node(op_type, inputs, **attributes)`` give the names of new values.
"""

from __future__ import annotations

import math
from typing import Any, Protocol

import numpy as np

from funcnn.core import Layer, Shape, State, output_shape
from funcnn.export._onnx import INPUTS, exporter
from funcnn.layers import (
    causal_mask,
    positional_encoding,
    temporal_layer_norm,
    transformer_decoder_layer,
    transformer_encoder_layer,
)
from funcnn.tree import PyTree

INPUTS.update({
    "multi_head_attention": (("query", "float"), ("key", "float"), ("value", "float"), ("attn_mask", "mask")),
    "transformer_decoder_layer": (("tgt", "float"), ("memory", "float"), ("tgt_mask", "mask")),
    "char_transformer": (("x", "index"),),
    "captioning_transformer": (("features", "float"), ("captions", "index")),
})  # fmt: skip


class Graph(Protocol):
    """What an exporter needs of the graph being built (``funcnn.export``'s)."""

    dtype: np.dtype

    def weight(self, array: Any, hint: str, dtype: Any = None) -> str: ...

    def node(self, op_type: str, inputs: list[str], **attributes: Any) -> str: ...


def _affine(g: Graph, x: str, p: PyTree, scale: float = 1.0) -> str:
    """``x @ (w * scale) + b * scale`` on the last axis."""
    w = g.weight(np.asarray(p["w"]) * scale, "w")
    return g.node("Add", [g.node("MatMul", [x, w]), g.weight(np.asarray(p["b"]) * scale, "b")])


def _attention(g: Graph, query: str, kv: tuple[str, str], p: PyTree, sizes: tuple[int, int, int], heads: int,
               mask: str | None) -> str:  # fmt: skip
    """The nodes of :func:`funcnn.multi_head_attention` of ``query (N, S, E)`` on ``kv = (key, value)``
    ``(N, T, E)``, ``sizes = (S, T, E)``. Masked scores become the dtype's lowest finite number, not -inf,
    so that a row masking every key (which funcnn refuses) averages the values instead of giving NaN."""
    s, t, e = sizes
    dh = e // heads

    def by_head(x: str, length: int, name: str, perm: list[int], scale: float = 1.0) -> str:
        split = g.weight([0, length, heads, dh], "shape", np.int64)
        return g.node("Transpose", [g.node("Reshape", [_affine(g, x, p[name], scale), split])], perm=perm)

    q = by_head(query, s, "query", [0, 2, 1, 3], 1 / math.sqrt(dh))  # (N, h, S, Dh), scaled as funcnn scales it
    k = by_head(kv[0], t, "key", [0, 2, 3, 1])  # (N, h, Dh, T)
    v = by_head(kv[1], t, "value", [0, 2, 1, 3])
    scores = g.node("MatMul", [q, k])
    if mask is not None:
        scores = g.node("Where", [mask, scores, g.weight(np.finfo(g.dtype).min, "lowest")])
    o = g.node("MatMul", [g.node("Softmax", [scores], axis=-1), v])
    joined = g.node("Reshape", [g.node("Transpose", [o], perm=[0, 2, 1, 3]), g.weight([0, s, e], "shape", np.int64)])
    return _affine(g, joined, p["proj"])


def _causal(g: Graph, length: int) -> str:
    return g.weight(causal_mask(length), "causal_mask", np.bool_)


def _norm(g: Graph, x: str, p: PyTree, eps: float) -> str:
    gamma, beta = g.weight(p["gamma"], "gamma"), g.weight(p["beta"], "beta")
    return g.node("LayerNormalization", [x, gamma, beta], axis=-1, epsilon=eps)


def _sublayers(g: Graph, x: str, p: PyTree, blocks: list[tuple[str, Any]], hp: Any) -> str:
    """PyTorch's sub-layers: post-norm ``norm(x + block(x))`` or pre-norm ``x + block(norm(x))`` each."""
    eps, norm_first = float(hp["eps"]), bool(hp["norm_first"])
    for norm, block in blocks:
        if norm_first:
            x = g.node("Add", [x, block(_norm(g, x, p[norm], eps))])
        else:
            x = _norm(g, g.node("Add", [x, block(x)]), p[norm], eps)
    return x


def _feed_forward(g: Graph, p: PyTree) -> Any:
    return lambda h: _affine(g, g.node("Relu", [_affine(g, h, p["ffn1"])]), p["ffn2"])


def _encoder(g: Graph, x: str, p: PyTree, shape: tuple[int, ...], hp: Any) -> str:
    """The encoder layer of ``x (N, S, E)``: self-attention (causal when ``hp["causal"]``), feed-forward."""
    s, e = shape
    mask = _causal(g, s) if hp["causal"] else None

    def attention(h: str) -> str:
        return _attention(g, h, (h, h), p["self_attn"], (s, s, e), int(hp["num_heads"]), mask)

    return _sublayers(g, x, p, [("norm1", attention), ("norm2", _feed_forward(g, p))], hp)


def _decoder(g: Graph, tgt: str, memory: str, mask: str | None, p: PyTree, shapes: Any, hp: Any) -> str:
    """The decoder layer of ``tgt (N, T, E)`` on ``memory (N, S, E)``: masked self-attention, cross-attention
    on memory, feed-forward."""
    (t, e), (s, _) = shapes[0], shapes[1]
    heads = int(hp["num_heads"])

    def self_attention(h: str) -> str:
        return _attention(g, h, (h, h), p["self_attn"], (t, t, e), heads, mask)

    def cross_attention(h: str) -> str:
        return _attention(g, h, (memory, memory), p["cross_attn"], (t, s, e), heads, None)

    blocks = [("norm1", self_attention), ("norm2", cross_attention), ("norm3", _feed_forward(g, p))]
    return _sublayers(g, tgt, p, blocks, hp)


def _positional(g: Graph, max_len: int, x: str, shape: tuple[int, ...]) -> str:
    # the table is the layer's own: run it on zeros
    table, _ = positional_encoding(max_len)((), np.zeros((1, *shape), g.dtype))
    return g.node("Add", [x, g.weight(table[0], "positions")])


def _embedded(g: Graph, w: Any, x: str) -> str:
    return g.node("Gather", [g.weight(w, "embedding"), x], axis=0)


@exporter("multi_head_attention")
def _multi_head_attention(
    g: Graph, layer: Layer, params: PyTree, state: State, x: Any, shape: Any
) -> tuple[str, Shape]:
    query, key, value, *mask = x
    (s, e), (t, _) = shape[0], shape[1]
    heads = int(layer.hparams["num_heads"])
    return _attention(g, query, (key, value), params, (s, t, e), heads, mask[0] if mask else None), shape[0]


@exporter("self_attention")
def _self_attention(g: Graph, layer: Layer, params: PyTree, state: State, x: str, shape: Shape) -> tuple[str, Shape]:
    (s, e), heads = shape, int(layer.hparams["num_heads"])
    mask = _causal(g, s) if layer.hparams["causal"] else None
    return _attention(g, x, (x, x), params, (s, s, e), heads, mask), output_shape(layer, shape)


@exporter("temporal_layer_norm")
def _temporal_layer_norm(
    g: Graph, layer: Layer, params: PyTree, state: State, x: str, shape: Shape
) -> tuple[str, Shape]:
    return _norm(g, x, params, float(layer.hparams["eps"])), output_shape(layer, shape)


@exporter("positional_encoding")
def _positional_encoding(
    g: Graph, layer: Layer, params: PyTree, state: State, x: str, shape: Shape
) -> tuple[str, Shape]:
    return _positional(g, int(layer.hparams["max_len"]), x, shape), output_shape(layer, shape)


@exporter("transformer_encoder_layer")
def _encoder_layer(g: Graph, layer: Layer, params: PyTree, state: State, x: str, shape: Shape) -> tuple[str, Shape]:
    return _encoder(g, x, params, shape, layer.hparams), output_shape(layer, shape)


@exporter("transformer_decoder_layer")
def _decoder_layer(g: Graph, layer: Layer, params: PyTree, state: State, x: Any, shape: Any) -> tuple[str, Shape]:
    tgt, memory, *mask = x
    return _decoder(g, tgt, memory, mask[0] if mask else None, params, shape, layer.hparams), shape[0]


@exporter("word_embedding")
def _word_embedding(g: Graph, layer: Layer, params: PyTree, state: State, x: str, shape: Shape) -> tuple[str, Shape]:
    """The output shape from the params: the course-style ``fn.word_embedding`` has no sizes of its own."""
    return _embedded(g, params["w"], x), (*shape, int(np.shape(params["w"])[1]))


@exporter("temporal_affine")
def _temporal_affine(g: Graph, layer: Layer, params: PyTree, state: State, x: str, shape: Shape) -> tuple[str, Shape]:
    """The output shape from the params: the course-style ``fn.temporal_affine`` has no sizes of its own."""
    return _affine(g, x, params), (shape[0], int(np.shape(params["w"])[1]))


@exporter("char_transformer")
def _char_transformer(g: Graph, layer: Layer, params: PyTree, state: State, x: str, shape: Shape) -> tuple[str, Shape]:
    """The layers of :func:`funcnn.nets.char_transformer` (made as it makes them): embedding, positions,
    pre-norm causal encoder layers, the final norm and the scores."""
    hp = layer.hparams
    (t,), dim = shape, int(hp["dim"])
    h = _positional(g, int(hp["max_len"]), _embedded(g, params["embed"]["w"], x), (t, dim))
    block = transformer_encoder_layer(int(hp["num_heads"]), int(hp["dim_feedforward"]), norm_first=True, causal=True)
    for p in params["layers"]:
        h = _encoder(g, h, p, (t, dim), block.hparams)
    normed = _norm(g, h, params["norm"], float(temporal_layer_norm().hparams["eps"]))
    return _affine(g, normed, params["out"]), output_shape(layer, shape)


@exporter("captioning_transformer")
def _captioning_transformer(
    g: Graph, layer: Layer, params: PyTree, state: State, x: Any, shape: Any
) -> tuple[str, Shape]:
    """The net of :func:`funcnn.nets.captioning_transformer`: ``(features (N, D), captions (N, T))`` ->
    scores ``(N, T, V)``; the features projected to a memory of one step, post-norm decoder layers with a
    causal mask (a constant)."""
    hp = layer.hparams
    features, captions = x
    t, w = shape[1][0], int(hp["wordvec_dim"])
    memory = g.node("Unsqueeze", [_affine(g, features, params["visual_projection"]), g.weight([1], "axis", np.int64)])
    h = _positional(g, int(hp["max_length"]), _embedded(g, params["embedding"]["w"], captions), (t, w))
    mask = _causal(g, t)
    decoder = transformer_decoder_layer(int(hp["num_heads"]), int(hp["dim_feedforward"]))  # made as the net makes it
    for p in params["layers"]:
        h = _decoder(g, h, memory, mask, p, ((t, w), (1, w)), decoder.hparams)
    return _affine(g, h, params["output"]), (t, int(np.shape(params["output"]["w"])[1]))
