"""The recurrent kernels: float32's rational tanh against float64's, and the gate passes against NumPy,
contiguous or strided (one step of an ``(N, T, G)`` array), NaN in, NaN out."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from funcnn.kernels.recurrent import (
    gru_backward_step,
    gru_forward_step,
    lstm_backward_step,
    lstm_forward_step,
    tanh_kernel,
)


def sigmoid(a):
    return 1 / (1 + np.exp(-a))


def test_float32_tanh_is_within_a_few_ulp():
    x = np.concatenate([np.linspace(-12, 12, 480_001), np.geomspace(1e-30, 1e-2, 2001)]).astype(np.float32)
    x = np.concatenate([x, -x])
    got = np.empty_like(x)
    tanh_kernel(x, got)
    want = np.tanh(x.astype(np.float64))
    # Eigen's interpolant is within a couple of ulp of tanh; its float32 evaluation (a 13/6-degree rational
    # function, Horner's scheme) adds a few roundings of the result's size: 8 ulp of tanh(x) bounds both
    bound = 8 * np.spacing(np.abs(want).astype(np.float32)).astype(np.float64)
    assert (np.abs(got - want) <= bound).all(), float(np.max(np.abs(got - want) / bound))
    assert (np.abs(got) <= 1).all() and (np.sign(got) == np.sign(x)).all()


def test_float32_tanh_of_infinities_and_nan():
    got = np.empty(3, np.float32)
    tanh_kernel(np.array([np.inf, -np.inf, np.nan], np.float32), got)
    assert got[0] == 1 and got[1] == -1 and np.isnan(got[2])


def gates(dtype, rng, n, h, g, strided):
    """An (n, g * h) array, contiguous or one step of an (n, 3, g * h) array."""
    a = rng.standard_normal((n, 3, g * h)).astype(dtype) * 2
    return a[:, 1] if strided else np.ascontiguousarray(a[:, 1])


def bound(dtype, *values):
    # a few elementwise operations and tanh (within 8 ulp in float32, see above) per output
    return 40 * np.finfo(dtype).eps * (1 + max(np.abs(v).max() for v in values))


@settings(max_examples=30, deadline=None)
@given(
    st.sampled_from([np.float32, np.float64]),
    st.integers(1, 5),
    st.integers(1, 40),
    st.booleans(),
    st.integers(0, 2**32 - 1),
)
def test_lstm_kernels_match_numpy(dtype, n, h, strided, seed):
    rng = np.random.default_rng(seed)
    hw, xw = gates(dtype, rng, n, h, 4, strided), gates(dtype, rng, n, h, 4, strided)
    prev_c = rng.standard_normal((n, h)).astype(dtype)
    out = [np.empty((n, 4 * h), dtype), *(np.empty((n, h), dtype) for _ in range(3))]
    lstm_forward_step(hw, xw, prev_c, *out)
    a = (hw + xw).astype(np.float64)
    i, f, o, g = sigmoid(a[:, :h]), sigmoid(a[:, h : 2 * h]), sigmoid(a[:, 2 * h : 3 * h]), np.tanh(a[:, 3 * h :])
    c = f * prev_c + i * g
    for got, want in zip(out, (np.concatenate([i, f, o, g], axis=1), c, np.tanh(c), o * np.tanh(c))):
        assert got.dtype == dtype
        np.testing.assert_allclose(got, want, rtol=0, atol=bound(dtype, a, prev_c))
    dh_out, dh_rec, dc = (rng.standard_normal((n, h)).astype(dtype) for _ in range(3))
    da, dprev_c = np.empty((n, 4 * h), dtype), np.empty((n, h), dtype)
    lstm_backward_step(out[0], prev_c, out[2], dh_out, dh_rec, dc, da, dprev_c)
    i, f, o, g = (out[0][:, k * h : (k + 1) * h].astype(np.float64) for k in range(4))
    tc, dh = out[2].astype(np.float64), (dh_out + dh_rec).astype(np.float64)
    dcj = dc + dh * o * (1 - tc * tc)
    want = np.concatenate(
        [dcj * g * i * (1 - i), dcj * prev_c * f * (1 - f), dh * tc * o * (1 - o), dcj * i * (1 - g * g)], 1
    )
    np.testing.assert_allclose(da, want, rtol=0, atol=bound(dtype, dcj, dh))
    np.testing.assert_allclose(dprev_c, dcj * f, rtol=0, atol=bound(dtype, dcj))


@settings(max_examples=30, deadline=None)
@given(
    st.sampled_from([np.float32, np.float64]),
    st.integers(1, 5),
    st.integers(1, 40),
    st.booleans(),
    st.integers(0, 2**32 - 1),
)
def test_gru_kernels_match_numpy(dtype, n, h, strided, seed):
    rng = np.random.default_rng(seed)
    xa, ha = gates(dtype, rng, n, h, 3, strided), np.ascontiguousarray(gates(dtype, rng, n, h, 3, False))
    bh, prev = rng.standard_normal(3 * h).astype(dtype), rng.standard_normal((n, h)).astype(dtype)
    hw = ha.copy()
    gate_out, next_h = np.empty((n, 3 * h), dtype), np.empty((n, h), dtype)
    gru_forward_step(xa, ha, bh, prev, gate_out, next_h)
    np.testing.assert_array_equal(ha, hw + bh)  # the kernel adds the bias in place
    r, z = sigmoid(xa[:, :h] + ha[:, :h]), sigmoid(xa[:, h : 2 * h] + ha[:, h : 2 * h])
    nn = np.tanh(xa[:, 2 * h :] + r * ha[:, 2 * h :])
    np.testing.assert_allclose(gate_out, np.concatenate([r, z, nn], 1), rtol=0, atol=bound(dtype, xa, ha))
    np.testing.assert_allclose(next_h, (1 - z) * nn + z * prev, rtol=0, atol=bound(dtype, xa, ha, prev))
    dh_out, dh_rec = (rng.standard_normal((n, h)).astype(dtype) for _ in range(2))
    dxa, dha, direct = np.empty((n, 3 * h), dtype), np.empty((n, 3 * h), dtype), np.empty((n, h), dtype)
    gru_backward_step(gate_out, ha, prev, dh_out, dh_rec, dxa, dha, direct)
    r, z, nn = (gate_out[:, k * h : (k + 1) * h] for k in range(3))
    dh = dh_out + dh_rec
    dan = dh * (1 - z) * (1 - nn * nn)
    daz, dar = dh * (prev - nn) * z * (1 - z), dan * ha[:, 2 * h :] * r * (1 - r)
    tol = bound(dtype, dh, ha, prev)
    np.testing.assert_allclose(dxa, np.concatenate([dar, daz, dan], 1), rtol=0, atol=tol)
    np.testing.assert_allclose(dha, np.concatenate([dar, daz, dan * r], 1), rtol=0, atol=tol)
    np.testing.assert_allclose(direct, dh * z, rtol=0, atol=tol)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_nan_in_nan_out(dtype):
    hw = np.zeros((1, 8), dtype)
    hw[0, 1] = np.nan  # the input gate of unit 1
    out = [np.empty((1, 8), dtype), *(np.empty((1, 2), dtype) for _ in range(3))]
    lstm_forward_step(hw, np.zeros_like(hw), np.zeros((1, 2), dtype), *out)
    assert np.isnan(out[3][0, 1]) and not np.isnan(out[3][0, 0])
