"""check_vjp catches each failure it claims to, and passes correct layers."""

import warnings

import numpy as np
import pytest
from bounds import LIBM_ULPS, assert_within, gamma, ulps

import funcnn as fn

rng = np.random.default_rng(0)
PARAMS = {"w": rng.standard_normal((6, 4)), "b": rng.standard_normal(4)}
X = rng.standard_normal((3, 6))


def broken_affine(break_vjp):
    """affine with its vjp passed through ``break_vjp(dparams, dx, dy, calls) -> (dparams, dx)``."""
    calls = []

    def apply(params, x):
        y, vjp = fn.affine(params, x)

        def bad_vjp(dy):
            calls.append(1)
            dparams, dx = vjp(dy)
            return break_vjp(dparams, dx, dy, len(calls))

        return y, bad_vjp

    return apply


@pytest.mark.parametrize("mode", ["fast", "full"])
def test_rejects_a_bias_gradient_off_by_a_tenth_of_a_percent(mode):
    f = broken_affine(lambda dp, dx, dy, n: ({"w": dp["w"], "b": dp["b"] * 1.001}, dx))
    with pytest.raises(
        fn.VJPCheckError, match=r'gradient of params\["b"\] is wrong.*analytic .*numeric .*relative error'
    ):
        fn.check_vjp(f, PARAMS, X, mode=mode)


def test_rejects_an_input_gradient_off_by_a_tenth_of_a_percent():
    f = broken_affine(lambda dp, dx, dy, n: (dp, dx * 1.001))
    with pytest.raises(fn.VJPCheckError, match=r"gradient of x is wrong"):
        fn.check_vjp(f, PARAMS, X)


def test_full_mode_names_the_wrong_element():
    def one_wrong_element(dp, dx, dy, n):
        w = dp["w"].copy()
        w[2, 1] *= 1.01
        return {"w": w, "b": dp["b"]}, dx

    with pytest.raises(fn.VJPCheckError, match=r'params\["w"\] is wrong at element \(2, 1\)'):
        fn.check_vjp(broken_affine(one_wrong_element), PARAMS, X, mode="full")


def test_rejects_a_vjp_that_ignores_dy():
    fixed_dy = np.ones((3, 4))
    _, true_vjp = fn.affine(PARAMS, X)
    f = broken_affine(lambda dp, dx, dy, n: true_vjp(fixed_dy))
    with pytest.raises(fn.VJPCheckError, match=r"vjp\(0\) must be 0.*ignore dy"):
        fn.check_vjp(f, PARAMS, X)


def test_rejects_a_vjp_that_ignores_dy_only_in_scale():
    f = broken_affine(lambda dp, dx, dy, n: (dp, dx / max(np.abs(dy).max(), 1e-300)))
    with pytest.raises(fn.VJPCheckError, match="gradient of x is wrong"):
        fn.check_vjp(f, PARAMS, X)


def test_rejects_a_wrong_shape_dparams():
    f = broken_affine(lambda dp, dx, dy, n: ({"w": dp["w"], "b": dp["b"][None]}, dx))
    with pytest.raises(fn.VJPCheckError, match=r'dparams\["b"\] has shape \(1, 4\).*params\["b"\] has shape \(4,\)'):
        fn.check_vjp(f, PARAMS, X)


def test_rejects_a_wrong_structure_dparams():
    f = broken_affine(lambda dp, dx, dy, n: ((dp["w"], dp["b"]), dx))
    with pytest.raises(
        fn.VJPCheckError, match=r"(?s)dparams must mirror params.*params: \{'b': \*, 'w': \*\}.*dparams: \(\*, \*\)"
    ):
        fn.check_vjp(f, PARAMS, X)


def test_rejects_a_wrong_dtype_dx():
    f = broken_affine(lambda dp, dx, dy, n: (dp, dx.astype(np.float32)))
    with pytest.raises(
        fn.VJPCheckError, match=r"dx has shape \(3, 6\) and dtype float32, but x has shape \(3, 6\) and dtype float64"
    ):
        fn.check_vjp(f, PARAMS, X)


def test_rejects_a_vjp_whose_second_call_differs():
    f = broken_affine(lambda dp, dx, dy, n: (dp, dx * n))
    with pytest.raises(
        fn.VJPCheckError, match=r"calling vjp twice with the same dy gave different \(dparams, dx\)\[1\]"
    ):
        fn.check_vjp(f, PARAMS, X)


def test_rejects_a_layer_that_mutates_its_input():
    def mutating(params, x):
        y, vjp = fn.relu(params, x)
        x *= 2
        return y, vjp

    with pytest.raises(fn.VJPCheckError, match=r"the forward pass modified its input x in place"):
        fn.check_vjp(mutating, (), X)


