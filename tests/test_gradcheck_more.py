"""check_vjp finds the wrong element, checks float32 kernels against float64 differences, allows a
tolerance for nondeterministic vjps, and refuses options it cannot honour."""

import re

import numpy as np
import pytest
from hypothesis import given, settings

import funcnn as fn
from funcnn.testing import conv_problems


@pytest.fixture
def rng():
    """A generator of each test's own: its data does not depend on which tests ran before."""
    return np.random.default_rng(0)


def scaled_vjp(f, scale):
    """``f`` with ``scale(dparams, dx) -> (dparams, dx)`` applied to its vjp's result."""

    def apply(params, x):
        y, vjp = f(params, x)
        return y, lambda dy: scale(*vjp(dy))

    return apply


def with_wrong_element(f, key, index, factor=1.01):
    def scale(dparams, dx):
        wrong = dparams[key].copy()
        wrong[index] *= factor
        return {**dparams, key: wrong}, dx

    return scaled_vjp(f, scale)


def test_fast_mode_locates_the_one_wrong_element_of_a_small_leaf(rng):
    conv = fn.conv(stride=1, pad=1)
    params = {"w": rng.standard_normal((4, 3, 6, 6)), "b": rng.standard_normal(4)}
    net = fn.chain(with_wrong_element(conv, "w", (3, 1, 0, 2)), fn.tanh)
    with pytest.raises(fn.VJPCheckError) as caught:
        fn.check_vjp(net, (params, ()), rng.standard_normal((2, 3, 7, 7)))
    check = caught.value.check
    assert (check.path, check.index, check.n_checked, check.n_wrong) == ('params[0]["w"]', (3, 1, 0, 2), 432, 1)
    assert re.search(
        r'params\[0\]\["w"\]\[3, 1, 0, 2\]: analytic \S+ numeric \S+ \(1 of 432 elements wrong\)', str(caught.value)
    )
    # the element's numeric value is exact to its difference's error, rounding 1e-11 over a derivative of order 1
    assert check.analytic == pytest.approx(1.01 * check.numeric, rel=1e-6)


def test_fast_mode_locates_one_wrong_element_in_a_leaf_of_100000(rng):
    params = {"w": rng.standard_normal((1000, 100)), "b": rng.standard_normal(100)}
    with pytest.raises(fn.VJPCheckError) as caught:
        fn.check_vjp(with_wrong_element(fn.affine, "w", (617, 42)), params, rng.standard_normal((4, 1000)))
    check = caught.value.check
    assert (check.path, check.index, check.n_wrong) == ('params["w"]', (617, 42), 1)
    assert 0 < check.n_checked < 1000  # a sample and the bisection's last slices, not the whole leaf
    assert f"(1 of {check.n_checked} elements wrong; {check.n_checked} of 100000 checked)" in str(caught.value)


def test_full_mode_counts_every_wrong_element(rng):
    def scale(dparams, dx):
        w = dparams["w"].copy()
        w[0, 1] *= 1.01
        w[2, 3] *= 1.5
        return {**dparams, "w": w}, dx

    params = {"w": rng.standard_normal((6, 4)), "b": rng.standard_normal(4)}
    with pytest.raises(fn.VJPCheckError, match=r"\(2 of 24 elements wrong\)") as caught:
        fn.check_vjp(scaled_vjp(fn.affine, scale), params, rng.standard_normal((3, 6)), mode="full")
    assert caught.value.check.index == (2, 3)


def test_a_wrong_scale_of_the_whole_leaf_is_found_wrong_in_every_element_checked(rng):
    params = {"w": rng.standard_normal((6, 4)), "b": rng.standard_normal(4)}
    f = scaled_vjp(fn.affine, lambda dp, dx: (dp, dx * 1.001))
    with pytest.raises(fn.VJPCheckError, match=r"x\[\d, \d\]: .*\(18 of 18 elements wrong\)"):
        fn.check_vjp(f, params, rng.standard_normal((3, 6)))


def test_probes_sets_the_number_of_random_directions(rng):
    calls = []

    def counting(params, x):
        calls.append(1)
        return fn.tanh(params, x)

    x = rng.standard_normal((3, 4))
    for probes in (1, 5):
        calls.clear()
        fn.check_vjp(counting, (), x, probes=probes)
        assert len(calls) == 2 + 2 * probes  # the forward, its repeat (same answer?), two passes per probe
    with pytest.raises(TypeError, match="directions"):  # the pre-release name is gone
        fn.check_vjp(counting, (), x, directions=4)


