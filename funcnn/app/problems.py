"""The gradient checks of every layer on the course's problems: ``python -m funcnn check``."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Literal

import numpy as np

import funcnn as fn
from funcnn.core import LayerFn
from funcnn.gradcheck import VJPReport


def _problems(rng: np.random.Generator) -> Iterator[tuple[str, LayerFn, Any, np.ndarray]]:
    """(title, layer, params, x) on the shapes the course notebook checks."""
    randn = rng.standard_normal
    conv_p = {"w": randn((2, 3, 3, 3)), "b": randn(2)}
    yield "affine", fn.affine, {"w": randn((6, 5)), "b": randn(5)}, randn((10, 2, 3))
    yield "relu", fn.relu, (), randn((10, 10))
    labels = rng.integers(10, size=50)
    yield "svm_loss", fn.loss_layer(fn.svm_loss, labels), (), 0.001 * randn((50, 10))
    yield "softmax_loss", fn.loss_layer(fn.softmax_loss, labels), (), 0.001 * randn((50, 10))
    yield "conv_naive", fn.conv_naive(stride=1, pad=1), conv_p, randn((4, 3, 5, 5))
    yield "conv", fn.conv(stride=1, pad=1), conv_p, randn((4, 3, 5, 5))
    yield "max_pool_naive", fn.max_pool_naive(pool_height=2, pool_width=2, stride=2), (), randn((3, 2, 8, 8))
    yield "max_pool", fn.max_pool(pool_height=2, pool_width=2, stride=2), (), randn((3, 2, 8, 8))
    yield "max_pool 3x3 s2", fn.max_pool(pool_height=3, pool_width=3, stride=2), (), randn((3, 2, 9, 9))
    sandwich_p = {"w": randn((3, 3, 3, 3)), "b": randn(3)}
    yield "conv_relu_pool", fn.conv_relu_pool({"stride": 1, "pad": 1}), sandwich_p, randn((2, 3, 16, 16))
    yield "conv_relu", fn.conv_relu(stride=1, pad=1), sandwich_p, randn((2, 3, 8, 8))
    yield "affine_relu", fn.affine_relu, {"w": randn((12, 10)), "b": randn(10)}, randn((2, 3, 4))
    yield "leaky_relu", fn.leaky_relu(0.1), (), randn((4, 5))
    yield "tanh", fn.tanh, (), randn((4, 5))
    yield "sigmoid", fn.sigmoid, (), randn((4, 5))
    yield "avg_pool 3x3 s2", fn.avg_pool(pool_height=3, pool_width=3, stride=2), (), randn((2, 2, 7, 7))
    yield "global_avg_pool", fn.global_avg_pool, (), randn((2, 3, 4, 4))
    norm_p = {"gamma": randn(4), "beta": randn(4)}
    yield "layer_norm", fn.layer_norm(), {"gamma": randn(6), "beta": randn(6)}, randn((3, 6))
    yield "group_norm", fn.group_norm(groups=2), norm_p, randn((2, 4, 3, 3))
    bn_state = {"running_mean": randn(4), "running_var": rng.uniform(0.5, 2, 4)}
    yield "batch_norm (train)", fn.bind(fn.batch_norm(), bn_state, train=True), norm_p, randn((5, 4))
    yield "batch_norm (eval)", fn.bind(fn.batch_norm(), bn_state, train=False), norm_p, randn((5, 4))
    yield (
        "spatial_batch_norm (train)",
        fn.bind(fn.spatial_batch_norm(), bn_state, train=True),
        norm_p,
        randn((2, 4, 3, 3)),
    )
    yield "dropout (train)", fn.bind(fn.dropout(0.3), train=True, rng=np.random.default_rng(seed=1)), (), randn((4, 5))
    net = fn.chain(fn.affine, fn.relu, fn.affine, fn.loss_layer(fn.softmax_loss, rng.integers(10, size=5)))
    net_p = ({"w": 0.1 * randn((20, 15)), "b": randn(15)}, (), {"w": 0.1 * randn((15, 10)), "b": randn(10)}, ())
    yield "two-layer net + softmax", net, net_p, randn((5, 4, 5))
    convnet = fn.chain(
        fn.conv_relu_pool(), fn.affine_relu, fn.affine, fn.loss_layer(fn.svm_loss, rng.integers(10, size=2))
    )
    convnet_p = (
        {"w": randn((4, 1, 3, 3)), "b": randn(4)}, {"w": 0.1 * randn((64, 10)), "b": randn(10)},
        {"w": 0.1 * randn((10, 10)), "b": randn(10)}, (),
    )  # fmt: skip
    yield "three-layer convnet + svm", convnet, convnet_p, randn((2, 1, 8, 8))


def run_checks(seed: int = 0, mode: Literal["fast", "full"] = "full") -> list[tuple[str, VJPReport]]:
    """check_vjp (float64) on every layer, sandwich and two networks; returns (title, report) pairs."""
    rng = np.random.default_rng(seed)
    return [
        (title, fn.check_vjp(layer, params, x, mode=mode, on_kink="ignore"))
        for title, layer, params, x in _problems(rng)
    ]


def format_table(results: list[tuple[str, VJPReport]]) -> str:
    """A table of the relative error of every leaf, named as check_vjp names it (``params["w"]``, ``x``):
    one row per layer and leaf."""
    width = max([len(leaf.path) for _, report in results for leaf in report.leaves] + [8])
    lines = [f"{'layer':<28} {'leaf':<{width}} {'rel error':>9}  status", "-" * (48 + width)]
    for title, report in results:
        for leaf in report.leaves:
            lines.append(f"{title:<28} {leaf.path:<{width}} {leaf.rel_error:9.2e}  {leaf.status}{leaf.counts()}")
    return "\n".join(lines)
