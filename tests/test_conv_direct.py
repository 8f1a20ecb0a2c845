"""The direct conv (register tiles, no columns: funcnn/layers/_conv_direct.py) equals the reference within
the rounding bound of a direct method (tests/bounds.py), for the AVX-512 tile (16 lanes) and the AVX2 tile
(8 lanes) on any x86 machine with AVX2 (LLVM splits a vector wider than the machine's), and hands over to
the columns path where it does not apply (lanes 0 stands for a CPU without either)."""

import numpy as np
import pytest
from bounds import assert_conv_matches_reference, assert_within, conv_error_bounds
from hypothesis import given, settings
from hypothesis import strategies as st

import funcnn as fn
import funcnn.layers._conv_fast as conv_fast
from funcnn.core import pull_back
from funcnn.kernels import tiles
from funcnn.layers import _conv_direct as direct
from funcnn.layers._handover import hand_over
from funcnn.tree import tree_leaves

LANES = [16, 8]


@pytest.fixture
def tile_lanes():
    """Set the tile width for one test, then the CPU's again."""
    yield direct.set_tile_lanes
    direct.set_tile_lanes(None)


def _problem(draw, c: int, f: int, hh: int, ww: int, pad: int, max_height: int, max_width: int):
    """A float32 problem ``(x, params, pad)`` of 1-3 images with C channels, F filters, an HH x WW kernel."""
    n = draw(st.integers(1, 3))
    height = draw(st.integers(max(1, hh - 2 * pad), max_height))
    width = draw(st.integers(max(1, ww - 2 * pad), max_width))
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    x = rng.standard_normal((n, c, height, width)).astype(np.float32)
    params = {"w": rng.standard_normal((f, c, hh, ww)).astype(np.float32),
              "b": rng.standard_normal(f).astype(np.float32)}  # fmt: skip
    return x, params, pad


@st.composite
def direct_problems(draw):
    """Stride-1 float32 problems with 2-8 input channels, 3-10 filters (both tiles' row counts, overlapping
    blocks), output widths below, at and past whole vectors of 8 and 16, non-square kernels and paddings."""
    c, f = draw(st.integers(2, 8)), draw(st.integers(3, 10))
    hh, ww, pad = draw(st.integers(2, 5)), draw(st.integers(2, 5)), draw(st.integers(0, 3))
    return _problem(draw, c, f, hh, ww, pad, 12, 40)


@pytest.mark.parametrize("lanes", LANES)
@settings(max_examples=25, deadline=None)
@given(problem=direct_problems())
def test_direct_conv_equals_naive_and_its_vjp_repeats(lanes, problem):
    x, params, pad = problem
    direct.set_tile_lanes(lanes)
    try:
        if not direct.uses_direct(x, params["w"], 1, pad):  # too few taps, or a plane smaller than a tile
            return
        x_before, w_before = x.copy(), params["w"].copy()
        y, vjp = fn.conv(1, pad)(params, x)
        dy = np.random.default_rng(1).standard_normal(y.shape).astype(np.float32)
        first, second = vjp(dy), vjp(dy)
    finally:
        direct.set_tile_lanes(None)
    for a, b in zip(tree_leaves(first), tree_leaves(second)):
        np.testing.assert_array_equal(a, b)
        assert a.dtype == np.float32
    assert y.dtype == np.float32
    np.testing.assert_array_equal(x, x_before)
    np.testing.assert_array_equal(params["w"], w_before)
    assert_conv_matches_reference(y, *first, {"stride": 1, "pad": pad}, params, x, dy)


@pytest.mark.parametrize("lanes", LANES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])  # float64 keeps the columns path
def test_direct_conv_passes_check_vjp_and_skips_dx(lanes, dtype, tile_lanes):
    tile_lanes(lanes)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, 9, 18))
    params = {"w": rng.standard_normal((9, 3, 3, 4)), "b": rng.standard_normal(9)}
    layer = fn.conv(1, 1)
    assert direct.uses_direct(x.astype(np.float32), params["w"], 1, 1)
    report = fn.check_vjp(layer, params, x, dtype=dtype, numeric_dtype=np.float64)
    assert all(leaf.status == "ok" for leaf in report.leaves)
    x32 = x.astype(np.float32)
    params32 = {k: v.astype(np.float32) for k, v in params.items()}
    y, vjp = layer(params32, x32)
    grads, dx = pull_back(vjp, np.ones_like(y), need_dx=False)
    assert dx is None
    np.testing.assert_array_equal(grads["w"], vjp(np.ones_like(y))[0]["w"])


