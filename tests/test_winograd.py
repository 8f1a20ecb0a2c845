"""Winograd F(2x2, 3x3), which serves 3x3 stride-1 convs with many channels, equals the reference
within the rounding bound of its transforms and products (tests/bounds.py), in float32 and float64."""

import numpy as np
import pytest
from bounds import assert_conv_matches_reference
from hypothesis import given, settings
from hypothesis import strategies as st

import funcnn as fn
import funcnn.layers._conv_fast as conv_fast
from funcnn.core import pull_back
from funcnn.layers import _conv_direct


@pytest.fixture(autouse=True, scope="module")
def no_tiles():
    """float32 convs run on register tiles where the CPU has them (test_conv_direct.py): off here, so that
    Winograd, which serves float32 on the CPUs without, is tested in both dtypes on every machine."""
    _conv_direct.set_tile_lanes(0)
    yield
    _conv_direct.set_tile_lanes(None)


@st.composite
def winograd_problems(draw):
    """3x3 stride-1 problems with 16-20 channels each way, pad 0-2, odd and even sizes down to a 1x1 output."""
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    n, c, f, pad = (
        draw(st.integers(1, 3)),
        draw(st.integers(16, 20)),
        draw(st.integers(16, 20)),
        draw(st.integers(0, 2)),
    )
    height, width = draw(st.integers(max(1, 3 - 2 * pad), 9)), draw(st.integers(max(1, 3 - 2 * pad), 9))
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    x = rng.standard_normal((n, c, height, width)).astype(dtype)
    params = {"w": rng.standard_normal((f, c, 3, 3)).astype(dtype), "b": rng.standard_normal(f).astype(dtype)}
    return x, params, pad


@settings(max_examples=40)
@given(winograd_problems())
def test_winograd_equals_naive(problem):
    x, params, pad = problem
    assert conv_fast._uses_winograd(params["w"], 1, pad)
    y, vjp = fn.conv(1, pad)(params, x)
    dy = np.random.default_rng(0).standard_normal(y.shape).astype(x.dtype)
    grads, dx = vjp(dy)
    assert y.dtype == dx.dtype == grads["w"].dtype == grads["b"].dtype == x.dtype
    assert_conv_matches_reference(y, grads, dx, {"stride": 1, "pad": pad}, params, x, dy, winograd=True)


@settings(max_examples=10)
@given(winograd_problems())
def test_winograd_vjp_passes_check_vjp_and_skips_dx(problem):
    x, params, pad = problem
    layer = fn.conv(1, pad)
    report = fn.check_vjp(layer, params, x)
    assert all(leaf.status == "ok" for leaf in report.leaves)
    y, vjp = layer(params, x)
    grads, dx = pull_back(vjp, np.ones_like(y), need_dx=False)
    assert dx is None
    np.testing.assert_array_equal(grads["w"], vjp(np.ones_like(y))[0]["w"])


def test_winograd_is_used_only_where_it_applies():
    w = np.zeros((16, 16, 3, 3))
    assert conv_fast._uses_winograd(w, 1, 1)
    assert not conv_fast._uses_winograd(w, 2, 1)  # stride 2
    assert not conv_fast._uses_winograd(w, 1, 3)  # dx would need a negative pad
    assert not conv_fast._uses_winograd(np.zeros((16, 3, 3, 3)), 1, 1)  # few channels: im2col
    assert not conv_fast._uses_winograd(np.zeros((16, 16, 5, 5)), 1, 1)


def test_nan_in_winograd_input_stays_in_its_outputs():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((1, 16, 6, 6))
    x[0, 3, 2, 2] = np.nan
    params = {"w": rng.standard_normal((16, 16, 3, 3)), "b": np.zeros(16)}
    y, _ = fn.conv(1, 1)(params, x)
    y_ref, _ = fn.conv_naive(1, 1)(params, x)
    np.testing.assert_array_equal(np.isnan(y), np.isnan(y_ref))
