"""A training step's last call of a network's vjp frees each layer's arrays as soon as that layer's
backward pass has run (as PyTorch frees its saved tensors); ``vjp(dy)`` stays callable twice."""

import gc
import weakref

import numpy as np
import pytest

import funcnn as fn
from funcnn.layers import pull_back_last
from funcnn.tree import tree_leaves


def keeper(alive):
    """The identity, whose vjp keeps an array of its own; ``alive()`` says whether it still exists."""

    def apply(params, x):
        kept = np.ones(1000, x.dtype)
        alive.append(weakref.ref(kept))
        return x, lambda dy: ((), dy + 0 * kept[0])

    return fn.layer(apply, "keeper", out_shape=lambda shape: shape)


def checker(seen, alive):
    """The identity, whose vjp records whether the keeper's array is still alive when it runs."""

    def apply(params, x):
        def vjp(dy):
            gc.collect()  # only refcounting frees in CPython; this makes sure no cycle hides it
            seen.append(alive[-1]() is not None)
            return (), dy

        return x, vjp

    return fn.layer(apply, "checker", out_shape=lambda shape: shape)


def remat_chain(*layers):
    return fn.remat(fn.chain(*layers))


# remat's vjp frees the arrays of the forward pass it re-runs when it returns, in any call
@pytest.mark.parametrize(("wrap", "kept_by_a_call"), [(fn.chain, True), (fn.sandwich, True), (remat_chain, False)])
def test_the_last_call_frees_a_layers_arrays_once_it_has_run(wrap, kept_by_a_call):
    seen, alive = [], []
    net = fn.chain(checker(seen, alive), wrap(fn.dense(3), keeper(alive)))
    _, params = fn.init_params(net, np.random.default_rng(0), (4,))
    x = np.ones((2, 4), np.float32)
    y, vjp = net(params, x)
    want = tree_leaves(vjp(np.ones_like(y)))
    assert seen == [kept_by_a_call]  # an ordinary call keeps everything: the vjp may be called again
    got = tree_leaves(pull_back_last(vjp, np.ones_like(y)))
    assert seen == [kept_by_a_call, False]  # the keeper's array was gone when the layer before it ran
    for a, b in zip(got, want, strict=True):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(RuntimeError, match="last=True"):
        vjp(np.ones_like(y))


def test_a_training_step_gives_the_gradients_of_the_vjp():
    net = fn.nets.three_layer_convnet(4, 3, 6)
    rng = np.random.default_rng(0)
    _, params = fn.init_params(net, rng, (3, 8, 8), np.float32)
    x, labels = rng.standard_normal((5, 3, 8, 8)).astype(np.float32), rng.integers(0, 10, 5)
    _, grads = fn.value_and_grad(net)(params, x, labels)
    scores, vjp = net(params, x)
    _, loss_vjp = fn.softmax_loss(scores, labels)
    for a, b in zip(tree_leaves(grads), tree_leaves(vjp(loss_vjp(1.0))[0]), strict=True):
        np.testing.assert_array_equal(a, b)
        assert a.dtype == np.float32


@pytest.mark.parametrize("policy", ["nothing", "products"])
def test_a_remat_recomputed_before_the_layer_after_it_gives_the_same_step(policy):
    """In a training step a chain asks a remat to recompute before the backward pass of the layer after
    it (here a pool, whose dy is a quarter of its dx): the same loss, gradients and state, bitwise."""
    block = fn.sandwich(fn.conv(1, 1, filters=4, kernel_size=3), fn.spatial_batch_norm(), fn.relu)
    plain = fn.chain(block, fn.max_pool(), fn.dropout(0.5), fn.dense(10))
    net = fn.chain(fn.remat(block, policy), *plain.children[1:])
    rng = np.random.default_rng(0)
    _, params = fn.init_params(plain, rng, (3, 8, 8), np.float32)
    state = fn.init_state(plain, (3, 8, 8), np.float32)
    x, labels = rng.standard_normal((5, 3, 8, 8)).astype(np.float32), rng.integers(0, 10, 5)
    want = fn.training_step(plain)(params, x, labels, state, np.random.default_rng(1))
    got = fn.training_step(net)(params, x, labels, state, np.random.default_rng(1))
    assert got[0] == want[0]
    for a, b in zip(tree_leaves(got[1:]), tree_leaves(want[1:]), strict=True):
        np.testing.assert_array_equal(a, b)
