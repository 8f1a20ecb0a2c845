"""leaky_relu, tanh, sigmoid, avg_pool, global_avg_pool, layer_norm and group_norm: hand values,
PyTorch's results, full gradient checks, errors, dtypes and NaN."""

import math

import numpy as np
import pytest
from bounds import LIBM_ULPS, assert_within, gamma, norm_error_bounds, ulps
from hypothesis import assume, given, settings

import funcnn as fn
from funcnn.testing import group_norm_problems, layer_norm_problems, pool_problems
from funcnn.tree import tree_leaves, tree_map

rng = np.random.default_rng(0)
X4 = rng.standard_normal((2, 4, 3, 3))
GN = {"gamma": rng.standard_normal(4), "beta": rng.standard_normal(4)}
LN = {"gamma": rng.standard_normal((4, 3, 3)), "beta": rng.standard_normal((4, 3, 3))}


def grads(layer, params, x, dy=None):
    y, vjp = layer(params, x)
    return (y, *vjp(np.ones_like(y) if dy is None else dy))


# -- activations ----------------------------------------------------------------------------------


def test_leaky_relu_hand_values_and_slope_alpha_at_zero():
    x = np.array([-2.0, -0.5, 0.0, 0.5, 3.0])
    y, _, dx = grads(fn.leaky_relu(0.1), (), x, dy=np.array([1.0, 2.0, 3.0, 4.0, 5.0]))
    # one product each, against decimal literals that are themselves rounded: 2 roundings
    np.testing.assert_allclose(y, [-0.2, -0.05, 0.0, 0.5, 3.0], rtol=ulps(2))
    np.testing.assert_allclose(dx, [0.1, 0.2, 0.3, 4.0, 5.0], rtol=ulps(2))


def test_leaky_relu_default_alpha_and_zero_alpha_is_relu():
    x = np.array([-3.0, 2.0])
    np.testing.assert_allclose(fn.leaky_relu()((), x)[0], [-0.03, 2.0], rtol=ulps(2))  # a product, a literal
    np.testing.assert_array_equal(fn.leaky_relu(0)((), X4)[0], fn.relu((), X4)[0])


def test_tanh_hand_values():
    x = np.array([-2.0, 0.0, 0.5, math.log(3) / 2])  # tanh(log(3) / 2) = 1/2
    y, _, dx = grads(fn.tanh, (), x)
    # two implementations of tanh, each within LIBM_ULPS; dx = 1 - y^2 amplifies y's error by 2 y^2 / (1 - y^2)
    np.testing.assert_allclose(y, [math.tanh(-2.0), 0.0, math.tanh(0.5), 0.5], rtol=ulps(2 * LIBM_ULPS))
    condition = 1 + 2 * y**2 / (1 - y**2)
    want = np.array([1 / math.cosh(-2.0) ** 2, 1.0, 1 / math.cosh(0.5) ** 2, 0.75])
    assert_within(dx, want, ulps(2 * LIBM_ULPS + 4) * condition * want, "dx")


def test_sigmoid_hand_values():
    x = np.array([0.0, math.log(3), -math.log(3), 2.0])
    y, _, dx = grads(fn.sigmoid, (), x)
    s2 = 1 / (1 + math.exp(-2.0))
    # exp within LIBM_ULPS and 3 roundings on each side; dx = y (1 - y): 1 - y amplifies by y / (1 - y)
    np.testing.assert_allclose(y, [0.5, 0.75, 0.25, s2], rtol=ulps(2 * LIBM_ULPS + 6))
    want = np.array([0.25, 3 / 16, 3 / 16, s2 * (1 - s2)])
    assert_within(dx, want, ulps(2 * LIBM_ULPS + 8) * (1 + y / (1 - y)) * want, "dx")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sigmoid_and_tanh_are_stable_for_large_inputs(dtype):
    x = np.array([-1e4, -800.0, -100.0, 100.0, 800.0, 1e4], dtype=dtype)
    with np.errstate(all="raise"):
        y, _, dx = grads(fn.sigmoid, (), x)
        t, _, dt = grads(fn.tanh, (), x)
    assert y.dtype == dx.dtype == t.dtype == dt.dtype == dtype
    np.testing.assert_array_equal(y[[0, 1, 4, 5]], [0, 0, 1, 1])
    np.testing.assert_array_equal(t, [-1, -1, -1, 1, 1, 1])
    assert np.all(np.isfinite(dx)) and np.all(dx >= 0) and np.all(dt == 0)


