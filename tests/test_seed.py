"""The course notebook's own checks, with its inputs and expected outputs, done right where its run
was wrong (its max-pool backward error was 1.0)."""

import numpy as np
import pytest
from bounds import (
    LIBM_ULPS,
    assert_conv_matches_reference,
    central_difference_error,
    course_rel_error_bound,
    layer_terms,
    moved_magnitude,
    printed_rel_error_bound,
)

import funcnn as fn
from funcnn import numerical_gradient, numerical_gradient_array, rel_error


def linspace(lo, hi, shape):
    return np.linspace(lo, hi, num=int(np.prod(shape))).reshape(shape)


def grad_errors(layer, params, x, dout, n_terms):
    """rel_error of each analytic gradient (params leaves by name, then dx) against the course's helper, and the
    most it can be when both are right: from the central difference's rounding (tests/bounds.py), the layer's
    outputs being sums of ``n_terms`` products built of conv, affine, ReLU and max-pool."""
    _, vjp = layer(params, x)
    dparams, dx = vjp(dout)
    terms = layer_terms(layer, params, x)
    errors, bounds = {}, {}
    for key, value, analytic in [("dx", x, dx), *(("d" + k, params[k], dparams[k]) for k in params)]:

        def f(moved, key=key):
            return layer(params, moved)[0] if key == "dx" else layer({**params, key[1:]: moved}, x)[0]

        errors[key] = rel_error(analytic, numerical_gradient_array(f, value, dout))
        magnitude = moved_magnitude(f, value, dout, terms)
        bounds[key] = course_rel_error_bound(analytic, central_difference_error(magnitude, n_terms, value, analytic))
    return errors, bounds


def assert_within_bounds(errors, bounds):
    print({key: f"{errors[key]:.1e} <= {bounds[key]:.1e}" for key in errors})
    assert all(errors[key] <= bounds[key] for key in errors), (errors, bounds)


def test_affine_forward():
    x = linspace(-0.1, 0.5, (2, 4, 5, 6))
    params = {"w": linspace(-0.2, 0.3, (120, 3)), "b": np.linspace(-0.3, 0.1, num=3)}
    correct = np.array([[1.49834967, 1.70660132, 1.91485297], [3.25553199, 3.5141327, 3.77273342]])
    assert rel_error(fn.affine(params, x)[0], correct) <= printed_rel_error_bound(correct)  # the notebook: 9.8e-10


def test_relu_forward():
    out, _ = fn.relu((), linspace(-0.5, 0.5, (3, 4)))
    correct = np.array(
        [[0.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.04545455, 0.13636364], [0.22727273, 0.31818182, 0.40909091, 0.5]]
    )
    assert rel_error(out, correct) <= printed_rel_error_bound(correct)  # the notebook: 5.0e-8


@pytest.mark.parametrize("conv", [fn.conv, fn.conv_naive])
def test_conv_forward(conv):
    x = linspace(-0.1, 0.5, (2, 3, 4, 4))
    params = {"w": linspace(-0.2, 0.3, (3, 3, 4, 4)), "b": np.linspace(-0.1, 0.2, num=3)}
    out, _ = conv(stride=2, pad=1)(params, x)
    correct = np.array(
        [
            [
                [[-0.08759809, -0.10987781], [-0.18387192, -0.2109216]],
                [[0.21027089, 0.21661097], [0.22847626, 0.23004637]],
                [[0.50813986, 0.54309974], [0.64082444, 0.67101435]],
            ],
            [
                [[-0.98053589, -1.03143541], [-1.19128892, -1.24695841]],
                [[0.69108355, 0.66880383], [0.59480972, 0.56776003]],
                [[2.36270298, 2.36904306], [2.38090835, 2.38247847]],
            ],
        ]
    )
    assert rel_error(out, correct) <= printed_rel_error_bound(correct)  # the notebook: 2.2e-8


@pytest.mark.parametrize("pool", [fn.max_pool, fn.max_pool_naive])
def test_max_pool_forward(pool):
    out, _ = pool(pool_width=2, pool_height=2, stride=2)((), linspace(-0.3, 0.4, (2, 3, 4, 4)))
    correct = np.array(
        [
            [
                [[-0.26315789, -0.24842105], [-0.20421053, -0.18947368]],
                [[-0.14526316, -0.13052632], [-0.08631579, -0.07157895]],
                [[-0.02736842, -0.01263158], [0.03157895, 0.04631579]],
            ],
            [
                [[0.09052632, 0.10526316], [0.14947368, 0.16421053]],
                [[0.20842105, 0.22315789], [0.26736842, 0.28210526]],
                [[0.32631579, 0.34105263], [0.38526316, 0.4]],
            ],
        ]
    )
    assert rel_error(out, correct) <= printed_rel_error_bound(correct)  # the notebook: 4.2e-8


def test_affine_backward():
    rng = np.random.default_rng(231)
    params = {"w": rng.standard_normal((6, 5)), "b": rng.standard_normal(5)}
    errors = grad_errors(fn.affine, params, rng.standard_normal((10, 2, 3)), rng.standard_normal((10, 5)), 7)
    assert_within_bounds(*errors)  # the notebook: 1e-10, 1.4e-10, 2.1e-11


def test_relu_backward():
    rng = np.random.default_rng(231)
    x, dout = rng.standard_normal((10, 10)), rng.standard_normal((10, 10))
    _, vjp = fn.relu((), x)
    dx = vjp(dout)[1]
    bound = course_rel_error_bound(dx, central_difference_error(0.0, 1, x, dx))  # relu rounds nothing: x +- h only
    assert rel_error(dx, numerical_gradient_array(lambda z: fn.relu((), z)[0], x, dout)) <= bound  # 3.3e-12


