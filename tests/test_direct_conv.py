"""The direct conv kernel, which serves forward passes over few input channels with many taps, equals
the reference: to rounding in float64, within 1e-5 of the largest output in float32, NaN included."""

import multiprocessing
import sys

import numba
import numpy as np
import pytest
from cases import conv_direct_cases
from hypothesis import given, settings
from hypothesis import strategies as st

import funcnn as fn
import funcnn.layers._conv as conv_module
from funcnn.kernels import direct
from funcnn.testing import conv_problems

FLOAT32_BOUND = 1e-5  # measured: 1.5e-7 to 2.7e-7 of max|y| on the benchmarks' shapes (a), (d), (e)


def _kernel(x, params, stride, pad):
    w, b = params["w"], params["b"]
    out_h, out_w = ((size + 2 * pad - k) // stride + 1 for size, k in zip(x.shape[2:], w.shape[2:]))
    return direct.conv(np.ascontiguousarray(x), w, b, stride, pad, out_h, out_w)


def _assert_close_to_naive(y, x, params, stride, pad):
    as64 = {k: v.astype(np.float64) for k, v in params.items()}
    want, _ = fn.conv_naive(stride, pad)(as64, x.astype(np.float64))
    bound = FLOAT32_BOUND if x.dtype == np.float32 else 1e-12
    assert y.dtype == x.dtype and y.shape == want.shape
    np.testing.assert_allclose(y, want, rtol=0, atol=bound * max(1.0, np.abs(want).max()))


@settings(max_examples=60)
@given(conv_problems(max_channels=6, max_size=11))
def test_kernel_equals_naive_on_any_shape(p):
    """Any kernel size, stride 1-3, pad 0-2, odd sizes, filter counts off the block of 2."""
    _assert_close_to_naive(_kernel(p.x, p.params, p.stride, p.pad), p.x, p.params, p.stride, p.pad)


@settings(max_examples=30)
@given(conv_direct_cases())
def test_conv_layer_takes_the_direct_kernel_and_equals_naive(case):
    layer, params, x = case
    assert conv_module._uses_direct(params["w"])
    stride, pad = (int(part.split("=")[1]) for part in layer.name[len("conv(") : -1].split(", ")[:2])
    _assert_close_to_naive(layer(params, x)[0], x, params, stride, pad)


@settings(max_examples=40)
@given(conv_problems(max_channels=4), st.integers(0, 2**16))
def test_nan_reaches_exactly_the_outputs_whose_window_holds_it(p, seed):
    x = p.x.copy()
    rng = np.random.default_rng(seed)
    x[rng.random(x.shape) < 0.5 / p.params["w"][0].size] = np.nan  # sparse enough to leave some outputs finite
    y = _kernel(x, p.params, p.stride, p.pad)
    want, _ = fn.conv_naive(p.stride, p.pad)(p.params, x)
    np.testing.assert_array_equal(np.isnan(y), np.isnan(want))


def test_threads_split_the_batch_without_changing_the_answer():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((5, 3, 12, 12)).astype(np.float32)
    params = {"w": rng.standard_normal((6, 3, 5, 5)).astype(np.float32), "b": rng.standard_normal(6).astype(np.float32)}
    threads = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        one = _kernel(x, params, 1, 2)
    finally:
        numba.set_num_threads(threads)
    np.testing.assert_array_equal(_kernel(x, params, 1, 2), one)
    _assert_close_to_naive(one, x, params, 1, 2)


def test_direct_is_used_only_for_few_channels_and_many_taps():
    assert conv_module._uses_direct(np.zeros((32, 3, 7, 7)))  # the course's first conv
    assert conv_module._uses_direct(np.zeros((16, 3, 5, 5)))
    assert not conv_module._uses_direct(np.zeros((25, 3, 3, 3)))  # 27 taps: im2col
    assert not conv_module._uses_direct(np.zeros((32, 8, 5, 5)))  # 8 channels: im2col


@pytest.mark.skipif(sys.platform != "linux", reason="fork")
def test_a_forked_child_splits_its_batch_over_its_own_threads():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((4, 3, 10, 10))
    params = {"w": rng.standard_normal((4, 3, 5, 5)), "b": rng.standard_normal(4)}
    want = _kernel(x, params, 1, 2)  # the parent's pool exists now
    with multiprocessing.get_context("fork").Pool(1) as pool:
        got = pool.apply_async(_kernel, (x, params, 1, 2)).get(timeout=60)
    np.testing.assert_array_equal(got, want)
