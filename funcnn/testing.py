"""Hypothesis strategies that generate valid layer problems, to test your own layers like funcnn's.

Shapes, strides, paddings and window sizes are drawn by hypothesis; values come from a NumPy
generator seeded by hypothesis, so they look like real activations (no accidental exact zeros).
Needs the ``test`` extra (hypothesis).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np
from hypothesis import strategies as st

if TYPE_CHECKING:
    from funcnn.layers import ConvParam, PoolParam

__all__ = [
    "AffineProblem",
    "ClassificationProblem",
    "ConvProblem",
    "NetworkProblem",
    "NormProblem",
    "PoolProblem",
    "affine_problems",
    "classification_problems",
    "conv_problems",
    "float_dtypes",
    "group_norm_problems",
    "layer_norm_problems",
    "networks",
    "pool_problems",
]

float_dtypes = st.sampled_from([np.float32, np.float64])
"""float32 or float64."""


@dataclass(frozen=True)
class ConvProblem:
    """``conv(stride=stride, pad=pad)(params, x)`` is valid: x ``(N, C, H, W)``,
    params ``{"w": (F, C, HH, WW), "b": (F,)}``."""

    x: np.ndarray
    params: dict[str, np.ndarray]
    stride: int
    pad: int

    @property
    def conv_param(self) -> ConvParam:
        return {"stride": self.stride, "pad": self.pad}


@dataclass(frozen=True)
class PoolProblem:
    """``max_pool(**pool_param)((), x)`` is valid: x ``(N, C, H, W)``."""

    x: np.ndarray
    pool_height: int
    pool_width: int
    stride: int

    @property
    def pool_param(self) -> PoolParam:
        return {"pool_height": self.pool_height, "pool_width": self.pool_width, "stride": self.stride}


@dataclass(frozen=True)
class AffineProblem:
    """``affine(params, x)`` is valid: x ``(N, d1, ..., dk)``, params ``{"w": (D, M), "b": (M,)}``."""

    x: np.ndarray
    params: dict[str, np.ndarray]


@dataclass(frozen=True)
class NormProblem:
    """``layer_norm()(params, x)`` (``groups`` None) or ``group_norm(groups)(params, x)`` is valid:
    params ``{"gamma", "beta"}`` of shape ``x.shape[1:]`` (layer norm) or ``(C,)`` (group norm)."""

    x: np.ndarray
    params: dict[str, np.ndarray]
    groups: int | None


@dataclass(frozen=True)
class ClassificationProblem:
    """``softmax_loss(scores, y)`` is valid: scores ``(N, C)``, y ``(N,)`` ints in ``[0, C)``."""

    scores: np.ndarray
    y: np.ndarray


def _rng(draw: Any) -> np.random.Generator:
    return np.random.default_rng(draw(st.integers(0, 2**32 - 1)))


@st.composite
def conv_problems(
    draw: Any, dtype: Any = None, max_batch: int = 3, max_channels: int = 3, max_size: int = 9
) -> ConvProblem:
    """Conv problems with non-square kernels, strides 1-3 and paddings 0-2, always with an output
    of at least 1x1. ``dtype`` None draws float32 or float64.

    Args:
        draw: hypothesis's draw, given by ``@composite``: call the strategy without it.
        dtype: a float dtype, or None to draw float32 or float64.
        max_batch: the largest N.
        max_channels: the largest C and F.
        max_size: the largest H and W.

    Returns:
        A strategy of :class:`ConvProblem`.
    """
    dtype = draw(float_dtypes) if dtype is None else dtype
    n, c, f = draw(st.integers(1, max_batch)), draw(st.integers(1, max_channels)), draw(st.integers(1, max_channels))
    hh, ww = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    stride, pad = draw(st.integers(1, 3)), draw(st.integers(0, 2))
    height = draw(st.integers(max(1, hh - 2 * pad), max(max_size, hh)))
    width = draw(st.integers(max(1, ww - 2 * pad), max(max_size, ww)))
    rng = _rng(draw)
    x = rng.standard_normal((n, c, height, width)).astype(dtype)
    params = {"w": rng.standard_normal((f, c, hh, ww)).astype(dtype), "b": rng.standard_normal(f).astype(dtype)}
    return ConvProblem(x, params, stride, pad)


@st.composite
def pool_problems(
    draw: Any, dtype: Any = None, ties: bool = False, max_batch: int = 3, max_size: int = 9
) -> PoolProblem:
    """Max-pool problems with non-square windows, strides smaller than (overlapping), equal to and
    larger than the window. Tie-free inputs hold distinct values at least 1e-2 apart (safe for
    finite differences); with ``ties=True`` values come from {-1, 0, 1}, so most windows tie.

    Args:
        draw: hypothesis's draw, given by ``@composite``: call the strategy without it.
        dtype: a float dtype, or None to draw float32 or float64.
        ties: draw inputs with tied maxima.
        max_batch: the largest N.
        max_size: the largest H and W.

    Returns:
        A strategy of :class:`PoolProblem`.
    """
    dtype = draw(float_dtypes) if dtype is None else dtype
    ph, pw, stride = draw(st.integers(1, 3)), draw(st.integers(1, 3)), draw(st.integers(1, 3))
    n, c = draw(st.integers(1, max_batch)), draw(st.integers(1, 3))
    height, width = draw(st.integers(ph, max(max_size, ph))), draw(st.integers(pw, max(max_size, pw)))
    rng = _rng(draw)
    shape = (n, c, height, width)
    if ties:
        x = rng.integers(-1, 2, size=shape).astype(dtype)
    else:
        x = (rng.permutation(int(np.prod(shape))).reshape(shape) * 1e-2 - 0.5).astype(dtype)
    return PoolProblem(x, ph, pw, stride)


@st.composite
def affine_problems(draw: Any, dtype: Any = None, max_batch: int = 4) -> AffineProblem:
    """Affine problems whose x has 1 to 3 trailing axes, flattened to D.

    Args:
        draw: hypothesis's draw, given by ``@composite``: call the strategy without it.
        dtype: a float dtype, or None to draw float32 or float64.
        max_batch: the largest N.

    Returns:
        A strategy of :class:`AffineProblem`.
    """
    dtype = draw(float_dtypes) if dtype is None else dtype
    n = draw(st.integers(1, max_batch))
    trailing = tuple(draw(st.lists(st.integers(1, 4), min_size=1, max_size=3)))
    m = draw(st.integers(1, 5))
    rng = _rng(draw)
    x = rng.standard_normal((n, *trailing)).astype(dtype)
    d = int(np.prod(trailing))
    params = {"w": rng.standard_normal((d, m)).astype(dtype), "b": rng.standard_normal(m).astype(dtype)}
    return AffineProblem(x, params)


def _gamma_beta(rng: np.random.Generator, shape: tuple[int, ...], dtype: Any) -> dict[str, np.ndarray]:
    return {"gamma": rng.standard_normal(shape).astype(dtype), "beta": rng.standard_normal(shape).astype(dtype)}


@st.composite
def layer_norm_problems(draw: Any, dtype: Any = None, max_batch: int = 3) -> NormProblem:
    """Layer-norm problems: x ``(N, d1, ..., dk)`` with 1 to 3 non-batch axes, random gamma and beta.

    Args:
        draw: hypothesis's draw, given by ``@composite``: call the strategy without it.
        dtype: a float dtype, or None to draw float32 or float64.
        max_batch: the largest N.

    Returns:
        A strategy of :class:`NormProblem`.
    """
    dtype = draw(float_dtypes) if dtype is None else dtype
    n = draw(st.integers(1, max_batch))
    trailing = tuple(draw(st.lists(st.integers(1, 4), min_size=1, max_size=3)))
    rng = _rng(draw)
    return NormProblem(rng.standard_normal((n, *trailing)).astype(dtype), _gamma_beta(rng, trailing, dtype), None)


@st.composite
def group_norm_problems(draw: Any, dtype: Any = None, max_batch: int = 3, max_size: int = 4) -> NormProblem:
    """Group-norm problems: x ``(N, C, H, W)`` with 1 to 3 groups of 1 to 3 channels, random gamma and beta.

    Args:
        draw: hypothesis's draw, given by ``@composite``: call the strategy without it.
        dtype: a float dtype, or None to draw float32 or float64.
        max_batch: the largest N.
        max_size: the largest H and W.

    Returns:
        A strategy of :class:`NormProblem`.
    """
    dtype = draw(float_dtypes) if dtype is None else dtype
    groups = draw(st.integers(1, 3))
    n, c = draw(st.integers(1, max_batch)), groups * draw(st.integers(1, 3))
    height, width = draw(st.integers(1, max_size)), draw(st.integers(1, max_size))
    rng = _rng(draw)
    return NormProblem(rng.standard_normal((n, c, height, width)).astype(dtype), _gamma_beta(rng, (c,), dtype), groups)


@st.composite
def classification_problems(
    draw: Any, dtype: Any = None, max_batch: int = 8, max_classes: int = 10
) -> ClassificationProblem:
    """Scores and labels for the losses; at least two classes.

    Args:
        draw: hypothesis's draw, given by ``@composite``: call the strategy without it.
        dtype: a float dtype, or None to draw float32 or float64.
        max_batch: the largest N.
        max_classes: the largest C.

    Returns:
        A strategy of :class:`ClassificationProblem`.
    """
    dtype = draw(float_dtypes) if dtype is None else dtype
    n, c = draw(st.integers(1, max_batch)), draw(st.integers(2, max_classes))
    rng = _rng(draw)
    return ClassificationProblem(rng.standard_normal((n, c)).astype(dtype), rng.integers(0, c, size=n))


@dataclass(frozen=True)
class NetworkProblem:
    """``check_vjp(net, params, x)`` is valid: ``net`` is a chain of funcnn layers ending in a loss
    (a scalar output), ``params`` its params, x ``(N, C, H, W)``; ``description`` lists the blocks."""

    net: Any
    params: Any
    x: np.ndarray
    description: str


def _spatial_blocks(fn: Any, shape: tuple[int, int, int], batch: int, user: list[Any]) -> list[tuple[str, Any, Any]]:
    """``(name, layer, output shape or None when unchanged)`` of the blocks valid on ``(C, H, W)``."""
    c, h, w = shape
    same = None
    blocks: list[tuple[str, Any, Any]] = [
        ("conv3x3", fn.conv(stride=1, pad=1, filters=2, kernel_size=3), (2, h, w)),
        ("relu", fn.relu, same),
        ("tanh", fn.tanh, same),
        ("sigmoid", fn.sigmoid, same),
        ("leaky_relu", fn.leaky_relu(0.1), same),
        (
            "residual(conv-tanh)",
            fn.residual(fn.sandwich(fn.conv(stride=1, pad=1, filters=c, kernel_size=3), fn.tanh)),
            same,
        ),
        (
            "fan_out(conv, conv)",
            fn.fan_out(fn.conv(stride=1, pad=1, filters=2, kernel_size=3), fn.conv(filters=2, kernel_size=1)),
            (2, h, w),
        ),
        (
            "conv_relu sandwich",
            fn.sandwich(fn.conv(stride=2, pad=1, filters=3, kernel_size=3), fn.relu),
            (3, (h + 1) // 2, (w + 1) // 2),
        ),
    ]
    if h >= 2 and w >= 2:
        half = (c, h // 2, w // 2)
        blocks += [("max_pool 2x2", fn.max_pool(2, 2, 2), half), ("avg_pool 2x2", fn.avg_pool(2, 2, 2), half)]
    if c * h * w >= 2:
        blocks += [("layer_norm", fn.layer_norm(), same), ("group_norm(1)", fn.group_norm(1), same)]
    if batch * h * w >= 4:
        from funcnn.layers import init_state

        norm = fn.spatial_batch_norm()
        blocks.append(
            ("spatial_batch_norm (train)", fn.bind(norm, init_state(norm, shape, np.float64), train=True), same)
        )
    blocks += [("user layer", layer, same) for layer in user]
    return blocks


def _keeping_shape(layer: Any) -> Any:
    from funcnn.core import Layer

    if isinstance(layer, Layer) and layer.out_shape is None:
        return replace(layer, out_shape=lambda shape: shape)
    return layer


@st.composite
def networks(
    draw: Any, layers: tuple[Any, ...] = (), max_blocks: int = 4, max_batch: int = 3, max_size: int = 6
) -> NetworkProblem:
    """Random valid networks of funcnn's layers: up to ``max_blocks`` spatial blocks (conv, pools,
    norms, activations, sandwiches, residual, fan_out, your ``layers``), then affine - activation -
    affine - a loss (softmax or SVM) on random labels, with matching params (random, nonzero biases)
    and float64 inputs x ``(N, C, H, W)``.

    ``layers``: your own layers to mix in (every network then holds at least one); each must keep the
    shape ``(N, C, H, W)`` of its input and take no params or have an ``init`` (see :func:`funcnn.layer`).

    Args:
        draw: hypothesis's draw, given by ``@composite``: call the strategy without it.
        layers: your own shape-keeping layers to mix in.
        max_blocks: the most spatial blocks.
        max_batch: the largest N.
        max_size: the largest H and W.

    Returns:
        A strategy of :class:`NetworkProblem`.
    """
    import funcnn as fn
    from funcnn.tree import tree_map

    # Your layers keep the input's shape (see above): that is their out_shape unless they say another.
    layers = tuple(_keeping_shape(f) for f in layers)
    batch = draw(st.integers(1, max_batch))
    shape = (draw(st.integers(1, 3)), draw(st.integers(1, max_size)), draw(st.integers(1, max_size)))
    input_shape, chosen, names = shape, [], []
    for _ in range(draw(st.integers(0, max_blocks))):
        name, block, out = draw(st.sampled_from(_spatial_blocks(fn, shape, batch, list(layers))))
        chosen.append(block)
        names.append(name)
        shape = out or shape
    if layers:  # at least one of the user's layers, anywhere
        at = draw(st.integers(0, len(chosen)))
        chosen.insert(at, draw(st.sampled_from(layers)))
        names.insert(at, "user layer")
    hidden, classes = draw(st.integers(1, 5)), draw(st.integers(2, 4))
    activation = draw(st.sampled_from([fn.relu, fn.tanh, fn.sigmoid]))
    loss = draw(st.sampled_from([fn.softmax_loss, fn.svm_loss]))
    rng = _rng(draw)
    labels = rng.integers(0, classes, size=batch)
    body = fn.chain(*chosen, fn.sandwich(fn.dense(hidden), activation), fn.dense(classes))
    _, params = fn.init_params(body, rng, input_shape, np.float64, 0.7)
    params = (tree_map(lambda a: a + 0.1 * rng.standard_normal(a.shape), params), ())
    net = fn.chain(body, fn.loss_layer(loss, labels))
    x = rng.standard_normal((batch, *input_shape))
    description = " - ".join([*names, f"affine({hidden})", activation.name, f"affine({classes})", loss.__name__])
    return NetworkProblem(net, params, x, description)
