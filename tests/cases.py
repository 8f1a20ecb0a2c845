"""Generated (layer, params, x) cases for the contract tests: every layer, sandwich and a few chains."""

import numpy as np
from hypothesis import strategies as st

import funcnn as fn
from funcnn.testing import (
    affine_problems,
    classification_problems,
    conv_problems,
    float_dtypes,
    group_norm_problems,
    layer_norm_problems,
    pool_problems,
)


@st.composite
def relu_cases(draw, dtype=None):
    dtype = draw(float_dtypes) if dtype is None else dtype
    shape = tuple(draw(st.lists(st.integers(1, 4), min_size=1, max_size=4)))
    x = np.random.default_rng(draw(st.integers(0, 2**16))).standard_normal(shape).astype(dtype)
    return fn.relu, (), x


@st.composite
def elementwise_cases(draw, layer, dtype=None):
    """An activation on standard-normal x of any shape (a kink at 0 is hit with probability 0)."""
    dtype = draw(float_dtypes) if dtype is None else dtype
    shape = tuple(draw(st.lists(st.integers(1, 4), min_size=1, max_size=4)))
    x = np.random.default_rng(draw(st.integers(0, 2**16))).standard_normal(shape).astype(dtype)
    return layer, (), x


def leaky_relu_cases(dtype=None):
    return st.floats(0, 1).flatmap(lambda alpha: elementwise_cases(fn.leaky_relu(alpha), dtype))


def avg_pool_cases(dtype=None):
    return pool_problems(dtype).map(lambda p: (fn.avg_pool(**p.pool_param), (), p.x))


def global_avg_pool_cases(dtype=None):
    return pool_problems(dtype).map(lambda p: (fn.global_avg_pool, (), p.x))


def layer_norm_cases(dtype=None):
    return layer_norm_problems(dtype).map(lambda p: (fn.layer_norm(), p.params, p.x))


def group_norm_cases(dtype=None):
    return group_norm_problems(dtype).map(lambda p: (fn.group_norm(p.groups), p.params, p.x))


def conv_cases(dtype=None, naive=False):
    factory = fn.conv_naive if naive else fn.conv
    return conv_problems(dtype).map(lambda p: (factory(**p.conv_param), p.params, p.x))


@st.composite
def conv_wide_cases(draw, dtype=None):
    """Convs over few input channels (1-4) with wide kernels (at least 64 taps, C * HH * WW), strides 1-3, like
    the course's first conv."""
    dtype = draw(float_dtypes) if dtype is None else dtype
    c = draw(st.integers(1, 4))
    side = int(np.ceil(np.sqrt(64 / c)))  # the smallest square kernel with enough taps
    hh, ww = draw(st.integers(side, side + 2)), draw(st.integers(side, side + 2))
    n, f = draw(st.integers(1, 3)), draw(st.integers(1, 6))
    stride, pad = draw(st.integers(1, 3)), draw(st.integers(0, 3))
    height, width = draw(st.integers(max(1, hh - 2 * pad), hh + 4)), draw(st.integers(max(1, ww - 2 * pad), ww + 4))
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    params = {"w": rng.standard_normal((f, c, hh, ww)).astype(dtype), "b": rng.standard_normal(f).astype(dtype)}
    return fn.conv(stride, pad), params, rng.standard_normal((n, c, height, width)).astype(dtype)


def pool_cases(dtype=None, naive=False):
    factory = fn.max_pool_naive if naive else fn.max_pool
    return pool_problems(dtype).map(lambda p: (factory(**p.pool_param), (), p.x))


def affine_cases(dtype=None):
    return affine_problems(dtype).map(lambda p: (fn.affine, p.params, p.x))


def affine_relu_cases(dtype=None):
    return affine_problems(dtype).map(lambda p: (fn.affine_relu, p.params, p.x))


def conv_relu_cases(dtype=None):
    return conv_problems(dtype).map(lambda p: (fn.conv_relu(**p.conv_param), p.params, p.x))


@st.composite
def conv_relu_pool_cases(draw, dtype=None):
    p = draw(conv_problems(dtype, max_size=8))
    layer = fn.conv_relu_pool(p.conv_param, {"pool_height": 2, "pool_width": 2, "stride": 2})
    conv_out = fn.conv(**p.conv_param)(p.params, p.x)[0]
    if min(conv_out.shape[2:]) < 2:  # too small to pool 2x2: pool 1x1 instead
        layer = fn.conv_relu_pool(p.conv_param, {"pool_height": 1, "pool_width": 1, "stride": 1})
    return layer, p.params, p.x


@st.composite
def two_layer_net_cases(draw, dtype=None):
    """The course's two-layer net, ending in a loss: affine - relu - affine - softmax/svm."""
    p = draw(affine_problems(dtype))
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    hidden, classes = p.params["w"].shape[1], draw(st.integers(2, 5))
    dtype = p.x.dtype
    params2 = {
        "w": rng.standard_normal((hidden, classes)).astype(dtype),
        "b": rng.standard_normal(classes).astype(dtype),
    }
    y = rng.integers(0, classes, size=p.x.shape[0])
    loss = draw(st.sampled_from([fn.softmax_loss, fn.svm_loss]))
    net = fn.chain(fn.affine, fn.relu, fn.affine, fn.loss_layer(loss, y))
    return net, (p.params, (), params2, ()), p.x


@st.composite
def convnet_cases(draw, dtype=None):
    """conv-relu-pool sandwich, then affine, then softmax: a small three-layer convnet."""
    layer, params, x = draw(conv_relu_pool_cases(dtype))
    features = int(np.prod(layer(params, x)[0].shape[1:]))
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    head = {"w": rng.standard_normal((features, 3)).astype(x.dtype), "b": rng.standard_normal(3).astype(x.dtype)}
    y = rng.integers(0, 3, size=x.shape[0])
    return fn.chain(layer, fn.affine, fn.loss_layer(fn.softmax_loss, y)), (params, head, ()), x


@st.composite
def loss_cases(draw, dtype=None):
    p = draw(classification_problems(dtype))
    loss = draw(st.sampled_from([fn.softmax_loss, fn.svm_loss]))
    return fn.loss_layer(loss, p.y), (), p.scores


CASES = {
    "affine": affine_cases,
    "relu": relu_cases,
    "conv": conv_cases,
    "conv_naive": lambda dtype=None: conv_cases(dtype, naive=True),
    "conv_wide": conv_wide_cases,
    "max_pool": pool_cases,
    "max_pool_naive": lambda dtype=None: pool_cases(dtype, naive=True),
    "affine_relu": affine_relu_cases,
    "conv_relu": conv_relu_cases,
    "conv_relu_pool": conv_relu_pool_cases,
    "loss": loss_cases,
    "two_layer_net": two_layer_net_cases,
    "convnet": convnet_cases,
    "leaky_relu": leaky_relu_cases,
    "tanh": lambda dtype=None: elementwise_cases(fn.tanh, dtype),
    "sigmoid": lambda dtype=None: elementwise_cases(fn.sigmoid, dtype),
    "avg_pool": avg_pool_cases,
    "global_avg_pool": global_avg_pool_cases,
    "layer_norm": layer_norm_cases,
    "group_norm": group_norm_cases,
}
