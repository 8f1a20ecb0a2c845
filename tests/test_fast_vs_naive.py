"""The Numba layers agree with the plain-NumPy references, forward and backward, ties included."""

import numpy as np
import pytest
from bounds import assert_conv_matches_reference, conv_magnitudes
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import funcnn as fn
from funcnn.testing import conv_problems, pool_problems
from funcnn.tree import tree_leaves


@given(conv_problems())
def test_conv_fast_equals_naive(p):
    """Equal to rounding: within the bound of two summation orders of the same sums (tests/bounds.py)."""
    y, vjp = fn.conv(**p.conv_param)(p.params, p.x)
    dy = np.random.default_rng(1).standard_normal(y.shape).astype(p.x.dtype)
    grads, dx = vjp(dy)
    assert y.dtype == dx.dtype == grads["w"].dtype == p.x.dtype
    assert_conv_matches_reference(y, grads, dx, p.conv_param, p.params, p.x, dy)


@given(pool_problems(), st.booleans())
def test_pool_fast_equals_naive(p, ties):
    """Max-pool selects and adds without rounding differences: fast and naive agree exactly."""
    x = np.round(p.x * 2) if ties else p.x  # rounding makes many equal values
    fast, naive = fn.max_pool(**p.pool_param), fn.max_pool_naive(**p.pool_param)
    (y_fast, vjp_fast), (y_naive, vjp_naive) = fast((), x), naive((), x)
    np.testing.assert_array_equal(y_fast, y_naive)
    dy = np.random.default_rng(1).standard_normal(y_fast.shape).astype(x.dtype)
    for a, b in zip(tree_leaves(vjp_fast(dy)), tree_leaves(vjp_naive(dy))):
        np.testing.assert_array_equal(a, b)


@given(pool_problems(ties=True))
def test_pool_tie_gradient_goes_to_first_maximum(p):
    """Recompute each window's winner by hand: the first maximum in row-major order."""
    layer = fn.max_pool(**p.pool_param)
    y, vjp = layer((), p.x)
    dy = np.arange(1, y.size + 1, dtype=p.x.dtype).reshape(y.shape)
    _, dx = vjp(dy)
    expected = np.zeros_like(p.x)
    for n, c, i, j in np.ndindex(y.shape):
        h0, w0 = i * p.stride, j * p.stride
        window = p.x[n, c, h0 : h0 + p.pool_height, w0 : w0 + p.pool_width]
        a, b = np.unravel_index(np.argmax(window), window.shape)
        assert window[a, b] == y[n, c, i, j]
        expected[n, c, h0 + a, w0 + b] += dy[n, c, i, j]
    np.testing.assert_array_equal(dx, expected)


def test_overlapping_windows_add_their_gradients():
    x = np.array([[[[0.0, 1.0, 0.0], [0.0, 0.0, 0.0], [0.0, 0.0, 0.0]]]])
    for layer in (
        fn.max_pool(pool_height=2, pool_width=2, stride=1),
        fn.max_pool_naive(pool_height=2, pool_width=2, stride=1),
    ):
        y, vjp = layer((), x)
        np.testing.assert_array_equal(y[0, 0], [[1.0, 1.0], [0.0, 0.0]])
        _, dx = vjp(np.ones_like(y))
        # the 1.0 wins both top windows; each bottom window ties at 0 and picks its first element
        np.testing.assert_array_equal(dx[0, 0], [[0.0, 2.0, 0.0], [1.0, 1.0, 0.0], [0.0, 0.0, 0.0]])


@settings(max_examples=10)
@given(conv_problems(dtype=np.float32))
def test_the_rounding_bound_rejects_an_error_above_rounding(p):
    """The bound catches a dw element off by 1e-3 of its terms' magnitude (the bound is 2 gamma(n) of it, n <= 243:
    at most 3e-5 in float32)."""
    y, vjp = fn.conv(**p.conv_param)(p.params, p.x)
    dy = np.ones_like(y)
    grads, dx = vjp(dy)
    magnitude = conv_magnitudes(p.conv_param, p.params, p.x, dy)["w"]
    assume(magnitude.max() > 0)  # some kernels see only padding: their dw is exactly 0
    wrong = {**grads, "w": grads["w"].copy()}
    wrong["w"].flat[magnitude.argmax()] += 1e-3 * magnitude.max()
    with pytest.raises(AssertionError, match="dw"):
        assert_conv_matches_reference(y, wrong, dx, p.conv_param, p.params, p.x, dy)
