"""The cost rules of the attention layers in :data:`funcnn.analysis.COST_RULES`: FLOPs and the bytes their
vjp keeps, from the op, hyperparameters and shapes alone (their params are counted from their ``init``).

FLOPs for a batch (a multiply-add 2), N examples, S queries, T keys, width E, h heads, feed-forward F:

==========================  =============================================  =====================================
op                          forward                                        backward
==========================  =============================================  =====================================
attention                   ``4*N*E*E*(S+T)`` projections, ``4*N*S*T*E``   twice the products; 4 per weight
                            scores and weighted sum, 5 per weight softmax
temporal_layer_norm         7 per element                                  11 per element
positional_encoding         1 per element                                  0
transformer layers          their attentions, norms, ``4*N*S*E*F`` feed-   the same rules; residual sums 1 per
                            forward, ReLU 1 per hidden, a residual sum 1   element
==========================  =============================================  =====================================

Memory (training mode, dropout off): attention keeps q, k, v, the joined heads ``(N, S, E)``, its weights
``(N, h, S, T)`` (not with ``recompute``) and the negated mask; a layer norm its normalized input and
``1/std`` per row; the feed-forward its input, its hidden values (the ReLU's output, or the dropped one)
and the ReLU's mask (1 bit each). Dropout adds its masks (1 bit each). Measured by ``tests/test_attention.py``.
"""

from __future__ import annotations

import math
from typing import Any

from funcnn.analysis._costs import Cost, cost_rule
from funcnn.core import Layer, Shape

# Cost fields, as Cost takes them: (forward, backward, inner, keeps_input, keeps_output)
CostFields = tuple[int | None, int | None, int | None, bool, bool]


def _sizes(layer: Layer, in_shape: Any) -> tuple[int, int, int, int, int]:
    """``(N, S, T, E, heads)`` of a layer's batched input shape (tuples for the tuple-input layers)."""
    op, hp = layer.op, layer.hparams
    if op == "multi_head_attention":
        (n, s, e), (_, t, _) = in_shape[0], in_shape[1]
    elif op == "transformer_decoder_layer":
        (n, s, e), (_, t, _) = in_shape[0], in_shape[1]
    else:
        n, s, e = in_shape[0] if isinstance(in_shape[0], tuple) else in_shape
        t = s
    return int(n), int(s), int(t), int(e), int(hp["num_heads"])


def _attention(n: int, s: int, t: int, e: int, h: int, masked: bool, recompute: bool, drop: bool) -> list[int]:
    """``[forward, backward, kept elements, kept bytes]`` of one attention (inputs not counted)."""
    weights = n * h * s * t
    forward = 4 * n * e * e * (s + t) + 4 * n * s * t * e + 5 * weights + (2 * weights if drop else 0)
    backward = 8 * n * e * e * (s + t) + 8 * n * s * t * e + 4 * weights + (weights if drop else 0)
    elements = n * s * e + 2 * n * t * e + n * s * e + (0 if recompute else weights)
    extra = (s * t if masked else 0) + (-(-weights // 8) if drop else 0)
    return [forward, backward, elements, extra]


def attention_cost(layer: Layer, in_shape: Any, out_shape: Any, itemsize: int) -> CostFields:
    """The cost fields of an attention layer for a batch (shapes with N)."""
    op, hp = layer.op, layer.hparams
    if op in ("temporal_layer_norm", "positional_encoding"):
        size = math.prod(in_shape)
        if op == "positional_encoding":  # with dropout: its mask, as bits
            drop = bool(hp["dropout"])
            return size + 2 * size * drop, size * drop, -(-size // 8) if drop else 0, False, False
        return 7 * size, 11 * size, (size + size // in_shape[-1]) * itemsize, False, False
    n, s, t, e, h = _sizes(layer, in_shape)
    drop = bool(hp["dropout"])
    if op in ("multi_head_attention", "self_attention"):
        masked = bool(hp.get("causal")) or (op == "multi_head_attention" and len(in_shape) == 4)
        forward, backward, elements, extra = _attention(n, s, t, e, h, masked, bool(hp["recompute"]), drop)
        if op == "multi_head_attention":  # its three inputs, each kept (a tuple input: counted here)
            elements += n * s * e + 2 * n * t * e
        return forward, backward, elements * itemsize + extra, op == "self_attention", False
    f = int(hp["dim_feedforward"])
    rows, hidden = n * s, n * s * f
    masked = bool(hp.get("causal")) or len(in_shape) == (2 if op == "transformer_encoder_layer" else 3)
    recompute = bool(hp["recompute"])
    parts = [_attention(n, s, s, e, h, masked, recompute, drop)]
    if op == "transformer_decoder_layer":
        parts.append(_attention(n, s, t, e, h, False, recompute, drop))
    sublayers = len(parts) + 1
    forward = sum(p[0] for p in parts) + 4 * rows * e * f + hidden + sublayers * (7 * rows * e + rows * e)
    backward = sum(p[1] for p in parts) + 8 * rows * e * f + hidden + sublayers * (11 * rows * e + rows * e)
    # per sub-layer: the norm's x_hat and 1/std; each block's input (post-norm: the layer's input, then
    # the norms' outputs; pre-norm: the norms' outputs); the feed-forward's hidden values for ffn2's dw
    # (the ReLU's output, or with dropout the dropped one) and its ReLU's mask (a bit a hidden value)
    elements = sum(p[2] for p in parts) + sublayers * (rows * e + rows) + hidden
    elements += (sublayers - 1) * rows * e + (rows * e if hp["norm_first"] else 0)
    extra = sum(p[3] for p in parts) + -(-hidden // 8)
    if drop:  # the sub-layers' dropout masks and the feed-forward's inner one
        extra += sublayers * -(-rows * e // 8) + -(-hidden // 8)
    if op == "transformer_decoder_layer":
        elements += n * t * e  # memory, the cross-attention's key and value input (a tuple input)
        if not hp["norm_first"]:
            elements += rows * e  # tgt, the self-attention's input
    keeps_input = op == "transformer_encoder_layer" and not hp["norm_first"]
    return forward, backward, elements * itemsize + extra, keeps_input, False


ATTENTION_OPS = (
    "multi_head_attention",
    "self_attention",
    "temporal_layer_norm",
    "positional_encoding",
    "transformer_encoder_layer",
    "transformer_decoder_layer",
)


@cost_rule(*ATTENTION_OPS)
def _attention_rule(layer: Layer, in_shape: Shape, out_shape: Shape, itemsize: int) -> Cost:
    return Cost(*attention_cost(layer, in_shape, out_shape, itemsize))


@cost_rule("char_transformer", "captioning_transformer")
def _transformer_nets(layer: Layer, in_shape: Shape, out_shape: Shape, itemsize: int) -> Cost:
    """The transformer nets, as the course's sequence nets: not counted."""
    return Cost(None, None, None)