FLOAT32_CONV = fn.conv(stride=1, pad=1)


def float32_conv_problem():
    r = np.random.default_rng(1)
    params = {"w": r.standard_normal((4, 3, 3, 3)).astype(np.float32), "b": r.standard_normal(4).astype(np.float32)}
    return params, r.standard_normal((2, 3, 8, 8)).astype(np.float32)


def test_mixed_check_runs_the_vjp_in_float32_and_passes_a_correct_conv():
    seen = []

    def recording(params, x):
        seen.append(x.dtype)
        return FLOAT32_CONV(params, x)

    params, x = float32_conv_problem()
    report = fn.check_vjp(recording, params, x, dtype=np.float32, numeric_dtype=np.float64)
    assert seen[0] == np.float32 and np.float64 in seen
    assert (report.dtype, report.numeric_dtype, report.step) == ("float32", "float64", 1e-5)
    assert "float32 analytic, float64 numeric" in str(report)


def test_mixed_check_catches_a_float32_conv_whose_dw_is_off_by_a_fifth_of_a_percent():
    params, x = float32_conv_problem()
    off = scaled_vjp(FLOAT32_CONV, lambda dp, dx: ({**dp, "w": dp["w"] * np.float32(1.002)}, dx))
    with pytest.raises(fn.VJPCheckError, match=r'gradient of params\["w"\] is wrong'):
        fn.check_vjp(off, params, x, dtype=np.float32, numeric_dtype=np.float64)
    # A float32-only check cannot see it: its differences are too coarse.
    fn.check_vjp(off, params, x, dtype=None)


def nondeterministic_tanh(params, x):
    y, vjp = fn.tanh(params, x)
    calls = []

    def jittery(dy):
        calls.append(1)
        _, dx = vjp(dy)
        return (), dx * (1 + 1e-10 * len(calls))

    return y, jittery


def test_a_nondeterministic_vjp_fails_by_default_and_passes_within_nondet_tol(rng):
    x = rng.standard_normal((3, 4))
    with pytest.raises(fn.VJPCheckError, match=r"calling vjp twice .* differ by up to .*nondet_tol 0"):
        fn.check_vjp(nondeterministic_tanh, (), x)
    fn.check_vjp(nondeterministic_tanh, (), x, nondet_tol=1e-8)
    with pytest.raises(fn.VJPCheckError, match="calling vjp twice"):
        fn.check_vjp(nondeterministic_tanh, (), x, nondet_tol=1e-11)


def test_the_printed_relative_error_is_the_one_compared_with_the_tolerance(rng):
    """A 3% wrong float32 gradient used to print "relative error 1.48e-02 (tolerance 0.02)"."""
    params = {"w": rng.standard_normal((6, 4)).astype(np.float32), "b": rng.standard_normal(4).astype(np.float32)}
    x = rng.standard_normal((3, 6)).astype(np.float32)
    for factor in (1.021, 1.03, 1.1):
        f = scaled_vjp(fn.affine, lambda dp, dx, factor=factor: (dp, dx * np.float32(factor)))
        with pytest.raises(fn.VJPCheckError) as caught:
            fn.check_vjp(f, params, x, dtype=None)
        printed = float(re.search(r"relative error (\S+) \(tolerance (\S+)\)", str(caught.value)).group(1))
        # printed with 3 significant digits: within half a unit of the third, 5e-3 of itself
        assert printed > 0.02 and printed == pytest.approx(caught.value.check.rel_error, rel=5e-3)
    report = fn.check_vjp(fn.affine, params, x, dtype=None)
    assert all(leaf.rel_error <= report.rtol for leaf in report.leaves)


@pytest.mark.parametrize("dtype", [np.float16, np.int64, np.complex128, "float8"])
def test_refuses_a_dtype_it_cannot_judge(dtype, rng):
    params = {"w": rng.standard_normal((6, 4)), "b": rng.standard_normal(4)}
    with pytest.raises(ValueError, match=r"check_vjp: dtype must be float32 or float64 .*got"):
        fn.check_vjp(fn.affine, params, rng.standard_normal((3, 6)), dtype=dtype)


