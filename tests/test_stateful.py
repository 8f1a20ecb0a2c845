"""Moded layers (batch norm, dropout): explicit state, mode and randomness; chains that thread them."""

import numpy as np
import pytest
from bounds import assert_within, batch_norm_error_bounds, gamma, ulps
from hypothesis import given, settings
from hypothesis import strategies as st
from test_contract import frozen

import funcnn as fn
from funcnn.tree import tree_allclose, tree_leaves, tree_map


@st.composite
def bn_problems(draw, spatial=None, dtype=np.float64):
    spatial = draw(st.booleans()) if spatial is None else spatial
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    n, d = draw(st.integers(2, 6)), draw(st.integers(1, 4))
    shape = (n, d, draw(st.integers(1, 3)), draw(st.integers(1, 3))) if spatial else (n, d)
    x = (rng.standard_normal(shape) * 2 + 1).astype(dtype)
    params = {"gamma": rng.standard_normal(d).astype(dtype), "beta": rng.standard_normal(d).astype(dtype)}
    state = {"running_mean": rng.standard_normal(d).astype(dtype), "running_var": rng.uniform(0.5, 2, d).astype(dtype)}
    layer = fn.spatial_batch_norm(momentum=0.8) if spatial else fn.batch_norm(momentum=0.8)
    return layer, params, state, x


def naive_batch_norm_backward(dy, x, gamma, eps, axes):
    """The course's staged backward through the graph of small ops, for comparison."""
    shape = (1, -1) + (1,) * (x.ndim - 2)
    m = x.size // x.shape[1]
    mu = x.mean(axis=axes).reshape(shape)
    xmu = x - mu
    var = (xmu**2).mean(axis=axes).reshape(shape)
    ivar = 1 / np.sqrt(var + eps)
    xhat = xmu * ivar
    dxhat = dy * gamma.reshape(shape)
    divar = (dxhat * xmu).sum(axis=axes).reshape(shape)
    dxmu1 = dxhat * ivar
    dsqrtvar = -divar / (var + eps)
    dvar = 0.5 * dsqrtvar / np.sqrt(var + eps)
    dsq = dvar * np.ones_like(x) / m
    dxmu2 = 2 * xmu * dsq
    dx1 = dxmu1 + dxmu2
    dmu = -dx1.sum(axis=axes).reshape(shape)
    dx = dx1 + dmu * np.ones_like(x) / m
    return dx, (dy * xhat).sum(axis=axes), dy.sum(axis=axes)


@settings(max_examples=30)
@given(bn_problems())
def test_batch_norm_closed_form_backward_equals_the_staged_one(problem):
    layer, params, state, x = problem
    y, vjp, _ = layer.run(params, x, state, train=True)
    dy = np.random.default_rng(0).standard_normal(y.shape)
    grads, dx = vjp(dy)
    axes = (0,) if x.ndim == 2 else (0, 2, 3)
    dx_ref, dgamma_ref, dbeta_ref = naive_batch_norm_backward(dy, x, params["gamma"], 1e-5, axes)
    bounds = batch_norm_error_bounds(x, dy, params["gamma"], 1e-5, axes, x.dtype)  # two summation orders
    assert_within(dx, dx_ref, bounds["dx"], "dx")
    assert_within(grads["gamma"], dgamma_ref, bounds["gamma"], "dgamma")
    assert_within(grads["beta"], dbeta_ref, bounds["beta"], "dbeta")


@settings(max_examples=30)
@given(bn_problems(), st.booleans())
def test_batch_norm_check_vjp_in_both_modes(problem, train):
    layer, params, state, x = problem
    fn.check_vjp(fn.bind(layer, state, train=train), params, x, on_kink="ignore")


@settings(max_examples=20)
@given(bn_problems(), st.booleans())
def test_batch_norm_is_pure_and_keeps_dtype(problem, train):
    layer, params, state, x = problem
    params32, state32, x32 = tree_map(lambda a: frozen(a.astype(np.float32)), (params, state, x))
    y, vjp, new_state = layer.run(params32, x32, state32, train=train)
    assert y.dtype == np.float32 and all(leaf.dtype == np.float32 for leaf in tree_leaves(new_state))
    first, second = vjp(frozen(np.ones_like(y))), vjp(frozen(np.ones_like(y)))
    assert tree_allclose(first, second, rtol=0, atol=0)
    assert all(leaf.dtype == np.float32 for leaf in tree_leaves(first))
    if not train:
        assert new_state is state32


