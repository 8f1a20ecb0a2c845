"""The course's networks, built from layers with ``chain`` and ``sandwich``. Each is a plain layer
ending in class scores ``(N, num_classes)``; make its params with :func:`funcnn.init_params`."""

from __future__ import annotations

from collections.abc import Sequence

from funcnn.affine import dense
from funcnn.combinators import chain
from funcnn.layer import Layer
from funcnn.sandwiches import conv_relu_pool, dense_relu


def two_layer_net(hidden_dim: int = 100, num_classes: int = 10) -> Layer:
    """affine - relu - affine: x ``(N, d1..dk)`` -> scores ``(N, num_classes)``."""
    return chain(dense_relu(hidden_dim), dense(num_classes))


def fc_net(hidden_dims: Sequence[int] = (100, 100), num_classes: int = 10) -> Layer:
    """``{affine - relu} x len(hidden_dims)`` - affine: x ``(N, d1..dk)`` -> scores ``(N, num_classes)``."""
    return chain(*(dense_relu(h) for h in hidden_dims), dense(num_classes))


def three_layer_convnet(num_filters: int = 32, filter_size: int = 7, hidden_dim: int = 100, num_classes: int = 10) -> Layer:
    """The course's convnet: conv - relu - 2x2 max pool - affine - relu - affine.

    The conv keeps the spatial size (stride 1, pad ``(filter_size - 1) // 2``; odd sizes) and the
    pool halves it. x ``(N, C, H, W)`` -> scores ``(N, num_classes)``.
    """
    conv_param = {"stride": 1, "pad": (filter_size - 1) // 2, "filters": num_filters, "kernel_size": filter_size}
    return chain(conv_relu_pool(conv_param), dense_relu(hidden_dim), dense(num_classes))
