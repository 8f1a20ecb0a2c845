"""The fast max-pool's NaN rule: a plane with a NaN is pooled again, and agrees with the reference."""

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

import funcnn as fn
from funcnn.testing import pool_problems


@given(pool_problems(ties=True), st.integers(0, 2**32 - 1), st.sampled_from([1, 2, 5]))
def test_pool_with_nans_equals_naive(p, seed, nans):
    x = p.x.copy()
    x.flat[np.random.default_rng(seed).integers(0, x.size, size=nans)] = np.nan
    with np.errstate(invalid="ignore"):
        y, vjp = fn.max_pool(**p.pool_param)((), x)
        y0, vjp0 = fn.max_pool_naive(**p.pool_param)((), x)
        np.testing.assert_array_equal(y, y0)
        dy = np.arange(1, y.size + 1, dtype=x.dtype).reshape(y.shape)
        np.testing.assert_array_equal(vjp(dy)[1], vjp0(dy)[1])


def test_2x2_and_3x3_kernels_pick_the_first_maximum():
    x = np.zeros((1, 1, 5, 5))
    x[0, 0, 1, 1] = x[0, 0, 2, 2] = 1.0  # a tie inside the first 3x3 window
    expected = {3: {(1, 1): 1.0, (2, 2): 3.0}, 2: {(1, 1): 1.0, (2, 2): 1.0, (0, 2): 1.0, (2, 0): 1.0}}
    for size, grads in expected.items():
        for layer in (fn.max_pool(size, size, 2), fn.max_pool_naive(size, size, 2)):
            y, vjp = layer((), x)
            want = np.zeros_like(x)
            for (h, w), g in grads.items():
                want[0, 0, h, w] = g
            np.testing.assert_array_equal(vjp(np.ones_like(y))[1], want)


@given(
    st.integers(1, 18), st.integers(1, 18), st.integers(1, 3), st.integers(1, 3), st.integers(0, 2**32 - 1),
    st.sampled_from([np.float32, np.float64]),
)  # fmt: skip
def test_the_argmax_is_a_small_offset_inside_the_window(ph, pw, stride, n, seed, dtype):
    """The kernel keeps, per output, the winner's offset i * pw + j in the smallest unsigned type (uint8
    up to 256 cells, uint16 past that), and fast equals naive on every window size, ties included."""
    from funcnn.kernels.pool import max_pool_forward
    from funcnn.layers._pool import offset_dtype

    rng = np.random.default_rng(seed)
    x = rng.integers(0, 3, size=(n, 2, ph + stride + 1, pw + 2 * stride)).astype(dtype)  # many ties
    layer, naive = fn.max_pool(ph, pw, stride), fn.max_pool_naive(ph, pw, stride)
    y, vjp = layer((), x)
    out_h, out_w = y.shape[2:]
    buffer = np.empty((*y.shape[:2], out_h, out_w), offset_dtype(ph, pw))
    _, argmax = max_pool_forward(x, buffer, ph, pw, stride, out_h, out_w)
    assert argmax.dtype == (np.uint8 if ph * pw <= 256 else np.uint16)
    assert int(argmax.max()) < ph * pw
    y0, vjp0 = naive((), x)
    dy = rng.standard_normal(y.shape).astype(dtype)
    np.testing.assert_array_equal(y, y0)
    np.testing.assert_array_equal(vjp(dy)[1], vjp0(dy)[1])
    assert vjp(dy)[1].dtype == dtype
