"""The Numba layers agree with the plain-NumPy references, forward and backward, ties included."""

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

import funcnn as fn
from funcnn.testing import conv_problems, pool_problems
from funcnn.tree import tree_leaves

TOL = {np.dtype(np.float32): dict(rtol=1e-4, atol=1e-4), np.dtype(np.float64): dict(rtol=1e-10, atol=1e-10)}


def assert_same_layer(fast, naive, params, x, exact=False):
    y_fast, vjp_fast = fast(params, x)
    y_naive, vjp_naive = naive(params, x)
    tol = dict(rtol=0, atol=0) if exact else TOL[x.dtype]
    np.testing.assert_allclose(y_fast, y_naive, **tol)
    dy = np.random.default_rng(1).standard_normal(y_fast.shape).astype(x.dtype)
    for a, b in zip(tree_leaves(vjp_fast(dy)), tree_leaves(vjp_naive(dy))):
        np.testing.assert_allclose(a, b, **tol)


@given(conv_problems())
def test_conv_fast_equals_naive(p):
    assert_same_layer(fn.conv(**p.conv_param), fn.conv_naive(**p.conv_param), p.params, p.x)


@given(pool_problems(), st.booleans())
def test_pool_fast_equals_naive(p, ties):
    x = np.round(p.x * 2) if ties else p.x  # rounding makes many equal values
    assert_same_layer(fn.max_pool(**p.pool_param), fn.max_pool_naive(**p.pool_param), (), x, exact=True)


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