def test_batch_norm_training_normalizes_and_updates_running_statistics():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((200, 3)) * [1.0, 2.0, 3.0] + [4.0, -5.0, 6.0]
    params = {"gamma": np.array([1.0, 2.0, 3.0]), "beta": np.array([0.0, -1.0, 1.0])}
    state = {"running_mean": np.zeros(3), "running_var": np.ones(3)}
    y, _, new = fn.batch_norm(momentum=0.9).run(params, x, state, train=True)
    # two orders of means of 200 values, condition 1 + |mean| / sigma <= 5 (tests/bounds.py); eps = 1e-5 makes the
    # std gamma sigma / sqrt(sigma^2 + eps), within eps / (2 sigma^2) <= 5e-6 of gamma
    rel = 2 * gamma(200 + 8, np.float64) * 5
    assert_within(y.mean(axis=0), params["beta"], rel * (np.abs(params["gamma"]) + np.abs(params["beta"])))
    np.testing.assert_allclose(y.std(axis=0), params["gamma"], rtol=5e-6 + rel)
    np.testing.assert_allclose(new["running_mean"], 0.1 * x.mean(axis=0), rtol=rel)
    np.testing.assert_allclose(new["running_var"], 0.9 + 0.1 * x.var(axis=0, ddof=1), rtol=rel * 5)  # squares
    np.testing.assert_array_equal(state["running_mean"], np.zeros(3))  # the old state is untouched
    y_eval, _, same = fn.batch_norm().run(params, x, new, train=False)
    np.testing.assert_allclose(
        y_eval, params["gamma"] * (x - new["running_mean"]) / np.sqrt(new["running_var"] + 1e-5) + params["beta"]
    )
    assert same is new


@pytest.mark.parametrize("spatial", [False, True])
@pytest.mark.parametrize("train", [True, False])
def test_batch_norm_matches_pytorch(spatial, train):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(1)
    shape = (5, 3, 4, 2) if spatial else (7, 3)
    x = rng.standard_normal(shape) * 2 + 0.5
    params = {"gamma": rng.standard_normal(3), "beta": rng.standard_normal(3)}
    state = {"running_mean": rng.standard_normal(3), "running_var": rng.uniform(0.5, 2, 3)}
    dy = rng.standard_normal(shape)
    layer = (fn.spatial_batch_norm if spatial else fn.batch_norm)(momentum=0.9, eps=1e-5)
    y, vjp, new_state = layer.run(params, x, state, train=train)
    grads, dx = vjp(dy)

    module = (torch.nn.BatchNorm2d if spatial else torch.nn.BatchNorm1d)(3, eps=1e-5, momentum=0.1).double()
    with torch.no_grad():
        module.weight.copy_(torch.from_numpy(params["gamma"]))
        module.bias.copy_(torch.from_numpy(params["beta"]))
        module.running_mean.copy_(torch.from_numpy(state["running_mean"]))
        module.running_var.copy_(torch.from_numpy(state["running_var"]))
    module.train(train)
    tx = torch.from_numpy(x).requires_grad_()
    ty = module(tx)
    ty.backward(torch.from_numpy(dy))
    axes = (0, 2, 3) if spatial else (0,)
    m = x.size // 3
    if train:  # two summation orders of the same formulas (tests/bounds.py)
        bounds = batch_norm_error_bounds(x, dy, params["gamma"], 1e-5, axes, x.dtype)
        assert_within(y, ty.detach().numpy(), bounds["y"], "y")
        assert_within(dx, tx.grad.numpy(), bounds["dx"], "dx")
        assert_within(grads["gamma"], module.weight.grad.numpy(), bounds["gamma"], "dgamma")
    else:  # a fixed affine map per channel: a few roundings of each term
        scale = np.abs(params["gamma"]) / np.sqrt(state["running_var"] + 1e-5)
        shape = (1, -1) + (1,) * (x.ndim - 2)
        terms = (scale.reshape(shape) * (np.abs(x) + np.abs(state["running_mean"]).reshape(shape))) + np.abs(
            params["beta"]
        ).reshape(shape)
        assert_within(y, ty.detach().numpy(), 2 * gamma(8, x.dtype) * terms, "y")
        assert_within(dx, tx.grad.numpy(), 2 * gamma(8, x.dtype) * scale.reshape(shape) * np.abs(dy), "dx")
        dgamma_terms = (np.abs(dy) * (np.abs(x) + np.abs(state["running_mean"]).reshape(shape))).sum(axis=axes)
        bound = 2 * gamma(m + 8, x.dtype) * dgamma_terms / np.sqrt(state["running_var"] + 1e-5)
        assert_within(grads["gamma"], module.weight.grad.numpy(), bound, "dgamma")
    assert_within(grads["beta"], module.bias.grad.numpy(), 2 * gamma(m, x.dtype) * np.abs(dy).sum(axis=axes), "db")
    # running statistics: means of m terms mixed with the old value; the variance's terms are squares of
    # x - mean, whose error is kappa = 1 + mean|x| / sigma times the mean's
    mean_terms = 0.9 * np.abs(state["running_mean"]) + 0.1 * np.abs(x).mean(axis=axes)
    assert_within(new_state["running_mean"], module.running_mean.numpy(), 2 * gamma(m + 4, x.dtype) * mean_terms)
    var = x.var(axis=axes, ddof=1)
    kappa = 1 + np.abs(x).mean(axis=axes) / np.sqrt(var)
    var_terms = 0.9 * state["running_var"] + 0.1 * var * kappa**2
    assert_within(new_state["running_var"], module.running_var.numpy(), 2 * gamma(m + 8, x.dtype) * var_terms)


