"""What one layer costs, from its op, hyperparameters and shapes alone: parameters, FLOPs, and the
memory its vjp keeps. :func:`funcnn.summary` adds them up through a network.

FLOPs: a multiply-add in a matrix product counts 2; elementwise layers count the arithmetic
operations, comparisons and elementary functions (``exp``, ``tanh``) of their formulas, 1 each per
element; bias additions, the sums giving ``db``, and drawing random numbers are not counted.

==================  =====================================  ==========================================
op                  forward                                backward (dparams and dx)
==================  =====================================  ==========================================
conv                ``2*N*F*H'*W'*C*HH*WW``                twice the forward (``dx`` and ``dw``)
affine              ``2*N*D*M``                            ``4*N*D*M`` (``dx`` and ``dw``)
max_pool            ``(ph*pw - 1)`` per output             1 per output
avg_pool            ``ph*pw`` per output                   ``ph*pw`` per output
global_avg_pool     1 per input                            1 per input
relu                1 per element                          1 per element
leaky_relu          2 per element                          2 per element
tanh                1 per element                          3 per element (``dy * (1 - y*y)``)
sigmoid             8 per element                          1 per element (the slope is kept)
batch norms, norms  7 per element                          11 per element
dropout             2 per element (training)               1 per element
fan_out, residual   1 per output element and extra branch  1 per input element and extra branch
rnn, lstm, gru      ``2*N*T*(D+H)*G`` (``G = gates*H``)    twice the forward; gate arithmetic not counted
==================  =====================================  ==========================================

Memory: the bytes of the arrays a layer's vjp keeps alive until it is called (params not counted),
in training mode, which is only what its backward pass reads: conv and affine keep their input (for
``dw``); ReLU a bit an element (where ``x > 0``); tanh its output; a max-pool the winner's offset in
its window (1 byte an output up to 256 cells); dropout its mask as bits; sigmoid its slope; the norms
the normalized input and ``1/std``; average pools nothing. Measured on every layer by ``tests/test_summary.py``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from funcnn.core import Layer, OpRules, Shape

__all__ = ["COST_RULES", "Cost", "cost_rule", "leaf_cost"]


@dataclass(frozen=True)
class Cost:
    """A layer's FLOPs (``None`` when unknown: a user's layer) and the memory its vjp keeps:
    ``inner`` bytes of its own arrays, and whether it also keeps its input and its output.
    ``alias``: its output is its input (``identity``)."""

    forward: int | None
    backward: int | None
    inner: int | None
    keeps_input: bool = False
    keeps_output: bool = False
    alias: bool = False


# rule(layer, in_shape, out_shape, itemsize) -> Cost, shapes of a batch (with N)
CostRule = Callable[[Layer, Shape, Shape, int], Cost]
COST_RULES: OpRules[CostRule] = OpRules("cost rule", "@funcnn.analysis.cost_rule(op)")
cost_rule = COST_RULES.register

# Per element: (forward, backward) FLOPs of the elementwise layers and the norms.
ELEMENTWISE = {
    "relu": (1, 1), "leaky_relu": (2, 2), "tanh": (1, 3), "sigmoid": (8, 1), "dropout": (2, 1),
    "batch_norm": (7, 11), "spatial_batch_norm": (7, 11), "layer_norm": (7, 11), "group_norm": (7, 11),
}  # fmt: skip
# The recurrent layers: (gates, biases) by op; their input is a tuple ((N, [T,] D), (N, H)[, (N, H)]).
RECURRENT = {
    "rnn": (1, 1), "lstm": (4, 1), "gru": (3, 2), "rnn_step": (1, 1), "lstm_step": (4, 1), "gru_step": (3, 2),
}  # fmt: skip


def leaf_cost(layer: Layer, in_shape: Shape, out_shape: Shape, itemsize: int) -> Cost:
    """The :class:`Cost` of a leaf layer for a batch (``in_shape`` and ``out_shape`` with N), by its op's rule."""
    return COST_RULES.of(layer)(layer, in_shape, out_shape, itemsize)


def _pair(value: object) -> tuple[int, int]:
    if isinstance(value, (tuple, list)):
        return int(value[0]), int(value[1])
    return int(value), int(value)  # type: ignore[call-overload]


def _counted(shape: Shape) -> bool:
    """Whether ``shape`` is one array's (not a tuple input's, as a scan's)."""
    return all(isinstance(d, (int, np.integer)) for d in shape)


@cost_rule("custom", "loss", "scan", "char_rnn", "captioning_rnn")
def _not_counted(layer: Layer, in_shape: Shape, out_shape: Shape, itemsize: int) -> Cost:
    """A user's layer, a loss, a scan over a user's cell and the course's sequence nets: unknown."""
    return Cost(None, None, None)


