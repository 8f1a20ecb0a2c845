"""The layer contract, for every layer, sandwich and chain: correct vjp, dtype kept, purity."""

import numpy as np
import pytest
from bounds import affine_error_bounds, assert_within, conv_error_bounds
from cases import CASES
from hypothesis import find, given, settings
from hypothesis import strategies as st

import funcnn as fn
from funcnn.tree import tree_leaves, tree_map, tree_structure

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
    dy = np.ones_like(y)
    (grads, dx), (grads2, dx2) = vjp(dy), vjp2(dy)
    if params == ():  # relu and max-pool select: any memory layout gives exactly the same numbers
        np.testing.assert_array_equal(y2, y)
        np.testing.assert_array_equal(dx2, dx)
        return
    # another layout may take another BLAS path: two summation orders of the same sums (tests/bounds.py)
    if name == "affine":
        bounds = affine_error_bounds(params, x.reshape(x.shape[0], -1), dy)
        dx, dx2 = dx.reshape(x.shape[0], -1), dx2.reshape(x.shape[0], -1)
    else:  # a conv, alone or before a relu (which moves no value farther than the conv's output moved)
        conv = layer.children[0] if name == "conv_relu" else layer
        conv_param = {"stride": conv.hparams["stride"], "pad": conv.hparams["pad"]}
        bounds = conv_error_bounds(conv_param, params, x, dy)
    assert_within(y2, y, bounds["y"], "y")
    assert_within(dx2, dx, bounds["dx"], "dx")
    for key in ("w", "b"):
        assert_within(grads2[key], grads[key], bounds[key], key)


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
    return find(CASES[name](np.float64), lambda case: True)


def _moded(layer, train):
    """Cases of a moded layer bound to its initial state and a mode, with its init params, on a random x:
    ``(N, C)``, or ``(N, C, 2, 3)`` for a spatial layer."""

    @st.composite
    def cases(draw):
        x = draw(st.integers(2, 5)), draw(st.integers(1, 4))
        x = np.random.default_rng(draw(st.integers(0, 2**16))).standard_normal(x)
        if "spatial" in layer.name:
            x = x.reshape(*x.shape, 1, 1) * np.ones((1, 1, 2, 3))
        bound = fn.bind(layer, fn.init_state(layer, x.shape[1:], x.dtype), train=train, rng=np.random.default_rng(0))
        return bound, fn.init_params(layer, np.random.default_rng(1), x.shape[1:], x.dtype)[1], x

    return cases


MODED_CASES = {
    "identity": _moded(fn.identity, False),
    "dropout": _moded(fn.dropout(0.5), True),
    "dropout eval": _moded(fn.dropout(0.5), False),
    "dropout p=0": _moded(fn.dropout(0.0), True),
    "batch_norm": _moded(fn.batch_norm(), True),
    "batch_norm eval": _moded(fn.batch_norm(), False),
    "spatial_batch_norm": _moded(fn.spatial_batch_norm(), True),
    "residual(identity)": _moded(fn.residual(fn.identity), False),
    "chain(identity, dropout)": _moded(fn.chain(fn.identity, fn.dropout(0.5)), False),
}
ALL_CASES = {**CASES, **MODED_CASES}


@pytest.mark.parametrize("name", list(ALL_CASES))
@settings(max_examples=10)
@given(data=st.data())
def test_outputs_never_share_writable_memory_with_inputs(name, data):
    """y *= 0 must not zero the caller's x or params, nor dx *= 0 their dy: a read-only view is fine."""
    layer, params, x = data.draw(ALL_CASES[name]())
    y, vjp = layer(params, x)
    dy = np.ones_like(y)
    dparams, dx = vjp(dy)
    inputs = tree_leaves((params, x))
    for what, out, sources in (
        ("y", y, inputs),
        ("dx", dx, [dy, *inputs]),
        *(("dparams", g, [dy, *inputs]) for g in tree_leaves(dparams)),
    ):
        shared = [i for i, source in enumerate(sources) if np.shares_memory(out, source)]
        assert not (out.flags.writeable and shared), f"{name}: writable {what} shares memory with input {shared}"


# What a live vjp reads of the forward pass's arrays (docs/layers.md, "The layer protocol"): writing into any
# other of x, params and y after the forward pass must not change its answer; writing into these must.
VJP_READS = {
    "affine": {"x", "w"}, "conv": {"x", "w"}, "conv_naive": {"w"}, "two_layer_net": {"x", "w"}, "convnet": {"x", "w"},
    "conv_wide": {"x", "w"}, "conv_relu_pool": {"x", "w"},
    "affine_relu": {"x", "w"}, "conv_relu": {"x", "w"},  # relu keeps a bit mask, not y
    "relu": set(), "tanh": {"y"}, "layer_norm": {"gamma"}, "group_norm": {"gamma"},
    "batch_norm": {"gamma"}, "batch_norm eval": {"gamma"}, "spatial_batch_norm": {"gamma"},
    "max_pool": set(), "max_pool_naive": set(), "avg_pool": set(), "global_avg_pool": set(), "leaky_relu": {"y"},
    "sigmoid": set(), "loss": set(), "dropout": set(), "dropout eval": set(), "dropout p=0": set(), "identity": set(),
    "residual(identity)": set(), "chain(identity, dropout)": set(),
}  # fmt: skip


def test_every_layer_has_a_documented_read_set():
    assert set(VJP_READS) == set(ALL_CASES)


def _arrays_read(layer, params, x):
    """The names of the arrays (x, each params leaf, y) that, changed after the forward pass, change the vjp's
    answer."""

    def forward():  # on copies this test owns
        own_params, own_x = tree_map(np.array, params), np.array(x)
        y, vjp = layer(own_params, own_x)
        arrays = {"x": [own_x], "y": [y] if isinstance(y, np.ndarray) and y.flags.writeable else []}
        for path, leaf in fn.tree.tree_leaves_with_path(
            own_params
        ):  # every leaf of a name: "w" of each layer of a network
            arrays.setdefault(str(path[-1]), []).append(leaf)
        return y, vjp, arrays

    y, vjp, names = forward()
    dy = np.random.default_rng(0).standard_normal(np.shape(y)).astype(np.asarray(y).dtype)
    expected = tree_leaves(vjp(dy))
    read = set()
    for name in (name for name, arrays in names.items() if arrays):
        _, vjp2, arrays = forward()
        for array in arrays[name]:  # -2a - 1 moves every value (but -1/3) and flips signs: relu's mask changes too
            array *= -2
            array -= 1
        if not all(np.array_equal(a, b, equal_nan=True) for a, b in zip(tree_leaves(vjp2(dy)), expected)):
            read.add(name)
    return read


@pytest.mark.parametrize("name", sorted(ALL_CASES))
@settings(max_examples=10)
@given(data=st.data())
def test_a_live_vjp_reads_nothing_undocumented(name, data):
    assert _arrays_read(*data.draw(ALL_CASES[name]())) <= VJP_READS[name]


@pytest.mark.parametrize("name", sorted(name for name, reads in VJP_READS.items() if reads))
def test_a_live_vjp_reads_all_that_is_documented(name):
    """Some case reads every documented array (a small one may not: a 1x1 conv output over padding ignores x)."""
    find(
        ALL_CASES[name](),
        lambda case: _arrays_read(*case) == VJP_READS[name],
        settings=settings(database=None, max_examples=200),
    )