def test_sigmoid_slope_stays_exact_where_y_rounds_to_one():
    y, _, dx = grads(fn.sigmoid, (), np.array([40.0, -40.0]))
    assert y[0] == 1.0  # so y * (1 - y) would give 0
    np.testing.assert_allclose(dx, [math.exp(-40.0), math.exp(-40.0)], rtol=ulps(2 * LIBM_ULPS + 8))  # exp, a few ops


# -- pooling --------------------------------------------------------------------------------------


def test_avg_pool_hand_values():
    x = np.arange(16.0).reshape(1, 1, 4, 4)
    y, _, dx = grads(fn.avg_pool(), (), x)
    np.testing.assert_array_equal(y, [[[[2.5, 4.5], [10.5, 12.5]]]])
    np.testing.assert_array_equal(dx, np.full(x.shape, 0.25))


def test_avg_pool_overlapping_windows_add_their_gradients():
    x = np.arange(9.0).reshape(1, 1, 3, 3)
    y, _, dx = grads(fn.avg_pool(pool_height=2, pool_width=2, stride=1), (), x)
    np.testing.assert_array_equal(y, [[[[2.0, 3.0], [5.0, 6.0]]]])
    np.testing.assert_array_equal(dx[0, 0], np.array([[1, 2, 1], [2, 4, 2], [1, 2, 1]]) / 4)


def test_avg_pool_stride_larger_than_window_leaves_gaps():
    x = np.arange(25.0).reshape(1, 1, 5, 5)
    y, _, dx = grads(fn.avg_pool(pool_height=1, pool_width=2, stride=3), (), x)
    np.testing.assert_array_equal(y, [[[[0.5, 3.5], [15.5, 18.5]]]])
    expected = np.zeros((5, 5))
    expected[np.ix_([0, 3], [0, 1, 3, 4])] = 0.5
    np.testing.assert_array_equal(dx[0, 0], expected)


@settings(max_examples=30)
@given(pool_problems())
def test_avg_pool_is_the_mean_of_each_window(p):
    y, _ = fn.avg_pool(**p.pool_param)((), p.x)
    for i in range(y.shape[2]):
        for j in range(y.shape[3]):
            window = p.x[:, :, i * p.stride : i * p.stride + p.pool_height, j * p.stride : j * p.stride + p.pool_width]
            # two orders of one mean of k terms: 2 gamma(k + 1) of the mean of |terms|
            bound = 2 * gamma(window[0, 0].size + 1, p.x.dtype) * np.abs(window).mean(axis=(2, 3))
            assert_within(y[:, :, i, j], window.mean(axis=(2, 3)), bound)


@settings(max_examples=30)
@given(pool_problems(np.float64))
def test_avg_pool_matches_pytorch(p):
    torch = pytest.importorskip("torch")
    y, vjp = fn.avg_pool(**p.pool_param)((), p.x)
    dy = np.random.default_rng(1).standard_normal(y.shape)
    xt = torch.tensor(p.x, requires_grad=True)
    yt = torch.nn.functional.avg_pool2d(xt, (p.pool_height, p.pool_width), p.stride)
    (yt * torch.tensor(dy)).sum().backward()
    # y: a mean of k terms; dx: a sum of at most k (overlapping windows) dy / k: two orders, 2 gamma(k + 1)
    k = p.pool_height * p.pool_width
    mean_terms = fn.avg_pool(**p.pool_param)((), np.abs(p.x))[0]
    assert_within(y, yt.detach().numpy(), 2 * gamma(k + 1, np.float64) * mean_terms, "y")
    dx_terms = vjp(np.abs(dy))[1]
    assert_within(vjp(dy)[1], xt.grad.numpy(), 2 * gamma(k + 1, np.float64) * dx_terms, "dx")