@pytest.mark.parametrize(
    "call, error, pattern",
    [
        (
            lambda: fn.batch_norm()({"gamma": np.ones(2), "beta": np.zeros(2)}, np.ones((3, 2))),
            TypeError,
            r"batch_norm\(momentum=0.9, eps=1e-05\) needs a mode: call layer.run\(params, x, state, train=True/False",
        ),
        (
            lambda: fn.batch_norm().run(
                {"gamma": np.ones(3), "beta": np.zeros(2)},
                np.ones((3, 2)),
                {"running_mean": np.zeros(2), "running_var": np.ones(2)},
                train=True,
            ),
            ValueError,
            r"params\['gamma'\] must have shape \(2,\) for x of shape \(3, 2\) \(D=2\), got \(3,\)",
        ),
        (
            lambda: fn.batch_norm().run(
                {"gamma": np.ones(2), "beta": np.zeros(2)}, np.ones((3, 2)), {"running_mean": np.zeros(2)}, train=True
            ),
            TypeError,
            r"state must be a dict with keys \['running_mean', 'running_var'\]",
        ),
        (
            lambda: fn.batch_norm().run(
                {"gamma": np.ones(2), "beta": np.zeros(2)},
                np.ones((1, 2)),
                {"running_mean": np.zeros(2), "running_var": np.ones(2)},
                train=True,
            ),
            ValueError,
            r"training needs more than one value per D",
        ),
        (
            lambda: fn.spatial_batch_norm().run(
                {"gamma": np.ones(2), "beta": np.zeros(2)},
                np.ones((3, 2)),
                {"running_mean": np.zeros(2), "running_var": np.ones(2)},
                train=True,
            ),
            ValueError,
            r"spatial_batch_norm.*x must be 4-D \(N, C, H, W\), got shape \(3, 2\)",
        ),
        (
            lambda: fn.batch_norm().run(
                {"gamma": np.ones(2), "beta": np.zeros(2)},
                np.ones((3, 2)),
                {"running_mean": np.zeros(2), "running_var": np.ones(2)},
                train="yes",
            ),
            TypeError,
            r"train must be True or False, got 'yes'",
        ),
        (lambda: fn.batch_norm(momentum=1.0), ValueError, r"momentum must be in \[0, 1\), got 1.0"),
        (lambda: fn.dropout(drop_prob=1.0), ValueError, r"drop_prob must be in \[0, 1\), got 1.0"),
        (lambda: fn.dropout("0.5"), TypeError, r"dropout\(drop_prob=0.5\): drop_prob must be a number, got '0.5'"),
        (lambda: fn.batch_norm(eps=0.0), ValueError, r"batch_norm.*eps must be > 0.0 and finite, got 0.0"),
        (lambda: fn.batch_norm(momentum=None), TypeError, r"batch_norm.*momentum must be a number, got None"),
        (
            lambda: fn.residual(fn.dense(2))(
                fn.init_params(fn.dense(2), np.random.default_rng(0), (3,))[1], np.ones((4, 3), np.float32)
            ),
            ValueError,
            r"residual\(affine\(2\)\): affine\(2\) must keep the shape of x \(4, 3\)",
        ),
        (
            lambda: fn.init_params(fn.fan_out(fn.dense(3), fn.dense(4)), np.random.default_rng(0), (2,)),
            ValueError,
            r"fan_out\(affine\(3\), affine\(4\)\): affine\(4\) gives shape \(4,\) but affine\(3\) gives \(3,\)",
        ),
        (
            lambda: fn.dropout(0.5).run((), np.ones((2, 2)), train=True),
            ValueError,
            r"dropout\(drop_prob=0.5\): training draws a random mask, so it needs rng=",
        ),
        (
            lambda: fn.relu.run((), np.ones(2), {"a": 1}, train=True),
            TypeError,
            r"relu: keeps no state, so state must be \(\)",
        ),
        (lambda: fn.sandwich(fn.batch_norm(), fn.batch_norm()), ValueError, r"take a param named 'gamma'"),
    ],
)
def test_bad_calls_are_named(call, error, pattern):
    with pytest.raises(error, match=pattern):
        call()


