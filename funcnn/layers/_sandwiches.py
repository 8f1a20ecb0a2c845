"""The course's sandwich layers, each built with :func:`funcnn.sandwich`; params ``{"w", "b"}``.

>>> params = {"w": np.array([[1.0, -1.0]]), "b": np.zeros(2)}
>>> fn.affine_relu(params, np.array([[2.0]]))[0]          # relu(affine): x (N, 1) -> (N, 2)
array([[2., 0.]])
"""

from __future__ import annotations

from dataclasses import replace

from typing_extensions import Unpack

from funcnn.core import Layer, layer_factory
from funcnn.layers._activations import relu
from funcnn.layers._affine import affine, dense
from funcnn.layers._combinators import sandwich
from funcnn.layers._conv import ConvParam, conv, conv_naive
from funcnn.layers._pool import PoolParam, max_pool, max_pool_naive

affine_relu = replace(sandwich(affine, relu), doc="""``relu(affine(params, x))``: x ``(N, d1..dk)`` -> ``(N, M)``.""")


@layer_factory
def dense_relu(out_dim: int) -> Layer:
    """:data:`affine_relu` with a known output size, for :func:`funcnn.init_params`.

    Args:
        out_dim: M, the number of outputs.

    Returns:
        The sandwich ``relu(dense(out_dim))``; params ``{"w": (D, M), "b": (M,)}``.

    >>> block = fn.dense_relu(4)
    >>> block.out_shape((2, 3)), block.param_keys
    ((4,), ('w', 'b'))
    """
    return sandwich(dense(out_dim), relu)


@layer_factory
def conv_relu(*, naive: bool = False, **conv_param: Unpack[ConvParam]) -> Layer:
    """``relu(conv(params, x))``: x ``(N, C, H, W)`` -> ``(N, F, H', W')``. ``naive`` picks the reference conv;
    ``filters`` and ``kernel_size`` are for :func:`funcnn.init_params`.

    Args:
        naive: use :func:`funcnn.conv_naive`, the plain-NumPy reference, instead of the fast conv.
        **conv_param: the keywords of :func:`funcnn.conv` (``stride``, ``pad``, ``filters``, ``kernel_size``).

    Returns:
        The sandwich ``relu(conv(**conv_param))``; params ``{"w", "b"}``.

    >>> block = fn.conv_relu(pad=1, filters=6, kernel_size=3)
    >>> block.out_shape((3, 8, 8))
    (6, 8, 8)
    >>> _, params = fn.init_params(block, np.random.default_rng(0), (3, 8, 8))
    >>> y, _ = block(params, np.ones((2, 3, 8, 8), np.float32))
    >>> y.shape, bool((y >= 0).all())
    ((2, 6, 8, 8), True)
    """
    first = (conv_naive if naive else conv)(**conv_param)
    return sandwich(first, relu)


@layer_factory
def conv_relu_pool(
    conv_param: ConvParam | None = None, pool_param: PoolParam | None = None, *, naive: bool = False
) -> Layer:
    """``max_pool(relu(conv(params, x)))`` with the course's dicts, e.g.
    ``conv_relu_pool({"stride": 1, "pad": 1}, {"pool_height": 2, "pool_width": 2, "stride": 2})``
    (these are the defaults). x ``(N, C, H, W)`` -> ``(N, F, H'', W'')``. ``conv_param`` may also
    hold ``filters`` and ``kernel_size`` for :func:`funcnn.init_params`.

    Args:
        conv_param: the keywords of :func:`funcnn.conv`; default ``{"stride": 1, "pad": 1}``.
        pool_param: the keywords of :func:`funcnn.max_pool`; default 2x2 windows with stride 2.
        naive: use the plain-NumPy reference conv and max-pool.

    Returns:
        The sandwich ``max_pool(relu(conv(...)))``; params ``{"w", "b"}``.

    >>> block = fn.conv_relu_pool({"stride": 1, "pad": 1, "filters": 6, "kernel_size": 3})
    >>> block.out_shape((3, 8, 8)), [child.op for child in block.children]
    ((6, 4, 4), ['conv', 'relu', 'max_pool'])
    """
    conv_param = ConvParam(stride=1, pad=1) if conv_param is None else conv_param
    pool_param = PoolParam(pool_height=2, pool_width=2, stride=2) if pool_param is None else pool_param
    layers = (conv_naive if naive else conv)(**conv_param), relu, (max_pool_naive if naive else max_pool)(**pool_param)
    return sandwich(*layers)
