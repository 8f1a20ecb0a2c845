"""The course's sandwich layers, each built with :func:`funcnn.sandwich`; params ``{"w", "b"}``.

>>> params = {"w": np.array([[1.0, -1.0]]), "b": np.zeros(2)}
>>> fn.affine_relu(params, np.array([[2.0]]))[0]          # relu(affine): x (N, 1) -> (N, 2)
array([[2., 0.]])
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from funcnn.core import Layer, layer_factory
from funcnn.layers._activations import relu
from funcnn.layers._affine import affine, dense
from funcnn.layers._combinators import sandwich
from funcnn.layers._conv import conv, conv_naive
from funcnn.layers._pool import max_pool, max_pool_naive

affine_relu = replace(sandwich(affine, relu), doc="""``relu(affine(params, x))``: x ``(N, d1..dk)`` -> ``(N, M)``.""")


@layer_factory
def dense_relu(out_dim: int) -> Layer:
    """:data:`affine_relu` with a known output size, for :func:`funcnn.init_params`.

    >>> block = fn.dense_relu(4)
    >>> block.out_shape((2, 3)), block.param_keys
    ((4,), ('w', 'b'))
    """
    return sandwich(dense(out_dim), relu)


@layer_factory
def conv_relu(
    stride: int = 1,
    pad: int = 0,
    filters: int | None = None,
    kernel_size: int | tuple[int, int] | None = None,
    *,
    naive: bool = False,
) -> Layer:
    """``relu(conv(params, x))``: x ``(N, C, H, W)`` -> ``(N, F, H', W')``. ``naive`` picks the reference conv;
    ``filters`` and ``kernel_size`` are for :func:`funcnn.init_params`.

    >>> block = fn.conv_relu(pad=1, filters=6, kernel_size=3)
    >>> block.out_shape((3, 8, 8))
    (6, 8, 8)
    >>> _, params = fn.init_params(block, np.random.default_rng(0), (3, 8, 8))
    >>> y, _ = block(params, np.ones((2, 3, 8, 8), np.float32))
    >>> y.shape, bool((y >= 0).all())
    ((2, 6, 8, 8), True)
    """
    first = (conv_naive if naive else conv)(stride=stride, pad=pad, filters=filters, kernel_size=kernel_size)
    return sandwich(first, relu)


@layer_factory
def conv_relu_pool(
    conv_param: dict[str, Any] | None = None, pool_param: dict[str, Any] | None = None, *, naive: bool = False
) -> Layer:
    """``max_pool(relu(conv(params, x)))`` with the course's dicts, e.g.
    ``conv_relu_pool({"stride": 1, "pad": 1}, {"pool_height": 2, "pool_width": 2, "stride": 2})``
    (these are the defaults). x ``(N, C, H, W)`` -> ``(N, F, H'', W'')``. ``conv_param`` may also
    hold ``filters`` and ``kernel_size`` for :func:`funcnn.init_params`.

    >>> block = fn.conv_relu_pool({"stride": 1, "pad": 1, "filters": 6, "kernel_size": 3})
    >>> block.out_shape((3, 8, 8)), [child.op for child in block.children]
    ((6, 4, 4), ['conv', 'relu', 'max_pool'])
    """
    conv_param = {"stride": 1, "pad": 1} if conv_param is None else conv_param
    pool_param = {"pool_height": 2, "pool_width": 2, "stride": 2} if pool_param is None else pool_param
    layers = (conv_naive if naive else conv)(**conv_param), relu, (max_pool_naive if naive else max_pool)(**pool_param)
    return sandwich(*layers)