def _batch_norm_run(layer, x, dtype, train=True):
    rng = np.random.default_rng(1)
    params = {
        "gamma": (1 + rng.random(x.shape[1])).astype(dtype),
        "beta": rng.standard_normal(x.shape[1]).astype(dtype),
    }
    y, vjp, state = layer.run(params, x.astype(dtype), fn.init_state(layer, x.shape[1:], dtype), train=train)
    dparams, dx = vjp(np.linspace(-1, 1, y.size).reshape(y.shape).astype(dtype))
    return y, dx, dparams, state


@pytest.mark.parametrize("layer, shape", [(fn.batch_norm(), (64, 3)), (fn.spatial_batch_norm(), (16, 3, 2, 2))])
@pytest.mark.parametrize("magnitude", [1e19, 1e-30, 1.0, "constant 1e19", "constant 1e18", "constant 3e38"])
def test_batch_norm_in_float32_is_finite_and_right_for_any_finite_input(layer, shape, magnitude):
    """Squares above 1.8e19 overflow float32 (the variance itself, 1e38, does not): the statistics must not square x
    itself, nor let eps times the scale's square underflow for a constant feature. Float64 on the same values is the
    truth."""
    if isinstance(magnitude, str):
        x = np.full(shape, float(magnitude.split()[1]), np.float32)
    else:
        x = (magnitude * (np.random.default_rng(0).standard_normal(shape) + 0.5)).astype(np.float32)
        assert np.abs(x).max() > 1.9 * magnitude
    y, dx, dparams, state = _batch_norm_run(layer, x, np.float32)  # conftest turns overflow into an error
    y64, dx64, dparams64, state64 = _batch_norm_run(layer, x, np.float64)
    assert np.isfinite(y).all() and np.isfinite(dx).all()
    # float32 against float64 (the truth; its inputs dy, gamma and beta unrounded): the bounds of two summation
    # orders (tests/bounds.py, factor 2 covering the 3 input roundings); the condition is 1 + |mean| / sigma,
    # except for a constant feature, whose float64 sum of m float32 copies is exact (24 + log2(m) < 53 bits),
    # so x - mean is exactly 0: condition 1
    axes = (0,) if x.ndim == 2 else (0, 2, 3)
    constant = bool((x == x.flat[0]).all())
    dy = np.linspace(-1, 1, y.size).reshape(y.shape)
    gamma_ = 1 + np.random.default_rng(1).random(x.shape[1])  # as _batch_norm_run draws them
    bounds = batch_norm_error_bounds(x, dy, gamma_, 1e-5, axes, np.float32, 1.0 if constant else None)
    assert_within(y, y64, bounds["y"] + gamma(4, np.float32) * np.abs(y64), "y")  # + beta's rounding
    assert_within(dx, dx64, bounds["dx"], "dx")
    assert_within(dparams["gamma"], dparams64["gamma"], bounds["gamma"], "dgamma")
    assert_within(dparams["beta"], dparams64["beta"], bounds["beta"] + gamma(1, np.float32) * np.abs(dy).sum(axis=axes))
    mean_bound = 2 * gamma(x.size + 4, np.float32) * np.abs(x.astype(np.float64)).mean(axis=axes)
    assert_within(state["running_mean"], state64["running_mean"], mean_bound, "running_mean")
    if np.isfinite(state64["running_var"].astype(np.float32)).all():
        var = state64["running_var"]
        x64 = x.astype(np.float64)
        kappa = 1.0 if constant else (1 + np.abs(x64).mean(axis=axes) / x64.std(axis=axes)).max()
        assert_within(state["running_var"], var, 2 * gamma(x.size + 8, np.float32) * kappa**2 * var)  # squares


