"""The course's classifiers: a two-layer net, a fully connected net and the three-layer convnet."""

from __future__ import annotations

from collections.abc import Sequence

from funcnn.core import Layer, layer_factory
from funcnn.layers import batch_norm as batch_norm_layer
from funcnn.layers import chain, conv, dense, max_pool, relu, sandwich, spatial_batch_norm
from funcnn.layers import dropout as dropout_layer


def _hidden(out_dim: int, batch_norm: bool, dropout: float) -> Layer:
    """affine - [batch norm] - relu - [dropout], params merged: ``{"w", "b"[, "gamma", "beta"]}``."""
    layers = [dense(out_dim)] + ([batch_norm_layer()] if batch_norm else []) + [relu]
    return sandwich(*layers, *([dropout_layer(dropout)] if dropout else []))


@layer_factory
def two_layer_net(hidden_dim: int = 100, num_classes: int = 10) -> Layer:
    """affine - relu - affine: x ``(N, d1..dk)`` -> scores ``(N, num_classes)``.

    Args:
        hidden_dim: the hidden layer's size.
        num_classes: the number of scores.

    Returns:
        The network ``affine - relu - affine``.
    """
    return fc_net((hidden_dim,), num_classes)


@layer_factory
def fc_net(
    hidden_dims: Sequence[int] = (100, 100), num_classes: int = 10, batch_norm: bool = False, dropout: float = 0.0
) -> Layer:
    """``{affine - [batch norm] - relu - [dropout]} x len(hidden_dims)`` - affine: x ``(N, d1..dk)``
    -> scores ``(N, num_classes)``. params: a tuple, one merged dict per hidden layer, then the last affine's.

    Args:
        hidden_dims: the hidden layers' sizes.
        num_classes: the number of scores.
        batch_norm: batch norm after each hidden affine.
        dropout: dropout probability after each hidden relu (0: none).

    Returns:
        The network (moded with batch norm or dropout).

    >>> net = fn.nets.fc_net((20, 10), num_classes=3, batch_norm=True)
    >>> net.out_shape((1, 8, 8)), net.moded
    ((3,), True)
    >>> _, params = fn.init_params(net, np.random.default_rng(0), (1, 8, 8))
    >>> [sorted(p) for p in params]
    [['b', 'beta', 'gamma', 'w'], ['b', 'beta', 'gamma', 'w'], ['b', 'w']]
    """
    net = chain(*(_hidden(h, batch_norm, dropout) for h in hidden_dims), dense(num_classes))
    return net


@layer_factory
def three_layer_convnet(
    num_filters: int = 32,
    filter_size: int = 7,
    hidden_dim: int = 100,
    num_classes: int = 10,
    batch_norm: bool = False,
    dropout: float = 0.0,
) -> Layer:
    """The course's convnet: conv - [spatial batch norm] - relu - 2x2 max pool - affine - [batch norm] -
    relu - [dropout] - affine.

    The conv keeps the spatial size (stride 1, pad ``(filter_size - 1) // 2``; odd sizes) and the
    pool halves it. x ``(N, C, H, W)`` -> scores ``(N, num_classes)``.

    Args:
        num_filters: the conv's filters.
        filter_size: its odd kernel size (padding keeps H and W).
        hidden_dim: the hidden affine's size.
        num_classes: the number of scores.
        batch_norm: spatial batch norm after the conv and batch norm after the hidden affine.
        dropout: dropout probability after the hidden relu (0: none).

    Returns:
        The network (moded with batch norm or dropout).

    >>> net = fn.nets.three_layer_convnet(num_filters=4, filter_size=3, hidden_dim=10, num_classes=5)
    >>> net.out_shape((3, 8, 8)), [child.op for child in net.children]
    ((5,), ['sandwich', 'sandwich', 'affine'])
    """
    if filter_size % 2 == 0:
        raise ValueError(f"three_layer_convnet: filter_size must be odd to keep the spatial size, got {filter_size}")
    first = conv(stride=1, pad=(filter_size - 1) // 2, filters=num_filters, kernel_size=filter_size)
    norm = [spatial_batch_norm()] if batch_norm else []
    block = sandwich(first, *norm, relu, max_pool(pool_height=2, pool_width=2, stride=2))
    net = chain(block, _hidden(hidden_dim, batch_norm, dropout), dense(num_classes))
    return net
