"""The training fast paths keep the layer contract: a vjp stays right after later calls of its layer
(no buffer shared between calls), ``need_dx=False`` changes nothing but ``dx``, and the special
kernels (1x1 conv, fused relu) equal the references."""

import numpy as np
import pytest
from bounds import assert_conv_matches_reference
from cases import CASES
from hypothesis import given, settings
from hypothesis import strategies as st

import funcnn as fn
from funcnn.core import pull_back
from funcnn.testing import conv_problems
from funcnn.tree import tree_leaves, tree_map

names = pytest.mark.parametrize("name", list(CASES))


def _other(tree, seed):
    """Same shapes and dtypes, other values."""
    rng = np.random.default_rng(seed)
    return tree_map(lambda a: rng.standard_normal(np.shape(a)).astype(np.asarray(a).dtype), tree)


def _forward(data, name):
    """A generated case run forward: ``(layer, params, x, vjp, dy)`` with a random ``dy``."""
    layer, params, x = data.draw(CASES[name]())
    y, vjp = layer(params, x)
    return layer, params, x, vjp, np.random.default_rng(1).standard_normal(y.shape).astype(y.dtype)


@names
@settings(max_examples=10)
@given(data=st.data())
def test_a_vjp_is_unchanged_by_later_calls_of_its_layer(name, data):
    layer, params, x, vjp, dy = _forward(data, name)
    before = vjp(dy)
    for seed in range(3):  # later calls, with their own inputs, forward and backward
        y2, vjp2 = layer(_other(params, seed), _other(x, seed + 10))
        vjp2(np.ones_like(y2))
    for a, b in zip(tree_leaves(vjp(dy)), tree_leaves(before)):
        np.testing.assert_array_equal(a, b)


@names
@settings(max_examples=10)
@given(data=st.data())
def test_need_dx_false_gives_the_same_params_gradient(name, data):
    _, _, _, vjp, dy = _forward(data, name)
    dparams, dx = vjp(dy)
    dparams_only, dx_only = pull_back(vjp, dy, need_dx=False)
    for a, b in zip(tree_leaves(dparams_only), tree_leaves(dparams)):
        np.testing.assert_array_equal(a, b)
    assert dx_only is None or np.array_equal(dx_only, dx)


def test_need_dx_false_skips_dx_only_in_the_first_layer():
    rng = np.random.default_rng(0)
    net = fn.chain(fn.conv_relu(stride=1, pad=1, filters=4, kernel_size=3), fn.max_pool(), fn.dense(3))
    _, params = fn.init_params(net, rng, (2, 6, 6), dtype=np.float64)
    x = rng.standard_normal((5, 2, 6, 6))
    y, vjp = net(params, x)
    grads, dx = pull_back(vjp, np.ones_like(y), need_dx=False)
    assert dx is None
    full, _ = vjp(np.ones_like(y))
    for a, b in zip(tree_leaves(grads), tree_leaves(full)):
        np.testing.assert_array_equal(a, b)
    # a vjp that cannot skip dx still gives it
    _, relu_vjp = fn.relu((), x)
    assert pull_back(relu_vjp, x, need_dx=False)[1].shape == x.shape


def test_value_and_grad_equals_the_full_backward():
    rng = np.random.default_rng(0)
    net = fn.nets.three_layer_convnet(num_filters=4, filter_size=3, hidden_dim=5, num_classes=3)
    _, params = fn.init_params(net, rng, (2, 8, 8), dtype=np.float64)
    x, y = rng.standard_normal((6, 2, 8, 8)), rng.integers(0, 3, 6)
    value, grads = fn.value_and_grad(net)(params, x, y)
    scores, vjp = net(params, x)
    loss, loss_vjp = fn.softmax_loss(scores, y)
    assert value == loss
    for a, b in zip(tree_leaves(grads), tree_leaves(vjp(loss_vjp(1.0))[0])):
        np.testing.assert_array_equal(a, b)