def test_batch_norm_says_when_the_running_variance_cannot_be_stored():
    x = np.array([[-3e38], [3e38], [0.0]], np.float32)
    with pytest.raises(
        ValueError,
        match=r"batch_norm\(momentum=0.9, eps=1e-05\): the variance of x for D index 0 overflows float32 "
        r"in state\['running_var'\]",
    ):
        _batch_norm_run(fn.batch_norm(), x, np.float32)
    y, _, _, _ = _batch_norm_run(fn.batch_norm(), x, np.float64)  # float64 holds it
    assert np.isfinite(y).all()


def test_dropout_masks_come_from_the_generator():
    x = np.ones((200, 50))
    layer = fn.dropout(drop_prob=0.3)
    y1, vjp, state = layer.run((), x, train=True, rng=np.random.default_rng(7))
    y2, _, _ = layer.run((), x, train=True, rng=np.random.default_rng(7))
    y3, _, _ = layer.run((), x, train=True, rng=np.random.default_rng(8))
    np.testing.assert_array_equal(y1, y2)
    assert not np.array_equal(y1, y3)
    assert state == ()
    assert abs((y1 == 0).mean() - 0.3) < 0.02
    np.testing.assert_allclose(y1[y1 != 0], 1 / 0.7, rtol=ulps(2))  # 1 / keep, or 1 * (1 / keep): 2 roundings
    assert abs(y1.mean() - 1) < 0.03  # inverted dropout keeps the expectation
    np.testing.assert_array_equal(vjp(np.ones_like(x))[1], y1)
    y_eval, _, _ = layer.run((), x, train=False)
    np.testing.assert_array_equal(y_eval, x)
    assert layer.run((), x.astype(np.float32), train=True, rng=np.random.default_rng(0))[0].dtype == np.float32


def test_bound_dropout_draws_the_same_mask_every_call_so_check_vjp_works():
    bound = fn.bind(fn.dropout(0.5), train=True, rng=np.random.default_rng(3))
    x = np.random.default_rng(0).standard_normal((4, 5))
    np.testing.assert_array_equal(bound((), x)[0], bound((), x)[0])
    fn.check_vjp(bound, (), x, mode="full")


def test_stateless_chains_stay_plain_and_moded_chains_thread_state():
    plain = fn.chain(fn.dense(4), fn.relu, fn.dense(2))
    assert not plain.moded
    _, params = fn.init_params(plain, np.random.default_rng(0), (3,), np.float64)
    assert plain(params, np.ones((2, 3)))[0].shape == (2, 2)
    assert fn.init_state(plain, (3,)) == ()  # a chain of stateless layers keeps no state

    net = fn.chain(fn.dense(4), fn.batch_norm(), fn.relu, fn.dropout(0.5), fn.dense(2))
    assert net.moded
    _, params = fn.init_params(net, np.random.default_rng(0), (3,), np.float64)
    state = fn.init_state(net, (3,), np.float64)
    x = np.random.default_rng(1).standard_normal((6, 3))
    _, _, new_state = net.run(params, x, state, train=True, rng=np.random.default_rng(0))
    assert [s == () for s in new_state] == [True, False, True, True, True]
    assert not np.array_equal(new_state[1]["running_mean"], state[1]["running_mean"])
    np.testing.assert_array_equal(state[1]["running_mean"], np.zeros(4))
    with pytest.raises(TypeError, match="needs a mode"):
        net(params, x)
    with pytest.raises(TypeError, match=r"state must be a tuple with one entry per layer \(5\)"):
        net.run(params, x, (), train=True, rng=np.random.default_rng(0))
    fn.check_vjp(fn.bind(net, state, train=True, rng=np.random.default_rng(0)), params, x)
    fn.check_vjp(fn.bind(net, new_state, train=False), params, x)


def test_sandwich_merges_state_dicts():
    block = fn.sandwich(fn.dense(4), fn.batch_norm(), fn.relu)
    assert block.param_keys == ("w", "b", "gamma", "beta") and block.state_keys == ("running_mean", "running_var")
    _, params = fn.init_params(block, np.random.default_rng(0), (3,), np.float64)
    state = fn.init_state(block, (3,), np.float64)
    assert sorted(state) == ["running_mean", "running_var"]
    x = np.random.default_rng(1).standard_normal((5, 3))
    _, vjp, new_state = block.run(params, x, state, train=True)
    assert sorted(vjp(np.ones((5, 4)))[0]) == ["b", "beta", "gamma", "w"]
    assert sorted(new_state) == ["running_mean", "running_var"]