def test_rejects_a_vjp_that_mutates_params():
    def mutating_vjp(dp, dx, dy, n):
        PARAMS_SEEN["w"][0, 0] += 1
        return dp, dx

    def f(params, x):
        PARAMS_SEEN["w"] = params["w"]
        return broken_affine(mutating_vjp)(params, x)

    PARAMS_SEEN = {}
    with pytest.raises(fn.VJPCheckError, match=r'vjp modified its input params\["w"\] in place'):
        fn.check_vjp(f, PARAMS, X)


def test_rejects_a_vjp_that_mutates_dy():
    def mutating_vjp(dp, dx, dy, n):
        dy *= 0.5
        return dp, dx

    with pytest.raises(fn.VJPCheckError, match=r"vjp modified its input dy in place"):
        fn.check_vjp(broken_affine(mutating_vjp), PARAMS, X)


def test_failure_is_an_assertion_error():
    assert issubclass(fn.VJPCheckError, AssertionError)


def subgradient_relu(params, x):
    """ReLU whose vjp takes 1/4 at 0: a subgradient, neither side's slope (nor the central difference's 1/2)."""
    y, vjp = fn.relu(params, x)
    return y, lambda dy: ((), vjp(dy)[1] + 0.25 * dy * (x == 0))


def test_relu_at_zero_is_checked_against_the_side_its_vjp_takes():
    """At an exact kink the vjp's value (relu'(0) = 0) is the slope of the side left of the point."""
    report = fn.check_vjp(fn.relu, (), np.array([[-1.0, 0.0, 2.0]]), mode="full", on_kink="raise")
    assert (report["x"].status, report["x"].n_checked, report["x"].n_left_out) == ("ok", 3, 0)


def test_a_subgradient_at_a_kink_is_left_out_and_the_other_elements_checked():
    x = np.array([[-1.0, 0.0, 2.0]])
    with pytest.warns(fn.NonDifferentiableWarning, match="elements left out: 1 of 3 of x"):
        report = fn.check_vjp(subgradient_relu, (), x, mode="full")
    assert (report["x"].status, report["x"].n_checked, report["x"].n_left_out) == ("ok", 3, 1)
    assert "1 of 3 elements left out near a kink" in str(report)
    with pytest.raises(fn.NonDifferentiableError, match="not differentiable") as caught:
        fn.check_vjp(subgradient_relu, (), x, mode="full", on_kink="raise")
    assert caught.value.kind == "kink" and caught.value.report["x"].n_left_out == 1


def test_a_leaf_with_every_element_on_a_kink_is_reported_not_checked():
    for mode in ("fast", "full"):
        with pytest.warns(fn.NonDifferentiableWarning, match="not checked: x"):
            report = fn.check_vjp(subgradient_relu, (), np.zeros((1, 2)), mode=mode)
        assert report["x"].status == "kink" and "not checked: every probe crosses a kink" in str(report)


def test_max_pool_near_tie_is_checked_on_the_side_the_point_is_on():
    """Within 1e-9 of a tie the function is smooth on one side of the point, and the vjp must match it."""
    x = np.array([[[[1.0, 1.0 + 1e-9], [0.0, -1.0]]]])
    for layer in (fn.max_pool(), fn.max_pool_naive()):
        report = fn.check_vjp(layer, (), x, mode="full", on_kink="raise")
        assert (report["x"].status, report["x"].n_left_out) == ("ok", 0)


def test_a_wrong_gradient_near_a_kink_is_still_wrong():
    """Kinks excuse only analytic values between the one-sided slopes."""

    def bad_relu(params, x):
        y, vjp = fn.relu(params, x)
        return y, lambda dy: ((), vjp(dy)[1] + 0.5 * dy)

    with pytest.raises(fn.VJPCheckError, match="gradient of x is wrong"):
        fn.check_vjp(bad_relu, (), np.array([[0.0, 1.0, -2.0]]), mode="full")


def test_report_lists_every_leaf_with_small_errors():
    net = fn.chain(fn.affine, fn.relu, fn.affine, fn.loss_layer(fn.softmax_loss, np.array([0, 1, 1])))
    params = (PARAMS, (), {"w": rng.standard_normal((4, 2)), "b": rng.standard_normal(2)}, ())
    report = fn.check_vjp(net, params, X)
    assert [leaf.path for leaf in report.leaves] == [
        'params[0]["b"]',
        'params[0]["w"]',
        'params[2]["b"]',
        'params[2]["w"]',
        "x",
    ]
    assert {leaf.status for leaf in report.leaves} == {"ok"} and report.max_rel_error <= report.rtol
    assert 'params[2]["w"]' in str(report)