@settings(max_examples=30)
@given(conv_problems(), st.integers(1, 6))
def test_pointwise_conv_equals_naive(p, filters):
    """A 1x1 stride-1 conv reads x as its columns; it must still equal the reference."""
    rng = np.random.default_rng(0)
    c, dtype = p.x.shape[1], p.x.dtype
    params = {
        "w": rng.standard_normal((filters, c, 1, 1)).astype(dtype),
        "b": rng.standard_normal(filters).astype(dtype),
    }
    y, vjp = fn.conv()(params, p.x)
    dy = rng.standard_normal(y.shape).astype(dtype)
    assert_conv_matches_reference(y, *vjp(dy), {"stride": 1, "pad": 0}, params, p.x, dy)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_relu_kernel_edges(dtype):
    x = np.array([[-1.0, -0.0, 0.0, 2.0, np.nan, np.inf, -np.inf]], dtype=dtype)
    y, vjp = fn.relu((), x)
    np.testing.assert_array_equal(y, [[0, 0, 0, 2, np.nan, np.inf, 0]])
    _, dx = vjp(np.array([[1, 1, 1, 1, 1, 1, np.nan]], dtype=dtype))
    np.testing.assert_array_equal(dx, [[0, 0, 0, 1, 0, 1, 0]])
    assert y.dtype == dx.dtype == dtype
    y0, vjp0 = fn.relu((), np.array(3.0, dtype=dtype))  # 0-d keeps its shape
    assert y0.shape == () and vjp0(np.array(1.0, dtype=dtype))[1].shape == ()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@given(size=st.integers(1, 70), seed=st.integers(0, 2**32 - 1))
@settings(max_examples=20, deadline=None)
def test_relu_kernels_in_place_give_the_bits_of_a_fresh_output(dtype, size, seed):
    """In place, the kernels run a loop of their own (one array as source and destination: see
    funcnn/kernels/elementwise.py); it must give the other loop's bits, signed zeros and NaN included."""
    from funcnn.kernels.elementwise import relu_backward, relu_forward

    rng = np.random.default_rng(seed)
    x = rng.choice(np.array([-1.5, -0.0, 0.0, 2.0, np.nan, np.inf, -np.inf, 0.5], dtype), size)
    y, bits = relu_forward(x, np.empty_like(x))
    same = x.copy()
    y_in_place, bits_in_place = relu_forward(same, same)
    assert y_in_place is same
    np.testing.assert_array_equal(y_in_place.view(f"u{x.itemsize}"), y.view(f"u{x.itemsize}"))
    np.testing.assert_array_equal(bits_in_place, bits)
    dy = rng.standard_normal(size).astype(dtype).view(f"u{x.itemsize}")
    dx = relu_backward(bits, dy, np.empty_like(dy))
    handed = dy.copy()
    np.testing.assert_array_equal(relu_backward(bits, handed, handed), dx)


@names
@settings(max_examples=10)
@given(data=st.data())
def test_float32_kernels_pass_check_vjp_in_float32(name, data):
    """Every layer's float32 path, as training runs it, checked in float32 (float32 differences)."""
    layer, params, x = data.draw(CASES[name](np.float32))
    report = fn.check_vjp(layer, params, x, dtype=np.float32, on_kink="ignore")
    assert all(leaf.status in ("ok", "kink") for leaf in report.leaves)


@settings(max_examples=10)
@given(seed=st.integers(0, 2**16))
def test_float32_winograd_passes_check_vjp_against_float64_differences(seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((2, 16, 6, 7)).astype(np.float32)
    params = {
        "w": rng.standard_normal((16, 16, 3, 3)).astype(np.float32),
        "b": rng.standard_normal(16).astype(np.float32),
    }
    report = fn.check_vjp(fn.conv(1, 1), params, x, dtype=np.float32, numeric_dtype=np.float64)
    assert all(leaf.status == "ok" for leaf in report.leaves)