@cost_rule(*RECURRENT)
def _recurrent_cost(layer: Layer, in_shape: Shape, out_shape: Shape, itemsize: int) -> Cost:
    """The matrix products of all steps; the vjp keeps the input, the output (every step's h) and
    the gates (the LSTM also its cells, their tanh and zero c0, the GRU also ``h wh + bh``)."""
    x, state = in_shape[0], in_shape[1]
    n, steps, d, h = x[0], math.prod(x[:-1]), x[-1], state[-1]  # type: ignore[index]
    g = RECURRENT[layer.op][0] * h
    inner = {"rnn": 0, "lstm": steps * (g + 2 * h) + n * h, "gru": 2 * steps * g}[layer.op.removesuffix("_step")]
    if layer.op == "lstm_step":  # its c is an output, and c0 an input; it keeps the gates and tanh(c)
        inner = steps * (g + h)
    return Cost(2 * steps * (d + h) * g, 4 * steps * (d + h) * g, inner * itemsize, True, True)


@cost_rule("word_embedding")
def _gather(layer: Layer, in_shape: Shape, out_shape: Shape, itemsize: int) -> Cost:
    """A gather; its vjp keeps the (int64) indices and its output."""
    return Cost(0, math.prod(out_shape), math.prod(in_shape) * np.dtype(np.int64).itemsize, False, True)


@cost_rule("temporal_affine")
def _temporal_affine(layer: Layer, in_shape: Shape, out_shape: Shape, itemsize: int) -> Cost:
    """An affine map at every step; its vjp keeps x and its output."""
    products = math.prod(out_shape) * in_shape[-1]
    return Cost(2 * products, 4 * products, 0, True, True)


@cost_rule("conv")
def _conv(layer: Layer, in_shape: Shape, out_shape: Shape, itemsize: int) -> Cost:
    hh, ww = _pair(layer.hparams["kernel_size"])
    forward = 2 * math.prod(out_shape) * in_shape[1] * hh * ww
    if layer.hparams.get("naive"):  # keeps the zero-padded input too
        pad = int(layer.hparams["pad"])
        padded = in_shape[0] * in_shape[1] * (in_shape[2] + 2 * pad) * (in_shape[3] + 2 * pad)
        return Cost(forward, 2 * forward, padded * itemsize, True)
    return Cost(forward, 2 * forward, 0, True)


@cost_rule("affine")
def _affine(layer: Layer, in_shape: Shape, out_shape: Shape, itemsize: int) -> Cost:
    products = math.prod(in_shape[1:]) * math.prod(out_shape)
    return Cost(2 * products, 4 * products, 0, True)


@cost_rule("max_pool")
def _max_pool(layer: Layer, in_shape: Shape, out_shape: Shape, itemsize: int) -> Cost:
    """Its vjp keeps each output's offset in its window."""
    ph, pw, n_out = int(layer.hparams["pool_height"]), int(layer.hparams["pool_width"]), math.prod(out_shape)
    return Cost(n_out * (ph * pw - 1), n_out, n_out * np.min_scalar_type(ph * pw - 1).itemsize)


@cost_rule("avg_pool")
def _avg_pool(layer: Layer, in_shape: Shape, out_shape: Shape, itemsize: int) -> Cost:
    window, n_out = int(layer.hparams["pool_height"]) * int(layer.hparams["pool_width"]), math.prod(out_shape)
    return Cost(n_out * window, n_out * window, 0)


@cost_rule("global_avg_pool")
def _global_avg_pool(layer: Layer, in_shape: Shape, out_shape: Shape, itemsize: int) -> Cost:
    return Cost(math.prod(in_shape), math.prod(in_shape), 0)


@cost_rule("identity")
def _identity(layer: Layer, in_shape: Shape, out_shape: Shape, itemsize: int) -> Cost:
    return Cost(0, 0, 0, True, False, alias=True)


@cost_rule(*ELEMENTWISE)
def _elementwise(layer: Layer, in_shape: Shape, out_shape: Shape, itemsize: int) -> Cost:
    if not _counted(in_shape):
        return Cost(None, None, None)
    forward, backward = ELEMENTWISE[layer.op]
    n_in = math.prod(in_shape)
    keeps_output = layer.op in ("leaky_relu", "tanh")
    return Cost(forward * n_in, backward * n_in, _kept_arrays(layer, in_shape, itemsize), False, keeps_output)


def _kept_arrays(layer: Layer, shape: Shape, itemsize: int) -> int:
    """Bytes an elementwise layer or norm makes for its backward pass, besides its input and output."""
    op, size = layer.op, math.prod(shape)
    if op in ("dropout", "relu"):
        return -(-size // 8)  # the mask, 8 elements a byte
    if op == "sigmoid":
        return size * itemsize  # the slope
    if op in ("batch_norm", "spatial_batch_norm"):
        return (size + shape[1]) * itemsize  # x_hat and 1/std per feature
    if op == "layer_norm":
        return (size + shape[0]) * itemsize  # x_hat and 1/std per example
    if op == "group_norm":
        return (size + shape[0] * int(layer.hparams["groups"])) * itemsize  # x_hat and 1/std per example and group
    return 0
