"""The layer contract, for every layer, sandwich and chain: correct vjp, dtype kept, purity."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import funcnn as fn
from funcnn.tree import tree_leaves, tree_map, tree_structure

from cases import CASES

names = pytest.mark.parametrize("name", list(CASES))


def frozen(tree):
    """A read-only copy: a layer that writes into its inputs fails loudly."""

    def freeze(a):
        a = np.array(a)
        a.flags.writeable = False
        return a

    return tree_map(freeze, tree)


@names
@settings(max_examples=25)
@given(data=st.data())
def test_check_vjp_passes(name, data):
    layer, params, x = data.draw(CASES[name]())
    report = fn.check_vjp(layer, params, x, on_kink="ignore")
    assert len(report.leaves) == len(tree_leaves((params, x)))
    assert all(leaf.status in ("ok", "kink") for leaf in report.leaves)


@names
@settings(max_examples=15)
@given(data=st.data(), dtype=st.sampled_from([np.float32, np.float64]))
def test_dtype_is_kept(name, data, dtype):
    layer, params, x = data.draw(CASES[name](dtype))
    y, vjp = layer(params, x)
    assert y.dtype == dtype
    dparams, dx = vjp(np.ones_like(y))
    assert dx.dtype == dtype and dx.shape == x.shape
    assert tree_structure(dparams) == tree_structure(params)
    for g, p in zip(tree_leaves(dparams), tree_leaves(params)):
        assert g.dtype == dtype and g.shape == p.shape


@names
@settings(max_examples=15)
@given(data=st.data())
def test_pure_inputs_untouched_and_vjp_repeatable(name, data):
    layer, params, x = data.draw(CASES[name]())
    params_ro, x_ro = frozen(params), frozen(x)
    y, vjp = layer(params_ro, x_ro)
    dy = frozen(np.random.default_rng(0).standard_normal(y.shape).astype(y.dtype))
    first, second = vjp(dy), vjp(dy)
    for a, b in zip(tree_leaves(first), tree_leaves(second)):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(tree_leaves((params_ro, x_ro)), tree_leaves((params, x))):
        np.testing.assert_array_equal(a, b)
    y_again, _ = layer(params, x)
    np.testing.assert_array_equal(y, y_again)


@pytest.mark.parametrize("name", ["affine", "relu", "conv", "conv_naive", "max_pool", "max_pool_naive", "conv_relu"])
@settings(max_examples=10)
@given(data=st.data())
def test_non_contiguous_inputs_give_the_same_result(name, data):
    layer, params, x = data.draw(CASES[name]())
    strided = np.repeat(x, 2, axis=-1)[..., ::2]  # same values, a non-contiguous view
    assert not strided.flags.c_contiguous or strided.shape[-1] == 1
    fortran = tree_map(np.asfortranarray, params)
    y, vjp = layer(params, x)
    y2, vjp2 = layer(fortran, strided)
    np.testing.assert_allclose(y2, y, rtol=1e-6, atol=1e-6)
    dy = np.ones_like(y)
    for a, b in zip(tree_leaves(vjp(dy)), tree_leaves(vjp2(dy))):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", ["affine", "relu", "conv", "conv_naive", "max_pool", "max_pool_naive", "loss"])
def test_nan_in_nan_out(name):
    layer, params, x = _first_case(name)
    x = x.copy()
    x.flat[0] = np.nan
    with np.errstate(invalid="ignore"):
        y, vjp = layer(params, x)
        _, dx = vjp(np.ones_like(y))
    assert np.isnan(y).any()
    if name == "relu":  # elementwise: exactly the one output
        assert np.isnan(y).sum() == 1 and np.isnan(y.flat[0])
    if name == "loss":  # the loss and its gradient
        assert np.isnan(dx[0]).all() and not np.isnan(dx[1:]).any()


def _first_case(name):
    from hypothesis import find

    return find(CASES[name](np.float64), lambda case: True)


def _moded_case(layer, train, shape):
    """A moded layer bound to its initial state and a mode, with its init params, on x of ``shape``."""

    def draw(data):
        rng = np.random.default_rng(data.draw(st.integers(0, 2**16)))
        x = rng.standard_normal(shape)
        _, params = fn.init_params(layer, rng, shape[1:], np.float64)
        return fn.bind(layer, fn.init_state(layer, shape[1:]), train=train, rng=np.random.default_rng(0)), params, x

    return draw


MORE_CASES = {
    "identity": _moded_case(fn.identity, False, (3, 4)),
    "dropout (eval)": _moded_case(fn.dropout(0.5), False, (3, 4)),
    "dropout (train, p=0)": _moded_case(fn.dropout(0.0), True, (3, 4)),
    "batch_norm (eval)": _moded_case(fn.batch_norm(), False, (3, 4)),
    "batch_norm (train)": _moded_case(fn.batch_norm(), True, (3, 4)),
    "spatial_batch_norm (train)": _moded_case(fn.spatial_batch_norm(), True, (2, 3, 2, 2)),
    "residual(identity)": _moded_case(fn.residual(fn.identity), False, (3, 4)),
    "chain(identity, dropout)": _moded_case(fn.chain(fn.identity, fn.dropout(0.5)), False, (3, 4)),
}


@pytest.mark.parametrize("name", [*CASES, *MORE_CASES])
@settings(max_examples=10)
@given(data=st.data())
def test_outputs_never_share_writable_memory_with_inputs(name, data):
    """y *= 0 must not zero the caller's x or params, nor dx *= 0 their dy: a read-only view is fine."""
    layer, params, x = data.draw(CASES[name]()) if name in CASES else MORE_CASES[name](data)
    y, vjp = layer(params, x)
    dy = np.ones_like(y)
    dparams, dx = vjp(dy)
    inputs = tree_leaves((params, x))
    for what, out, sources in (("y", y, inputs), ("dx", dx, [dy, *inputs]), *(("dparams", g, [dy, *inputs]) for g in tree_leaves(dparams))):
        shared = [i for i, source in enumerate(sources) if np.shares_memory(out, source)]
        assert not (out.flags.writeable and shared), f"{name}: writable {what} shares memory with input {shared}"
