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
==================  =====================================  ==========================================

Memory: the bytes of the arrays a layer's vjp keeps alive until it is called (params not counted),
in training mode, which is only what its backward pass reads: conv and affine keep their input (for
``dw``); ReLU and tanh their output; a max-pool the winner's offset in its window (1 byte an output
up to 256 cells); dropout its mask as bits; sigmoid its slope; the norms the normalized input and
``1/std``; average pools nothing. Measured on every layer by ``tests/test_summary.py``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from funcnn.core import Layer, Shape

__all__ = ["Cost", "leaf_cost", "leaf_params"]


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


# Per element: (forward, backward) FLOPs of the elementwise layers and the norms.
ELEMENTWISE = {
    "relu": (1, 1), "leaky_relu": (2, 2), "tanh": (1, 3), "sigmoid": (8, 1), "dropout": (2, 1),
    "batch_norm": (7, 11), "spatial_batch_norm": (7, 11), "layer_norm": (7, 11), "group_norm": (7, 11),
}  # fmt: skip


def _pair(value: object) -> tuple[int, int]:
    if isinstance(value, (tuple, list)):
        return int(value[0]), int(value[1])
    return int(value), int(value)  # type: ignore[call-overload]


def leaf_params(layer: Layer, in_shape: Shape, out_shape: Shape) -> int | None:
    """The number of parameters of a leaf layer fed one example of ``in_shape`` (no batch axis);
    ``None`` when its op does not say (a user's layer)."""
    op, hp = layer.op, layer.hparams
    if op == "conv":
        hh, ww = _pair(hp["kernel_size"])
        return out_shape[0] * (in_shape[0] * hh * ww + 1)
    if op == "affine":
        return (math.prod(in_shape) + 1) * out_shape[0]
    if op in ("batch_norm", "spatial_batch_norm", "group_norm"):
        return 2 * in_shape[0]
    if op == "layer_norm":
        return 2 * math.prod(in_shape)
    if op == "custom" or op == "loss":
        return None
    return 0


def leaf_cost(layer: Layer, in_shape: Shape, out_shape: Shape, itemsize: int) -> Cost:
    """The :class:`Cost` of a leaf layer for a batch: ``in_shape`` and ``out_shape`` with N."""
    op, hp = layer.op, layer.hparams
    n_in, n_out = math.prod(in_shape), math.prod(out_shape)
    if op == "conv":
        hh, ww = _pair(hp["kernel_size"])
        forward = 2 * n_out * in_shape[1] * hh * ww
        if hp.get("naive"):  # keeps the zero-padded input too
            pad = int(hp["pad"])
            padded = in_shape[0] * in_shape[1] * (in_shape[2] + 2 * pad) * (in_shape[3] + 2 * pad)
            return Cost(forward, 2 * forward, padded * itemsize, True)
        return Cost(forward, 2 * forward, 0, True)
    if op == "affine":
        products = math.prod(in_shape[1:]) * n_out
        return Cost(2 * products, 4 * products, 0, True)
    if op == "max_pool":
        ph, pw = int(hp["pool_height"]), int(hp["pool_width"])
        return Cost(n_out * (ph * pw - 1), n_out, n_out * np.min_scalar_type(ph * pw - 1).itemsize)  # the offsets
    if op == "avg_pool":
        window = int(hp["pool_height"]) * int(hp["pool_width"])
        return Cost(n_out * window, n_out * window, 0)
    if op == "global_avg_pool":
        return Cost(n_in, n_in, 0)
    if op == "identity":
        return Cost(0, 0, 0, True, False, alias=True)
    if op in ELEMENTWISE:
        forward, backward = ELEMENTWISE[op]
        keeps_output = op in ("relu", "leaky_relu", "tanh")
        return Cost(forward * n_in, backward * n_in, _kept_arrays(layer, in_shape, itemsize), False, keeps_output)
    return Cost(None, None, None)


def _kept_arrays(layer: Layer, shape: Shape, itemsize: int) -> int:
    """Bytes an elementwise layer or norm makes for its backward pass, besides its input and output."""
    op, size = layer.op, math.prod(shape)
    if op == "dropout":
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