def test_losses_values_and_gradients():
    rng = np.random.default_rng(231)
    x = 0.001 * rng.standard_normal((50, 10))
    y = rng.integers(10, size=50)
    loss, vjp = fn.svm_loss(x, y)
    assert loss == pytest.approx(9.0, abs=0.01)  # the notebook: 9.0006
    # the loss is a mean of 50 sums of 10 hinge terms max(0, s_j - s_y + 1), each of magnitude about 1 + 2|s|
    magnitude, n_terms = (
        float(np.mean(np.sum(1 + np.abs(x) + np.abs(x[np.arange(50), y])[:, None], axis=1))),
        3 * 10 + 50,
    )
    bound = course_rel_error_bound(vjp(), central_difference_error(magnitude, n_terms, x, vjp()))
    assert rel_error(numerical_gradient(lambda s: fn.svm_loss(s, y)[0], x, h=1e-5), vjp()) <= bound  # 1.4e-9
    loss, vjp = fn.softmax_loss(x, y)
    assert loss == pytest.approx(np.log(10), abs=0.01)  # the notebook: 2.3026
    # a mean of 50 log-sum-exps of 10 terms (exp and log within LIBM_ULPS) minus s_y; the third derivative of
    # log-sum-exp along one score is p (1 - p) (1 - 2 p), below 0.1, over N = 50
    magnitude, n_terms = float(np.log(10) + 2 * np.abs(x).max()), 10 + 2 * LIBM_ULPS + 50
    truncation = 1e-10 / 6 * 0.1 / 50
    error = central_difference_error(magnitude, n_terms, x, vjp(), truncation=truncation)
    assert rel_error(
        numerical_gradient(lambda s: fn.softmax_loss(s, y)[0], x, h=1e-5), vjp()
    ) <= course_rel_error_bound(vjp(), error)  # the notebook: 9.2e-9


@pytest.mark.parametrize("conv", [fn.conv, fn.conv_naive])
def test_conv_backward(conv):
    rng = np.random.default_rng(231)
    params = {"w": rng.standard_normal((2, 3, 3, 3)), "b": rng.standard_normal(2)}
    x, dout = rng.standard_normal((4, 3, 5, 5)), rng.standard_normal((4, 2, 5, 5))
    errors = grad_errors(conv(stride=1, pad=1), params, x, dout, 3 * 3 * 3 + 1)
    assert_within_bounds(*errors)  # the notebook: 1.1e-8, 2.1e-10, 9.4e-12


@pytest.mark.parametrize("pool", [fn.max_pool, fn.max_pool_naive])
def test_max_pool_backward_is_right_where_the_notebook_was_wrong(pool):
    rng = np.random.default_rng(231)
    x, dout = rng.standard_normal((3, 2, 8, 8)), rng.standard_normal((3, 2, 4, 4))
    layer = pool(pool_height=2, pool_width=2, stride=2)
    _, vjp = layer((), x)
    dx = vjp(dout)[1]
    error = rel_error(dx, numerical_gradient_array(lambda z: layer((), z)[0], x, dout))
    # max-pool selects: only x +- h rounds (the notebook printed 1.0, and said it should be about 1e-12)
    assert error <= course_rel_error_bound(dx, central_difference_error(0.0, 1, x, dx))


def test_fast_layers_match_naive_on_the_notebook_timing_problem():
    rng = np.random.default_rng(231)
    x = rng.standard_normal((100, 3, 31, 31))
    params = {"w": rng.standard_normal((25, 3, 3, 3)), "b": rng.standard_normal(25)}
    dout = rng.standard_normal((100, 25, 16, 16))
    (y, vjp) = fn.conv(stride=2, pad=1)(params, x)
    assert_conv_matches_reference(y, *vjp(dout), {"stride": 2, "pad": 1}, params, x, dout)
    x = rng.standard_normal((100, 3, 32, 32))
    dout = rng.standard_normal((100, 3, 16, 16))
    fast, naive = fn.max_pool()((), x), fn.max_pool_naive()((), x)
    assert rel_error(fast[0], naive[0]) == 0.0
    assert rel_error(fast[1](dout)[1], naive[1](dout)[1]) == 0.0  # the notebook's fast pool: 1.0


@pytest.mark.parametrize(
    "layer, x_shape, w_shape, dout_shape",
    [
        (
            fn.conv_relu_pool({"stride": 1, "pad": 1}, {"pool_height": 2, "pool_width": 2, "stride": 2}),
            (2, 3, 16, 16),
            (3, 3, 3, 3),
            (2, 3, 8, 8),
        ),
        (fn.conv_relu(stride=1, pad=1), (2, 3, 8, 8), (3, 3, 3, 3), (2, 3, 8, 8)),
        (fn.affine_relu, (2, 3, 4), (12, 10), (2, 10)),
    ],
)
def test_sandwich_layers(layer, x_shape, w_shape, dout_shape):
    rng = np.random.default_rng(231)
    params = {
        "w": rng.standard_normal(w_shape),
        "b": rng.standard_normal(w_shape[0] if len(w_shape) == 4 else w_shape[1]),
    }
    n_terms = int(np.prod(w_shape[1:])) + 1 if len(w_shape) == 4 else w_shape[0] + 1
    errors = grad_errors(layer, params, rng.standard_normal(x_shape), rng.standard_normal(dout_shape), n_terms)
    assert_within_bounds(*errors)  # the notebook: up to 1e-8