def test_direct_conv_is_used_only_where_it_applies(tile_lanes):
    tile_lanes(16)
    x, w = np.zeros((2, 3, 32, 32), np.float32), np.zeros((32, 3, 7, 7), np.float32)
    assert direct.uses_direct(x, w, 1, 3)
    assert not direct.uses_direct(x.astype(np.float64), w, 1, 3)  # float64: columns
    assert not direct.uses_direct(x, w, 2, 3)  # stride 2
    assert not direct.uses_direct(x, w[:, :, :3, :3], 1, 1)  # 27 taps: fewer than DIRECT_MIN_TAPS
    assert not direct.uses_direct(x, w[:2], 1, 3)  # 2 filters: fewer than any tile's rows
    assert not direct.uses_direct(np.zeros((2, 3, 1, 4), np.float32), w[:, :, :1, :1], 1, 0)  # 4 pixels: < a tile
    tile_lanes(0)  # a CPU without AVX2
    assert not direct.uses_direct(x, w, 1, 3)


@pytest.mark.parametrize("lanes", LANES)
def test_non_finite_values_land_where_the_reference_puts_them(lanes, tile_lanes):
    """NaN in x, inf in w (dx takes the columns path), inf in x with a ragged output width (dw does)."""
    tile_lanes(lanes)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 4, 11, 13)).astype(np.float32)
    params = {"w": rng.standard_normal((8, 4, 3, 3)).astype(np.float32), "b": np.zeros(8, np.float32)}
    x[0, 1, 4, 5], x[1, 2, 0, 12] = np.nan, np.inf
    w_inf = {**params, "w": params["w"].copy()}
    w_inf["w"][3, 1, 0, 2] = np.inf
    for p in (params, w_inf):
        assert direct.uses_direct(x, p["w"], 1, 1)
        with np.errstate(invalid="ignore"):  # inf * 0 in the padding, as intended
            y, vjp = fn.conv(1, 1)(p, x)
            y_ref, vjp_ref = fn.conv_naive(1, 1)(p, x)
            dy = np.ones_like(y)
            got_all, want_all = [y, *tree_leaves(vjp(dy))], [y_ref, *tree_leaves(vjp_ref(dy))]
        for got, want in zip(got_all, want_all):
            np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
            np.testing.assert_array_equal(np.isinf(got), np.isinf(want))


def test_the_tile_width_follows_the_environment(monkeypatch):
    for setting, lanes in [("avx512", 16), ("AVX2", 8), ("none", 0)]:
        monkeypatch.setenv("FUNCNN_CONV_TILE", setting)
        assert tiles.lanes() == lanes
    monkeypatch.setenv("FUNCNN_CONV_TILE", "sse")
    with pytest.raises(ValueError, match="FUNCNN_CONV_TILE"):
        tiles.lanes()
    monkeypatch.delenv("FUNCNN_CONV_TILE")
    assert tiles.lanes() == tiles.host_lanes() in (0, 8, 16)