def test_checks_in_float64_by_default_and_in_float32_on_request():
    x32 = X.astype(np.float32)
    params32 = {k: v.astype(np.float32) for k, v in PARAMS.items()}
    assert fn.check_vjp(fn.affine, params32, x32).dtype == "float64"
    report = fn.check_vjp(fn.affine, params32, x32, dtype=None)
    assert report.dtype == "float32" and report.step == 1e-3
    f = broken_affine(lambda dp, dx, dy, n: (dp, dx * 1.2))
    with pytest.raises(fn.VJPCheckError):
        fn.check_vjp(f, params32, x32, dtype=None)


def test_check_vjp_does_not_touch_the_callers_arrays():
    params = {k: v.copy() for k, v in PARAMS.items()}
    x = X.copy()
    with warnings.catch_warnings():
        fn.check_vjp(fn.affine, params, x, mode="full")
    np.testing.assert_array_equal(x, X)
    np.testing.assert_array_equal(params["w"], PARAMS["w"])


def test_numerical_helpers_match_known_gradients():
    a, h, u = rng.standard_normal((3, 4)), 1e-5, np.finfo(np.float64).eps / 2
    # central differences of sum(z^3): truncation exactly h^2 (the third derivative is 6); rounding of the two
    # sums of cubes, gamma(n + 2) sum|z^3| each, over 2h; and of a +- h, u |a| times the slope, over h
    rounding = gamma(a.size + 2, np.float64) * np.sum(np.abs(a) ** 3) / h + u * np.abs(a) * 3 * a**2 / h
    assert_within(fn.numerical_gradient(lambda z: np.sum(z**3), a), 3 * a**2, h**2 + rounding, "sum z^3")
    dy = rng.standard_normal((3, 4))
    # sin: truncation h^2 / 6 |cos| |dy| at most; sin within LIBM_ULPS twice over 2h; a +- h as above
    bound = (h**2 / 6 + ulps(LIBM_ULPS) / h + u * np.abs(a) / h) * np.abs(dy)
    assert_within(fn.numerical_gradient_array(np.sin, a, dy), np.cos(a) * dy, bound, "sin")
    before = a.copy()
    fn.numerical_gradient(lambda z: z.sum(), a)
    np.testing.assert_array_equal(a, before)
    assert fn.rel_error(np.array([1.0]), np.array([1.0])) == 0.0
    assert fn.rel_error(np.array([1.0]), np.array([3.0])) == 0.5  # 2 / 4: exact


def test_many_exact_kinks_at_once_are_left_out_not_wrong_gradients():
    """Real digits have blank pixels: with zero biases, many ReLU inputs are exactly 0 and many pool
    windows tie, so the one-sided slopes need not bracket the analytic value."""
    from funcnn.data import load_digits

    d = load_digits(np.float64)
    net = fn.nets.three_layer_convnet(num_filters=8, filter_size=3, hidden_dim=20)
    _, params = fn.init_params(net, np.random.default_rng(0), (1, 8, 8), np.float64)
    f = fn.chain(net, fn.loss_layer(fn.softmax_loss, d.train.y[:2]))
    report = fn.check_vjp(f, (params, ()), d.train.x[:2], on_kink="ignore")
    assert {leaf.status for leaf in report.leaves} == {"ok"}
    assert 0 < report["x"].n_left_out < report["x"].size


def test_a_wrong_gradient_of_a_curved_function_is_not_mistaken_for_a_kink():
    def bad_tanh(params, x):
        y, vjp = fn.tanh(params, x)
        return y, lambda dy: ((), 1.01 * vjp(dy)[1])

    x = np.random.default_rng(0).standard_normal((3, 4)) * 2
    for mode in ("fast", "full"):
        with pytest.raises(fn.VJPCheckError, match="gradient of x is wrong"):
            fn.check_vjp(bad_tanh, (), x, mode=mode)


def test_numerical_helpers_work_in_float64_for_float32_inputs():
    a = np.random.default_rng(0).standard_normal((3, 4)).astype(np.float32)
    a64, h = a.astype(np.float64), 1e-5
    # in float64 (a float32 step of 1e-5 would be mostly rounding): the float64 bound of the test above; in
    # float32 the rounding alone, eps32 sum|z^3| / h, would be about 1e-2
    rounding = gamma(a.size + 2, np.float64) * np.sum(np.abs(a64) ** 3) / h + ulps(1) * np.abs(a64) ** 3 * 3 / h
    assert_within(fn.numerical_gradient(lambda z: np.sum(z**3), a), 3 * a64**2, h**2 + rounding)