@pytest.mark.parametrize(
    "kwargs, x",
    [({"pool_height": 6}, X4), ({"pool_width": 4}, X4), ({"stride": 0}, X4), ({"pool_height": 1.5}, X4), ({}, X4[0])],
)
def test_avg_pool_errors_are_max_pools_with_the_name_changed(kwargs, x):
    with pytest.raises(Exception) as expected:
        fn.max_pool_naive(**kwargs)((), x)
    with pytest.raises(type(expected.value)) as got:
        fn.avg_pool(**kwargs)((), x)
    assert str(got.value) == str(expected.value).replace("max_pool_naive", "avg_pool")


def test_global_avg_pool_hand_values():
    x = np.arange(12.0).reshape(1, 2, 2, 3)
    y, _, dx = grads(fn.global_avg_pool, (), x, dy=np.array([[6.0, 12.0]]))
    np.testing.assert_array_equal(y, [[2.5, 8.5]])
    np.testing.assert_array_equal(dx, np.concatenate([np.ones((1, 1, 2, 3)), 2 * np.ones((1, 1, 2, 3))], axis=1))
    assert dx.flags.writeable


def test_global_avg_pool_is_avg_pool_over_the_whole_image():
    y, _ = fn.global_avg_pool((), X4)
    bound = 2 * gamma(10, np.float64) * np.abs(X4).mean(axis=(2, 3))  # two orders of a mean of 9 terms
    assert_within(y, fn.avg_pool(3, 3, 1)((), X4)[0][:, :, 0, 0], bound)


# -- normalization --------------------------------------------------------------------------------


def test_layer_norm_hand_values():
    x = np.array([[1.0, 2.0, 3.0, 6.0]])  # mean 3, biased variance 3.5
    params = {"gamma": np.array([1.0, 2.0, 1.0, 1.0]), "beta": np.array([0.0, 0.0, 1.0, 0.0])}
    y, dparams, dx = grads(fn.layer_norm(eps=0.5), params, x)
    xhat = np.array([-2.0, -1.0, 0.0, 3.0]) / 2.0  # sqrt(3.5 + 0.5) = 2
    # mean, variance and sqrt are exact on these values; a division and a product round: 2 ulps
    np.testing.assert_allclose(y, [xhat * [1, 2, 1, 1] + [0, 0, 1, 0]], rtol=ulps(2))
    np.testing.assert_allclose(dparams["gamma"], xhat, rtol=ulps(2))
    np.testing.assert_array_equal(dparams["beta"], np.ones(4))
    g = np.array([1.0, 2.0, 1.0, 1.0])  # dy * gamma
    want = (g - g.mean() - xhat * (g * xhat).mean()) / 2.0
    bound = norm_error_bounds(x, np.ones_like(x), params["gamma"], 0.5, np.float64)["dx"]  # two orders
    assert_within(dx, [want], bound, "dx")


def test_group_norm_hand_values():
    x = np.array([1.0, 3.0, 10.0, 10.0]).reshape(1, 4, 1, 1)  # groups {1, 3} and {10, 10}
    params = {"gamma": np.array([1.0, 1.0, 2.0, 2.0]), "beta": np.array([0.0, 0.0, 5.0, 5.0])}
    y, _ = fn.group_norm(2, eps=3.0)(params, x)  # first group: mean 2, variance 1, sqrt(1 + 3) = 2
    np.testing.assert_allclose(y.ravel(), [-0.5, 0.5, 5.0, 5.0], rtol=ulps(2))  # exact statistics, 2 roundings


def _torch_norm(torch, layer_fn, params, x, dy):
    xt = torch.tensor(x, requires_grad=True)
    gamma, beta = (torch.tensor(params[k], requires_grad=True) for k in ("gamma", "beta"))
    yt = layer_fn(xt, gamma, beta)
    (yt * torch.tensor(dy)).sum().backward()
    return yt.detach().numpy(), {"gamma": gamma.grad.numpy(), "beta": beta.grad.numpy()}, xt.grad.numpy()


