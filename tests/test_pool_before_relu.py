"""A chain's ReLU then max-pool runs as max-pool then ReLU (funcnn.layers._combinators.POOL_BEFORE_RELU): the
same values, gradients, signs and dtypes as the written order, bit for bit, with ties, zeros and NaN."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import funcnn as fn
import funcnn.layers._combinators as combinators
from funcnn.tree import tree_leaves

POOLS = {
    "2x2 s2": lambda: fn.max_pool(),
    "3x3 s2": lambda: fn.max_pool(3, 3, 2),
    "3x2 s1": lambda: fn.max_pool(3, 2, 1),
    "naive 2x2 s2": lambda: fn.max_pool_naive(),
}


def _results(net, params, x, dy, reorder):
    """y and the gradients (the vjp called twice: it stays pure), with the reordering on or off."""
    combinators.POOL_BEFORE_RELU = reorder
    try:
        y, vjp = net(params, x)
        return [y, *tree_leaves(vjp(dy)), *tree_leaves(vjp(dy))]
    finally:
        combinators.POOL_BEFORE_RELU = True


def _tied(rng, shape, dtype):
    """Small integers (many ties and zeros), some -0.0 and some NaN."""
    x = rng.integers(-2, 3, size=shape).astype(dtype)
    x[rng.random(shape) < 0.1] = -0.0
    x[rng.random(shape) < 0.03] = np.nan
    return x


@pytest.mark.parametrize("pool", list(POOLS))
@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 2**16), dtype=st.sampled_from([np.float32, np.float64]))
def test_the_reordered_pair_equals_the_written_order_bitwise(pool, seed, dtype):
    rng = np.random.default_rng(seed)
    net = fn.chain(fn.relu, POOLS[pool]())
    x, params = _tied(rng, (3, 4, 6, 7), dtype), ((), ())
    y, _ = net(params, x)
    dy = rng.standard_normal(y.shape).astype(dtype)
    got, want = (_results(net, params, x, dy, reorder) for reorder in (True, False))
    for a, b in zip(got, want):
        assert a.dtype == b.dtype == dtype
        np.testing.assert_array_equal(a, b)  # NaN where NaN
        np.testing.assert_array_equal(np.signbit(a), np.signbit(b))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_a_training_steps_last_call_gives_the_written_orders_gradients(dtype):
    """pull_back_last hands dy over (ReLU's dx into it, the conv's dx into ReLU's) and the reordered
    ReLU writes into the pool's fresh output: the same gradients as the written order, the input intact."""
    from funcnn.layers import pull_back_last

    rng = np.random.default_rng(3)
    net = fn.chain(fn.conv(1, 1, filters=6, kernel_size=3), fn.relu, fn.max_pool(), fn.dense(5))
    x = _tied(rng, (4, 3, 8, 8), dtype)
    x_before = x.copy()
    _, params = fn.init_params(net, rng, x.shape[1:], dtype=dtype)
    dy = rng.standard_normal((4, 5)).astype(dtype)
    got, want = [], []
    for reorder, out in ((True, got), (False, want)):
        combinators.POOL_BEFORE_RELU = reorder
        try:
            y, vjp = net(params, x)
            out += [y, *tree_leaves(pull_back_last(vjp, dy.copy()))]
        finally:
            combinators.POOL_BEFORE_RELU = True
    for a, b in zip(got, want, strict=True):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(x, x_before)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_check_vjp_passes_on_the_reordered_pair(dtype):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, 6, 6))  # distinct values: no ties, so no kinks but ReLU's at 0
    report = fn.check_vjp(fn.chain(fn.relu, fn.max_pool()), ((), ()), x, dtype=dtype, on_kink="ignore")
    assert all(leaf.status in ("ok", "kink") for leaf in report.leaves)


def test_other_inputs_run_in_the_written_order_so_the_error_names_relu():
    with pytest.raises((TypeError, ValueError), match="relu"):
        fn.chain(fn.relu, fn.max_pool())(((), ()), np.array([["a"]]))


def test_only_relu_then_max_pool_on_a_float_4d_array_is_reordered():
    x = np.zeros((1, 1, 2, 2))
    assert combinators.pool_before_relu(fn.relu, fn.max_pool(), x)
    assert combinators.pool_before_relu(fn.relu, fn.max_pool_naive(), x.astype(np.float32))
    assert not combinators.pool_before_relu(fn.leaky_relu(0.1), fn.max_pool(), x)  # slope at 0: not the same
    assert not combinators.pool_before_relu(fn.relu, fn.avg_pool(), x)
    assert not combinators.pool_before_relu(fn.relu, fn.max_pool(), x[0])
    assert not combinators.pool_before_relu(fn.relu, fn.max_pool(), x.astype(np.int64))