def test_refuses_float16_inputs_kept_with_dtype_none_and_a_float16_numeric_dtype(rng):
    x16 = rng.standard_normal((3, 4)).astype(np.float16)
    with pytest.raises(ValueError, match=r"with dtype=None, x's dtype must be float32 or float64"):
        fn.check_vjp(fn.tanh, (), x16, dtype=None)
    with pytest.raises(ValueError, match=r"numeric_dtype must be float32 or float64"):
        fn.check_vjp(fn.tanh, (), x16, numeric_dtype=np.float16)


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("probes", -1, "probes must be >= 1"),
        ("probes", True, "probes must be an int"),
        ("step", 0.0, "step must be > 0 and finite"),
        ("step", -1e-5, "step must be > 0 and finite"),
        ("step", float("nan"), "step must be > 0 and finite"),
        ("step", "1e-5", "step must be a number"),
        ("rtol", float("inf"), "rtol must be > 0 and finite"),
        ("on_kink", "skip", "on_kink must be one of"),
        ("nondet_tol", -1.0, "nondet_tol must be >= 0 and finite"),
    ],
)
def test_refuses_bad_option_values(option, value, message, rng):
    with pytest.raises((TypeError, ValueError), match=f"check_vjp: {message}.*{re.escape(repr(value))}"):
        fn.check_vjp(fn.tanh, (), rng.standard_normal((2, 3)), **{option: value})


def test_default_fast_mode_catches_a_one_percent_error_in_one_element_of_a_10000_element_leaf():
    """benchmarks/probe_detection.py measures the rate over thousands of trials; here 20 of them."""
    r = np.random.default_rng(7)
    params = {"w": r.standard_normal((100, 100)) / 10, "b": r.standard_normal(100) / 10}
    x = r.standard_normal((8, 100))
    net = fn.chain(fn.affine, fn.tanh)
    for seed in range(20):
        index = tuple(int(i) for i in r.integers(0, 100, size=2))
        wrong = fn.chain(with_wrong_element(fn.affine, "w", index), fn.tanh)
        with pytest.raises(fn.VJPCheckError) as caught:
            fn.check_vjp(wrong, (params, ()), x, seed=seed)
        assert caught.value.check.index == index
        fn.check_vjp(net, (params, ()), x, seed=seed)


@settings(max_examples=20)
@given(problem=conv_problems(dtype=np.float32))
def test_mixed_full_check_passes_a_correct_float32_conv_whose_sums_cancel(problem):
    """Element by element, a float32 dw or dx is a sum whose terms can cancel: the rounding floor grows
    with the terms' magnitudes (seen in the differences), not only with the element's value."""
    conv = fn.conv(**problem.conv_param)
    fn.check_vjp(conv, problem.params, problem.x, dtype=np.float32, numeric_dtype=np.float64, mode="full")


def test_mixed_full_check_still_catches_a_float32_conv_whose_dw_is_off_by_a_fifth_of_a_percent():
    params, x = float32_conv_problem()
    off = scaled_vjp(FLOAT32_CONV, lambda dp, dx: ({**dp, "w": dp["w"] * np.float32(1.002)}, dx))
    with pytest.raises(fn.VJPCheckError, match=r'gradient of params\["w"\] is wrong at element'):
        fn.check_vjp(off, params, x, dtype=np.float32, numeric_dtype=np.float64, mode="full")


def test_truncation_along_a_direction_nearly_orthogonal_to_the_gradient_is_not_a_wrong_gradient():
    """x -> sum(exp(30 x)) at x = (0, 0.01), along v nearly orthogonal to the gradient (<g, v> = 1e-6 g_0): the
    truncation error of the central difference (h^2 times the third derivative over 6, about 7e-7) is far above
    tol times the derivative and the rounding floor; Richardson extrapolation removes it, so the right gradient
    passes and a 1% wrong one still fails."""
    from funcnn.gradcheck._compare import LeafProbe, tolerance
    from funcnn.gradcheck._probe import differences

    def f(params, x):
        y = np.exp(30 * x)
        return y, lambda dy: ((), 30 * y * dy)

    x = np.array([0.0, 0.01])
    y, vjp = f((), x)
    dy = np.ones_like(y)
    g = vjp(dy)[1]
    v = np.array([1.0, -g[0] / g[1] * (1 - 1e-6)])  # <g, v> = 1e-6 g[0]
    probed = differences(f, ((), x), y, dy, np.dtype(np.float64), np.dtype(np.float64))[0]
    tol = tolerance(y, dy, np.dtype(np.float64), np.dtype(np.float64), None, None, 0.0)
    plain = probed.slope(v, tol.h).central
    assert abs(plain - float(g @ v)) > 10 * tol.rtol * abs(float(g @ v))  # the truncation error alone fails it
    assert LeafProbe("x", g, probed, tol)(v).status == "ok"
    assert LeafProbe("x", 1.01 * g, probed, tol)(v).status == "wrong"