def _assert_matches_torch(layer, torch_layer, params, x, groups=1, eps=1e-5):
    """funcnn's norm equals PyTorch's within the bounds of two summation orders (tests/bounds.py): x normalized
    in ``groups`` groups per example (layer norm: 1), gamma and beta per feature (layer norm) or channel."""
    torch = pytest.importorskip("torch")
    y, vjp = layer(params, x)
    dy = np.random.default_rng(1).standard_normal(y.shape)
    dparams, dx = vjp(dy)
    yt, dparams_t, dxt = _torch_norm(torch, torch_layer(torch), params, x, dy)
    gamma_ = params["gamma"].reshape(params["gamma"].shape + (1,) * (x.ndim - 1 - params["gamma"].ndim))
    gamma_ = np.broadcast_to(gamma_, x.shape)
    grouped = lambda a: a.reshape(x.shape[0], groups, -1)  # noqa: E731
    bounds = {
        k: v.reshape(x.shape)
        for k, v in norm_error_bounds(grouped(x), grouped(dy), grouped(gamma_), eps, x.dtype).items()
    }
    param_axes = (0, *range(params["gamma"].ndim + 1, x.ndim))  # the batch axis, and those gamma is broadcast over
    beta_ = np.broadcast_to(
        params["beta"].reshape(gamma_.shape[1 : 1 + params["beta"].ndim] + (1,) * (x.ndim - 1 - params["beta"].ndim)),
        x.shape,
    )
    # + the two roundings of gamma * xhat + beta in each computation, of the terms' magnitudes
    final = 2 * gamma(2, x.dtype) * (np.abs(yt - beta_) + np.abs(beta_))
    assert_within(y, yt, bounds["y"] + final, "y")
    assert_within(dx, dxt, bounds["dx"], "dx")
    # dgamma and dbeta sum n terms over those axes: their terms' bounds, plus that sum's own rounding in each
    # computation, gamma(n) of the magnitudes (n can exceed the m values a group's statistics sum).
    n = int(np.prod([x.shape[axis] for axis in param_axes]))
    xhat = np.abs(grouped(x) - grouped(x).mean(axis=-1, keepdims=True))
    xhat = (xhat / np.sqrt((xhat**2).mean(axis=-1, keepdims=True) + eps)).reshape(x.shape)
    sums = {k: 2 * gamma(n, x.dtype) * np.abs(t).sum(axis=param_axes) for k, t in (("gamma", dy * xhat), ("beta", dy))}
    dgamma_bound = bounds["gamma_terms"].sum(axis=param_axes) + sums["gamma"]
    assert_within(dparams["gamma"], dparams_t["gamma"], dgamma_bound, "dgamma")
    assert_within(dparams["beta"], dparams_t["beta"], bounds["beta_terms"].sum(axis=param_axes) + sums["beta"], "dbeta")


@settings(max_examples=40)
@given(layer_norm_problems(np.float64))
def test_layer_norm_matches_pytorch(p):
    shape = p.x.shape[1:]
    _assert_matches_torch(
        fn.layer_norm(),
        lambda torch: lambda x, g, b: torch.nn.functional.layer_norm(x, shape, g, b, 1e-5),
        p.params,
        p.x,
    )


@settings(max_examples=40)
@given(group_norm_problems(np.float64))
def test_group_norm_matches_pytorch(p):
    groups = p.groups
    assume(p.x.shape[0] * p.x.shape[2] * p.x.shape[3] > 1)  # PyTorch refuses N * H * W == 1
    _assert_matches_torch(
        fn.group_norm(groups),
        lambda torch: lambda x, g, b: torch.nn.functional.group_norm(x, groups, g, b, 1e-5),
        p.params,
        p.x,
        groups,
    )


@pytest.mark.parametrize("shape", [(3, 6), (2, 6, 5)])
def test_group_norm_matches_pytorch_without_spatial_axes_or_with_one(shape):
    x = rng.standard_normal(shape)
    params = {"gamma": rng.standard_normal(6), "beta": rng.standard_normal(6)}
    _assert_matches_torch(
        fn.group_norm(3, eps=1e-3),
        lambda torch: lambda x, g, b: torch.nn.functional.group_norm(x, 3, g, b, 1e-3),
        params,
        x,
        3,
        1e-3,
    )