@pytest.mark.parametrize("lanes", LANES)
@pytest.mark.parametrize(("channels", "filters"), [(6, 8), (8, 8), (8, 3), (3, 8)])  # dx 3/4 of dy, equal, larger, 3/8
def test_dx_over_a_handed_over_dy_gives_the_answer_of_a_fresh_one(lanes, channels, filters, tile_lanes):
    tile_lanes(lanes)
    rng = np.random.default_rng(3)
    x = rng.standard_normal((7, channels, 12, 16)).astype(np.float32)
    params = {"w": rng.standard_normal((filters, channels, 5, 5)).astype(np.float32),
              "b": np.ones(filters, np.float32)}  # fmt: skip
    assert direct.uses_direct(x, params["w"], 1, 2)
    y, vjp = fn.conv(pad=2)(params, x)
    dy = rng.standard_normal(y.shape).astype(np.float32)
    want = tree_leaves(vjp(dy))
    box = [dy.copy()]
    address = box[0].ctypes.data
    got = tree_leaves(hand_over(vjp, box, True))
    assert (got[-1].ctypes.data == address) == conv_fast._fits(dy, x)  # dx took dy's memory where it fits
    for a, b in zip(got, want, strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("lanes", LANES)
@settings(max_examples=15, deadline=None)
@given(problem=direct_problems())
def test_dw_in_slabs_of_one_filter_block_is_the_same_bitwise(lanes, problem):
    """Each lane's sum runs over the same images in the same order whatever the slab, so a slab of one block
    (the accumulator's budget of one byte) gives the bits of the one-slab run."""
    x, params, pad = problem
    kernel = params["w"].shape[2:]
    direct.set_tile_lanes(lanes)
    budget = direct.DW_ACC_BYTES
    try:
        y = fn.conv(1, pad)(params, x)[0]
        if not direct.uses_direct(x, params["w"], 1, pad) or not direct.direct_dw_applies(x, params["w"], y.shape):
            return
        dy = np.random.default_rng(2).standard_normal(y.shape).astype(np.float32)
        whole = direct._dw(x, dy, kernel, pad)
        direct.DW_ACC_BYTES = 1
        slabs = direct._dw(x, dy, kernel, pad)
    finally:
        direct.DW_ACC_BYTES = budget
        direct.set_tile_lanes(None)
    np.testing.assert_array_equal(slabs, whole)


@st.composite
def channels_last_problems(draw, lanes):
    """Stride-1 float32 problems whose dw runs channels last: C one to three vectors, 3-12 filters (both
    product tiles' row counts, overlapping blocks), ragged planes, 1x1 and non-square kernels, paddings."""
    c, f = lanes * draw(st.integers(1, 3)), draw(st.integers(3, 12))
    hh, ww, pad = draw(st.integers(1, 4)), draw(st.integers(1, 4)), draw(st.integers(0, 2))
    return _problem(draw, c, f, hh, ww, pad, 9, 21)


@pytest.mark.parametrize("lanes", LANES)
@settings(max_examples=20, deadline=None)
@given(data=st.data())
def test_channels_last_dw_equals_naive(lanes, data):
    x, params, pad = data.draw(channels_last_problems(lanes))
    direct.set_tile_lanes(lanes)
    try:
        plan = direct.uses_direct(x, params["w"], 1, pad) and direct._channels_last_plan(
            x.shape[1], params["w"].shape[0], params["w"].shape[2:], lanes
        )
        y, vjp = fn.conv(1, pad)(params, x)
        dy = np.random.default_rng(1).standard_normal(y.shape).astype(np.float32)
        first, second = vjp(dy), vjp(dy)
        alone = direct._dw_channels_last(x, dy, params["w"].shape[2:], pad) if plan else None
    finally:
        direct.set_tile_lanes(None)
    for a, b in zip(tree_leaves(first), tree_leaves(second)):
        np.testing.assert_array_equal(a, b)
    if alone is not None:  # the conv's dw is this path's
        np.testing.assert_array_equal(first[0]["w"], alone)
    assert_conv_matches_reference(y, *first, {"stride": 1, "pad": pad}, params, x, dy)


@pytest.mark.parametrize("lanes", LANES)
def test_channels_last_dw_puts_non_finite_values_where_the_reference_does(lanes, tile_lanes):
    """No lane reads past an image, so a ragged width with inf and NaN in x stays on this path."""
    tile_lanes(lanes)
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, lanes, 9, 21)).astype(np.float32)
    x[0, 1, 4, 20], x[1, lanes - 1, 0, 0] = np.nan, np.inf
    params = {"w": rng.standard_normal((9, lanes, 3, 3)).astype(np.float32), "b": np.zeros(9, np.float32)}
    assert direct._channels_last_plan(lanes, 9, (3, 3), lanes) is not None and direct.uses_direct(x, params["w"], 1, 1)
    with np.errstate(invalid="ignore"):
        y, vjp = fn.conv(1, 1)(params, x)
        y_ref, vjp_ref = fn.conv_naive(1, 1)(params, x)
        dy = rng.standard_normal(y.shape).astype(np.float32)
        got, want = vjp(dy)[0]["w"], vjp_ref(dy)[0]["w"]
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    np.testing.assert_array_equal(np.isinf(got), np.isinf(want))
    assert np.isnan(got).any() and np.isfinite(got).any()
    finite = np.isfinite(want)
    with np.errstate(invalid="ignore"):
        bound = conv_error_bounds({"stride": 1, "pad": 1}, params, x, dy)["w"]
    assert_within(got[finite], want[finite], bound[finite], "dw")
