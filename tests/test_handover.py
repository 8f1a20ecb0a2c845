"""Handing arrays over: ``sole`` tells an array nobody else can see, and only such an array is written
into (ReLU's dx into dy, a conv's dx into dy, ReLU's y into a chain's fresh conv output), with the
answers of the ordinary path, bitwise; inputs and caller-held arrays are never modified."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import funcnn as fn
from funcnn.layers._handover import hand_over, sole
from funcnn.tree import tree_leaves


def test_sole_sees_every_other_holder():
    fresh = np.ones(10)
    assert sole(fresh)
    held = np.ones(10)
    others = [held]
    assert not sole(held)
    view_of_fresh = np.ones(10).reshape(2, 5)
    assert sole(view_of_fresh)
    base = np.ones(10)
    view = base.reshape(2, 5)
    assert not sole(view) and not sole(base)  # either one sees the other's writes
    assert not sole(np.ones(10)[::2])  # not contiguous
    frozen = np.ones(10)
    frozen.flags.writeable = False
    assert not sole(frozen)
    numba_made, _ = fn.relu((), np.ones((2, 3)))  # an array Numba allocated: its base is Numba's MemInfo
    assert sole(numba_made)
    assert others


def handed(vjp, dy):
    """``vjp`` called on a copy of ``dy`` handed over, and whether its dx took the copy's memory."""
    copy = dy.copy()
    address = copy.ctypes.data
    box = [copy]
    del copy
    grads, dx = hand_over(vjp, box, True)
    return grads, dx, dx.ctypes.data == address


CONVS = [  # x, w, stride, pad: Winograd (3x3, 16 channels), im2col, 1x1, and dx smaller or larger than dy
    ((3, 16, 8, 8), (16, 16, 3, 3), 1, 1, True),
    ((3, 16, 8, 8), (20, 16, 3, 3), 1, 1, True),
    ((3, 16, 8, 8), (32, 16, 3, 3), 1, 1, False),  # dx under 3/4 of dy: a new array (_conv_fast._fits)
    ((3, 32, 8, 8), (16, 32, 3, 3), 1, 1, False),  # dx larger than dy: a new array
    ((3, 4, 9, 9), (6, 4, 3, 3), 2, 1, False),
    ((3, 8, 6, 6), (8, 8, 1, 1), 1, 0, True),
    ((2, 3, 7, 7), (4, 3, 5, 5), 1, 2, True),
    ((2, 3, 7, 7), (5, 3, 5, 5), 1, 2, False),
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(("xs", "ws", "stride", "pad", "reused"), CONVS)
def test_a_conv_writes_dx_into_a_handed_over_dy_with_the_same_answer(dtype, xs, ws, stride, pad, reused):
    rng = np.random.default_rng(0)
    x, w = rng.standard_normal(xs).astype(dtype), rng.standard_normal(ws).astype(dtype)
    params = {"w": w, "b": rng.standard_normal(ws[0]).astype(dtype)}
    y, vjp = fn.conv(stride=stride, pad=pad)(params, x)
    dy = rng.standard_normal(y.shape).astype(dtype)
    dy_before = dy.copy()
    want = tree_leaves(vjp(dy))
    grads, dx, took = handed(vjp, dy)
    assert took == reused
    for a, b in zip(tree_leaves((grads, dx)), want, strict=True):
        np.testing.assert_array_equal(a, b)
        assert a.dtype == dtype
    np.testing.assert_array_equal(dy, dy_before)  # the caller's dy: only its copy was handed over
    for a, b in zip(tree_leaves(vjp(dy)), want, strict=True):  # and the vjp still gives the same answer
        np.testing.assert_array_equal(a, b)


@given(size=st.integers(1, 40), seed=st.integers(0, 2**32 - 1))
@settings(max_examples=30, deadline=None)
def test_relu_writes_dx_into_a_handed_over_dy_with_the_same_answer(size, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(size)
    x[rng.random(size) < 0.2] = 0.0
    x[rng.random(size) < 0.1] = np.nan  # NaN passes no gradient
    _, vjp = fn.relu((), x)
    dy = rng.standard_normal(size)
    dy[rng.random(size) < 0.1] = np.inf
    want = vjp(dy)[1]
    np.testing.assert_array_equal(want, np.where(x > 0, dy, 0.0))
    _, dx, took = handed(vjp, dy)
    assert took
    np.testing.assert_array_equal(dx, want)


def test_a_chains_relu_overwrites_only_a_fresh_output():
    rng = np.random.default_rng(0)
    net = fn.chain(fn.relu, fn.conv(pad=1), fn.relu, fn.identity, fn.relu)
    params = ((), {"w": rng.standard_normal((4, 3, 3, 3)), "b": np.zeros(4)}, (), (), ())
    x = rng.standard_normal((2, 3, 5, 5))
    x_before = x.copy()
    y, vjp = net(params, x)
    conv_y = fn.conv(pad=1)(params[1], np.maximum(x, 0))[0]
    np.testing.assert_array_equal(y, np.maximum(conv_y, 0))
    np.testing.assert_array_equal(x, x_before)  # the first relu reads the caller's x: a new array
    dy = rng.standard_normal(y.shape)
    want = tree_leaves(vjp(dy))
    from funcnn.layers import pull_back_last

    for a, b in zip(tree_leaves(pull_back_last(vjp, dy.copy())), want, strict=True):
        np.testing.assert_array_equal(a, b)