def test_group_norm_with_one_group_is_layer_norm_with_gamma_per_channel():
    ln = {
        "gamma": np.broadcast_to(GN["gamma"][:, None, None], X4.shape[1:]),
        "beta": np.broadcast_to(GN["beta"][:, None, None], X4.shape[1:]),
    }
    bound = norm_error_bounds(
        X4.reshape(2, 1, -1), np.zeros((2, 1, 36)), ln["gamma"].reshape(1, 1, -1), 1e-5, np.float64
    )
    assert_within(fn.group_norm(1)(GN, X4)[0], fn.layer_norm()(ln, X4)[0], bound["y"].reshape(X4.shape))


# -- all of them ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "layer, params, x",
    [
        (fn.leaky_relu(0.3), (), rng.standard_normal((3, 4))),
        (fn.tanh, (), rng.standard_normal((3, 4))),
        (fn.sigmoid, (), 3 * rng.standard_normal((3, 4))),
        (fn.avg_pool(2, 3, 1), (), rng.standard_normal((2, 2, 4, 5))),
        (fn.global_avg_pool, (), rng.standard_normal((2, 3, 2, 3))),
        (
            fn.layer_norm(),
            {"gamma": rng.standard_normal((2, 3)), "beta": rng.standard_normal((2, 3))},
            rng.standard_normal((3, 2, 3)),
        ),
        (fn.group_norm(2), GN, X4),
    ],
    ids=lambda v: v.name if isinstance(v, fn.Layer) else "",
)
def test_check_vjp_full_mode(layer, params, x):
    report = fn.check_vjp(layer, params, x, mode="full", on_kink="raise")
    assert all(leaf.status == "ok" for leaf in report.leaves)


def test_init_params_through_a_chain():
    net = fn.chain(
        fn.conv(pad=1, filters=4, kernel_size=3), fn.group_norm(2), fn.leaky_relu(), fn.avg_pool(),
        fn.layer_norm(), fn.tanh, fn.global_avg_pool, fn.dense(3), fn.sigmoid,
    )  # fmt: skip
    out_shape, params = fn.init_params(net, np.random.default_rng(0), (1, 8, 8))
    assert out_shape == (3,)
    gn, ln = params[1], params[4]
    np.testing.assert_array_equal(gn["gamma"], np.ones(4, dtype=np.float32))
    np.testing.assert_array_equal(gn["beta"], np.zeros(4, dtype=np.float32))
    assert ln["gamma"].shape == ln["beta"].shape == (4, 4, 4) and ln["gamma"].dtype == np.float32
    np.testing.assert_array_equal(ln["gamma"], 1)
    assert params[2] == params[3] == params[5] == params[6] == params[8] == ()
    y, _ = net(params, np.random.default_rng(1).standard_normal((2, 1, 8, 8)).astype(np.float32))
    assert y.shape == (2, 3) and y.dtype == np.float32


