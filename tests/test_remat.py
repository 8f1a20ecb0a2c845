"""fn.remat and fn.remat_chain: the same answers as the plain network, bitwise (dropout and batch
norm included), with only the input kept until the vjp runs."""

import weakref

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import funcnn as fn
from funcnn.testing import networks
from funcnn.tree import tree_leaves, tree_map
from tests.test_summary import kept_bytes

POLICIES = ["nothing", "products"]


def convnet():
    return fn.nets.three_layer_convnet(4, 3, 6, batch_norm=True, dropout=0.5)


def remat_blocks(net, policy):
    """``net`` (a chain) with each of its children wrapped in remat: same params and state trees."""
    return fn.chain(*(fn.remat(child, policy) for child in net.children))


def step(net, params, state, x, seed):
    y, vjp, new_state = fn.run(net, params, x, state, train=True, rng=np.random.default_rng(seed))
    dy = np.random.default_rng(seed + 1).standard_normal(y.shape).astype(y.dtype)
    return y, new_state, vjp, dy


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("policy", POLICIES)
@given(seed=st.integers(0, 2**32 - 2), batch=st.integers(2, 4))
@settings(max_examples=10, deadline=None)
def test_remat_gives_the_same_answer_bitwise(policy, dtype, seed, batch):
    net = convnet()
    rng = np.random.default_rng(seed)
    _, params = fn.init_params(net, rng, (3, 8, 8), dtype)
    state = fn.init_state(net, (3, 8, 8), dtype)
    x = rng.standard_normal((batch, 3, 8, 8)).astype(dtype)
    x_before, params_before = x.copy(), tree_map(np.copy, params)
    y, new_state, vjp, dy = step(net, params, state, x, seed)
    for remat_net in (remat_blocks(net, policy), fn.remat(net, policy)):
        y2, new_state2, vjp2, _ = step(remat_net, params, state, x, seed)
        np.testing.assert_array_equal(y2, y)
        assert y2.dtype == dtype
        for a, b in zip(tree_leaves(new_state2), tree_leaves(new_state)):
            np.testing.assert_array_equal(a, b)
        want = tree_leaves(vjp(dy))
        for _ in range(2):  # a vjp can be called twice, with the same answer
            got = tree_leaves(vjp2(dy))
            assert len(got) == len(want)
            for a, b in zip(got, want):
                np.testing.assert_array_equal(a, b)
                assert a.dtype == dtype
    np.testing.assert_array_equal(x, x_before)  # inputs untouched
    for a, b in zip(tree_leaves(params), tree_leaves(params_before)):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("policy", POLICIES)
@given(networks(max_blocks=3))
@settings(max_examples=15, deadline=None)
def test_check_vjp_passes_on_remat_networks(policy, problem):
    body, loss = problem.net.children
    net = fn.chain(remat_blocks(body, policy), loss)
    fn.check_vjp(net, problem.params, problem.x)


def test_remat_chain_groups_blocks_and_matches_the_chain():
    layers = (fn.dense(6), fn.relu, fn.dense(5), fn.tanh, fn.dense(3))
    net = fn.remat_chain(*layers, every=2)
    plain = fn.chain(fn.chain(*layers[:2]), fn.chain(*layers[2:4]), layers[4])
    assert net.out_shape((4,)) == plain.out_shape((4,)) == (3,)
    _, params = fn.init_params(plain, np.random.default_rng(0), (4,), np.float64)
    x = np.random.default_rng(1).standard_normal((3, 4))
    y, vjp = net(params, x)
    y0, vjp0 = plain(params, x)
    np.testing.assert_array_equal(y, y0)
    for a, b in zip(tree_leaves(vjp(np.ones_like(y))), tree_leaves(vjp0(np.ones_like(y)))):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="remat_chain: every must be >= 1"):
        fn.remat_chain(*layers, every=0)