def test_fan_out_sums_the_gradient_of_an_input_used_twice():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 4))
    p1 = {"w": rng.standard_normal((4, 2)), "b": rng.standard_normal(2)}
    p2 = {"w": rng.standard_normal((4, 2)), "b": rng.standard_normal(2)}
    both = fn.fan_out(fn.affine, fn.affine)
    y, vjp = both((p1, p2), x)
    np.testing.assert_allclose(y, fn.affine(p1, x)[0] + fn.affine(p2, x)[0])
    dy = rng.standard_normal(y.shape)
    (_, g2), dx = vjp(dy)
    np.testing.assert_allclose(dx, dy @ p1["w"].T + dy @ p2["w"].T)
    np.testing.assert_allclose(g2["w"], x.T @ dy)
    fn.check_vjp(both, (p1, p2), x, mode="full")
    with pytest.raises(
        ValueError, match=r"fan_out\(affine, relu\): relu gives shape \(3, 4\) but affine gives \(3, 2\)"
    ):
        fn.fan_out(fn.affine, fn.relu)((p1, ()), x)


def test_residual_adds_the_skip_path():
    rng = np.random.default_rng(0)
    block = fn.residual(fn.conv_relu(stride=1, pad=1, filters=2, kernel_size=3))
    _, params = fn.init_params(block, rng, (2, 5, 5), np.float64)
    x = rng.standard_normal((2, 2, 5, 5))
    y, _ = block(params, x)
    np.testing.assert_allclose(y, x + fn.conv_relu(stride=1, pad=1)(params, x)[0])
    fn.check_vjp(block, params, x, on_kink="ignore")
    bn_block = fn.residual(fn.sandwich(fn.dense(3), fn.batch_norm()))
    _, bn_params = fn.init_params(bn_block, rng, (3,), np.float64)
    state = fn.init_state(bn_block, (3,), np.float64)
    assert sorted(state) == ["running_mean", "running_var"]
    fn.check_vjp(fn.bind(bn_block, state, train=True), bn_params, rng.standard_normal((4, 3)))


def test_fit_carries_state_and_resumes_it(tmp_path):
    from funcnn.data import load_digits
    from funcnn.training import load_checkpoint  # noqa: F401 (the file format is checked below)

    d = load_digits(np.float64)
    net = fn.nets.fc_net((20,), 10, batch_norm=True, dropout=0.2)
    _, params = fn.init_params(net, np.random.default_rng(0), (1, 8, 8), np.float64)

    def train(epochs, **kwargs):
        return fn.fit(
            net,
            params,
            (d.train.x[:300], d.train.y[:300]),
            (d.val.x[:60], d.val.y[:60]),
            fn.optim.adam(1e-2),
            epochs=epochs,
            batch_size=30,
            log=None,
            **kwargs,
        )

    straight = train(3)
    assert not np.array_equal(straight.state[0]["running_var"], np.ones(20))
    train(1, checkpoint=tmp_path / "c.npz")
    with np.load(tmp_path / "c.npz", allow_pickle=False) as data:
        assert "state/0/running_mean" in data.files and "best_state/0/running_var" in data.files
    resumed = train(3, checkpoint=fn.Checkpoint(tmp_path / "c.npz", resume=True))
    assert tree_allclose(resumed.params, straight.params, rtol=0, atol=0)
    assert tree_allclose(resumed.state, straight.state, rtol=0, atol=0)
    assert fn.accuracy(net, straight.params, d.val.x, d.val.y, straight.state) > 0.8


def test_numpy_scalar_hyperparameters_keep_float32_through_training():
    """A momentum from np.linspace must not turn a float32 state into float64 (then a dtype error)."""
    from funcnn.data import load_digits

    d = load_digits(np.float32)
    net = fn.chain(
        fn.dense(16),
        fn.batch_norm(momentum=np.float64(0.8), eps=np.float64(1e-5)),
        fn.relu,
        fn.dropout(np.float64(0.1)),
        fn.dense(10),
    )
    _, params = fn.init_params(net, np.random.default_rng(0), (1, 8, 8))
    result = fn.fit(
        net,
        params,
        (d.train.x[:60], d.train.y[:60]),
        (d.val.x[:20], d.val.y[:20]),
        fn.optim.adam(1e-3),
        epochs=2,
        batch_size=20,
        reg=np.float64(0.1),
        log=None,
    )
    assert all(leaf.dtype == np.float32 for leaf in tree_leaves((result.params, result.state)))