@pytest.mark.parametrize(
    "call, error, pattern",
    [
        (
            lambda: fn.leaky_relu(-0.1),
            ValueError,
            r"leaky_relu\(alpha=-0.1\): alpha must be >= 0.0 and finite, got -0.1",
        ),
        (lambda: fn.leaky_relu("0.1"), TypeError, r"leaky_relu\(alpha=0.1\): alpha must be a number, got '0.1'"),
        (lambda: fn.leaky_relu(np.nan), ValueError, r"alpha must be >= 0.0 and finite, got nan"),
        (
            lambda: fn.leaky_relu()((), np.ones(3, dtype=int)),
            TypeError,
            r"leaky_relu\(alpha=0.01\): x must be a float32 or float64 array, got dtype int64 \(shape \(3,\)\)",
        ),
        (
            lambda: fn.tanh((), np.ones(3, dtype=np.float16)),
            TypeError,
            r"tanh: x must be a float32 or float64 array, got dtype float16",
        ),
        (lambda: fn.sigmoid((), [1, 2]), TypeError, r"sigmoid: x must be a float32 or float64 array, got dtype int64"),
        (lambda: fn.sigmoid({"w": 1}, X4), TypeError, r"sigmoid: takes no params, so params must be \(\)"),
        (
            lambda: fn.avg_pool()((), X4.astype(np.int32)),
            TypeError,
            r"avg_pool\(pool_height=2, pool_width=2, stride=2\): x must be a float32 or float64 array, got dtype int32",
        ),
        (
            lambda: fn.global_avg_pool((), X4[0]),
            ValueError,
            r"global_avg_pool: x must be 4-D \(N, C, H, W\), got shape \(4, 3, 3\)",
        ),
        (
            lambda: fn.global_avg_pool((), np.ones((2, 3), dtype=bool)),
            TypeError,
            r"global_avg_pool: x must be a float32 or float64 array, got dtype bool",
        ),
        (
            lambda: fn.group_norm(3)(GN, X4),
            ValueError,
            r"group_norm\(groups=3, eps=1e-05\): groups=3 must divide the channels of x, "
            r"but C=4 \(shape \(2, 4, 3, 3\)\)",
        ),
        (
            lambda: fn.init_params(fn.group_norm(3), rng, (4, 3, 3)),
            ValueError,
            r"group_norm\(groups=3, eps=1e-05\): groups=3 must divide the channels of x, but C=4 \(shape \(4, 3, 3\)\)",
        ),
        (lambda: fn.group_norm(0), ValueError, r"group_norm\(groups=0, eps=1e-05\): groups must be >= 1, got 0"),
        (lambda: fn.group_norm(2.0), TypeError, r"groups must be an int, got 2.0"),
        (
            lambda: fn.group_norm(2, eps=0),
            ValueError,
            r"group_norm\(groups=2, eps=0\): eps must be > 0.0 and finite, got 0",
        ),
        (
            lambda: fn.group_norm(2)({"gamma": np.ones(3), "beta": np.zeros(4)}, X4),
            ValueError,
            r"group_norm\(groups=2, eps=1e-05\): params\['gamma'\] must have shape \(4,\) "
            r"to match x of shape \(2, 4, 3, 3\), got \(3,\)",
        ),
        (
            lambda: fn.group_norm(2)({"gamma": np.ones(4), "beta": np.zeros((4, 1))}, X4),
            ValueError,
            r"params\['beta'\] must have shape \(4,\) to match x of shape \(2, 4, 3, 3\), got \(4, 1\)",
        ),
        (
            lambda: fn.group_norm(2)({"gamma": np.ones(4)}, X4),
            TypeError,
            r"group_norm\(groups=2, eps=1e-05\): params must be a dict with keys \['gamma', 'beta'\]",
        ),
        (
            lambda: fn.group_norm(2)(GN, X4.astype(np.float32)),
            TypeError,
            r"group_norm.*arrays must share one dtype, but x is float32, gamma is float64, beta is float64",
        ),
        (
            lambda: fn.group_norm(2)(GN, np.ones(4)),
            ValueError,
            r"group_norm.*x must be at least 2-D \(N, C, ...\), got shape \(4,\)",
        ),
        (
            lambda: fn.layer_norm()({"gamma": np.ones(4), "beta": np.zeros(4)}, X4),
            ValueError,
            r"layer_norm\(eps=1e-05\): params\['gamma'\] must have shape \(4, 3, 3\) "
            r"to match x of shape \(2, 4, 3, 3\), got \(4,\)",
        ),
        (
            lambda: fn.layer_norm()(LN, X4.astype(int)),
            TypeError,
            r"layer_norm\(eps=1e-05\): x must be a float32 or float64 array, got dtype int64 \(shape \(2, 4, 3, 3\)\)",
        ),
        (
            lambda: fn.layer_norm()(LN, np.ones(4)),
            ValueError,
            r"layer_norm\(eps=1e-05\): x must be at least 2-D \(N, d1, ..., dk\), got shape \(4,\)",
        ),
        (
            lambda: fn.layer_norm(eps=-1.0),
            ValueError,
            r"layer_norm\(eps=-1.0\): eps must be > 0.0 and finite, got -1.0",
        ),
    ],
)
def test_bad_input_is_named(call, error, pattern):
    with pytest.raises(error, match=pattern):
        call()