NETS = [
    ("convnet", convnet, (3, 8, 8)),
    ("naive convs", lambda: fn.chain(fn.conv_naive(1, 1, 3, 3), fn.identity, fn.conv(2, 0, 2, 3), fn.relu), (2, 7, 7)),
    ("affines", lambda: fn.chain(fn.sandwich(fn.dense(5), fn.tanh), fn.dense(4), fn.dense(3)), (6,)),
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("policy", POLICIES)
@pytest.mark.parametrize(("title", "make", "shape"), NETS, ids=[title for title, _, _ in NETS])
def test_summary_counts_what_remat_keeps(title, make, shape, policy, dtype):
    """summary's memory column for remat is what the closures really hold: the input and the child's
    state, and with "products" the conv and affine outputs and what their vjps keep."""
    net = make()
    rng = np.random.default_rng(0)
    _, params = fn.init_params(net, rng, shape, dtype)
    state = fn.init_state(net, shape, dtype)
    x = rng.standard_normal((2, *shape)).astype(dtype)
    for layer in (fn.remat(net, policy), remat_blocks(net, policy)):
        _, vjp, _ = fn.run(layer, params, x, state, train=True, rng=np.random.default_rng(1))
        assert fn.summary(layer, shape, dtype, batch_size=2).total.memory == kept_bytes(vjp, tree_leaves(params))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_remat_keeps_less_than_the_plain_net(dtype):
    net, shape = convnet(), (3, 8, 8)
    rng = np.random.default_rng(0)
    _, params = fn.init_params(net, rng, shape, dtype)
    state = fn.init_state(net, shape, dtype)
    x = rng.standard_normal((2, *shape)).astype(dtype)
    _, vjp, _ = fn.run(fn.remat(net), params, x, state, train=True, rng=np.random.default_rng(1))
    _, plain_vjp, _ = fn.run(net, params, x, state, train=True, rng=np.random.default_rng(1))
    assert kept_bytes(vjp, tree_leaves(params)) < kept_bytes(plain_vjp, tree_leaves(params))


def test_remat_is_its_child_for_shapes_summary_and_export(tmp_path):
    onnx = pytest.importorskip("onnx")
    from funcnn.export import to_onnx

    net = convnet()
    wrapped = fn.remat(net, "products")
    assert wrapped.out_shape((3, 8, 8)) == net.out_shape((3, 8, 8))
    assert wrapped.moded and wrapped.children == (net,)
    rows = fn.summary(wrapped, (3, 8, 8)).rows
    assert [r.name for r in rows[1:]] == [r.name for r in fn.summary(net, (3, 8, 8)).rows]
    _, params = fn.init_params(net, np.random.default_rng(0), (3, 8, 8), np.float32)
    state = fn.init_state(net, (3, 8, 8), np.float32)
    a = onnx.load(to_onnx(wrapped, params, (3, 8, 8), tmp_path / "remat.onnx", state)).graph
    b = onnx.load(to_onnx(net, params, (3, 8, 8), tmp_path / "net.onnx", state)).graph
    assert [n.SerializeToString() for n in a.node] == [n.SerializeToString() for n in b.node]
    assert [t.SerializeToString() for t in a.initializer] == [t.SerializeToString() for t in b.initializer]


def test_a_bad_policy_is_a_clear_error():
    with pytest.raises(ValueError, match=r"remat\(relu\): policy must be one of"):
        fn.remat(fn.relu, "everything")


def test_a_nested_combination_frees_each_gradient_once_read():
    """The gradient a chain passes into a sandwich is freed as soon as the sandwich's last layer has
    read it (the chain hands it over), not when the whole sandwich returns; the vjp stays reusable."""
    refs, alive = [], []

    def grab(params, x):  # identity whose vjp makes a new gradient and watches it
        def vjp(dy):
            dx = dy * 1.0
            refs.append(weakref.ref(dx))
            return (), dx

        return x, vjp

    def probe(params, x):  # identity whose vjp records whether grab's gradient is still alive
        def vjp(dy):
            alive.append(refs[-1]() is not None)
            return (), dy

        return x, vjp

    net = fn.chain(fn.sandwich(fn.layer(probe, "probe"), fn.tanh), fn.layer(grab, "grab"))
    y, vjp = net(((), ()), np.ones((2, 3)))
    first = vjp(np.ones_like(y))[1]
    np.testing.assert_array_equal(vjp(np.ones_like(y))[1], first)
    assert alive == [False, False]