@pytest.mark.parametrize(
    "layer, params, x",
    [
        (fn.leaky_relu(), (), X4),
        (fn.tanh, (), X4),
        (fn.sigmoid, (), X4),
        (fn.avg_pool(), (), X4),
        (fn.global_avg_pool, (), X4),
        (fn.layer_norm(), LN, X4),
        (fn.group_norm(2), GN, X4),
    ],
)
def test_vjp_rejects_dy_of_the_wrong_shape(layer, params, x):
    _, vjp = layer(params, x)
    with pytest.raises(
        ValueError, match=rf"{layer.name.replace('(', '.').replace(')', '.')} vjp: dy must have the output's shape"
    ):
        vjp(np.ones((1, 2)))


def _nan_at_first_pixel(x):
    x = x.copy()
    x[0, 0, 0, 0] = np.nan
    return x


@pytest.mark.parametrize(
    "layer, params, expected_nan",
    [
        (fn.leaky_relu(), (), lambda nan: nan),
        (fn.tanh, (), lambda nan: nan),
        (fn.sigmoid, (), lambda nan: nan),
        (
            fn.avg_pool(2, 2, 1),
            (),
            lambda nan: np.arange(2 * 4 * 2 * 2).reshape(2, 4, 2, 2) == 0,
        ),  # only the first window
        (fn.global_avg_pool, (), lambda nan: nan.any(axis=(2, 3))),
        (fn.layer_norm(), LN, lambda nan: np.broadcast_to(nan.any(axis=(1, 2, 3), keepdims=True), nan.shape)),
        (
            fn.group_norm(2),
            GN,
            lambda nan: np.broadcast_to(
                (np.arange(4) < 2)[None, :, None, None] & (np.arange(2) == 0)[:, None, None, None], nan.shape
            ),
        ),
    ],
)
def test_nan_in_nan_out_exactly_where_it_reaches(layer, params, expected_nan):
    x = _nan_at_first_pixel(X4)
    y, _ = layer(params, x)
    np.testing.assert_array_equal(np.isnan(y), expected_nan(np.isnan(x)))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(
    "layer, params, terms, groups",
    [
        (fn.leaky_relu(0.5), (), 1, None),
        (fn.tanh, (), 1, None),
        (fn.sigmoid, (), 1, None),
        (fn.avg_pool(2, 2, 1), (), 4, None),
        (fn.global_avg_pool, (), 9, None),
        (fn.layer_norm(), LN, None, 1),
        (fn.group_norm(4), GN, None, 4),
    ],
)
def test_dtype_is_kept_and_float32_agrees_with_float64(layer, params, terms, groups, dtype):
    params_d, x_d = tree_map(lambda a: a.astype(dtype), params), X4.astype(dtype)
    y, dparams, dx = grads(layer, params_d, x_d)
    # the float64 reference runs on the same (rounded) values, so only the computation's rounding differs
    y64, _, dx64 = grads(layer, tree_map(lambda a: a.astype(np.float64), params_d), x_d.astype(np.float64))
    assert y.dtype == dx.dtype == dtype and all(g.dtype == dtype for g in tree_leaves(dparams))
    if groups is None:  # elementwise (an exp or tanh, a few roundings) or a mean of `terms` terms: normwise
        rel = gamma(terms + 2 * LIBM_ULPS + 8, dtype)
        assert_within(y, y64, rel * np.abs(y64).max(), "y")
        assert_within(dx, dx64, rel * np.abs(dx64).max(), "dx")
    else:
        gamma_ = params_d["gamma"].reshape(params_d["gamma"].shape + (1,) * (X4.ndim - 1 - params_d["gamma"].ndim))
        grouped = lambda a: np.broadcast_to(a, X4.shape).reshape(X4.shape[0], groups, -1)  # noqa: E731
        bounds = norm_error_bounds(grouped(x_d), grouped(np.ones_like(X4)), grouped(gamma_), 1e-5, dtype)
        assert_within(y, y64, bounds["y"].reshape(X4.shape) + gamma(1, dtype) * np.abs(y64), "y")
        assert_within(dx, dx64, bounds["dx"].reshape(X4.shape), "dx")
