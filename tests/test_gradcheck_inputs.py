"""check_vjp names the real cause: a non-finite input or output, a forward that gives two answers,
a function that is not a layer, a full check too long to run; and the mixed float32 check allows for
rounding inside the vjp without letting a wrong float32 kernel through."""

import time
import tracemalloc
import warnings

import numpy as np
import pytest

import funcnn as fn
import funcnn.gradcheck._check_vjp as check_module

rng = np.random.default_rng(0)
PARAMS = {"w": rng.standard_normal((4, 3)), "b": rng.standard_normal(3)}
X = rng.standard_normal((2, 4))


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_a_non_finite_input_is_named_by_leaf_not_blamed_on_the_vjp(bad):
    x = X.copy()
    x[1, 2] = bad
    with pytest.raises(fn.VJPCheckError, match=r"x holds 1 NaN or infinite values \(the first at \(1, 2\)\)") as caught:
        fn.check_vjp(fn.affine, PARAMS, x)
    assert caught.value.kind == "structure"
    params = {**PARAMS, "b": np.array([0.0, bad, 1.0])}
    with pytest.raises(fn.VJPCheckError, match=r'params\["b"\] holds 1 NaN or infinite values'):
        fn.check_vjp(fn.affine, params, X)


def test_a_non_finite_output_at_a_finite_point_is_named():
    scale = np.array([1.0, np.inf, 1.0])  # a layer with an infinite constant, as a log of 0 would give
    scaled = fn.layer(lambda p, x: (x * scale, lambda dy: ((), dy * scale)), name="scaled")
    with pytest.raises(fn.VJPCheckError, match="the output holds 1 NaN or infinite values for finite inputs"):
        fn.check_vjp(scaled, (), np.array([1.0, 3.0, 2.0]))


def test_a_forward_that_gives_two_answers_is_named_not_reported_as_a_wrong_gradient():
    noise = np.random.default_rng(1)

    def noisy(params, x):
        return x + 1e-3 * noise.standard_normal(x.shape), lambda dy: ((), dy)

    with pytest.raises(fn.VJPCheckError, match="gave two different outputs for the same inputs"):
        fn.check_vjp(noisy, (), X)


@pytest.mark.parametrize(
    ("result", "said"),
    [
        (lambda x: (x, lambda dy: ((), dy), 0), "got a tuple of 3"),
        (lambda x: x, r"got ndarray of shape \(2, 4\)"),
        (lambda x: (x, x), "got a tuple of 2 whose second element is not callable"),
    ],
)
def test_a_function_that_is_not_a_layer_is_refused_by_name(result, said):
    def not_a_layer(params, x):
        return result(x)

    with pytest.raises(fn.VJPCheckError, match=f"not_a_layer must return a pair \\(y, vjp\\).*{said}"):
        fn.check_vjp(not_a_layer, (), X)


def sleepy(seconds):
    """tanh whose forward takes at least ``seconds``: a full check's cost known without timing this machine."""

    def apply(params, x):
        time.sleep(seconds)
        return fn.tanh(params, x)

    return apply


def test_a_full_check_estimated_over_an_hour_is_refused_before_it_starts():
    # 2 passes x 200,000 elements x at least 10 ms each: at least 4,000 s, over the 3,600 s limit
    with pytest.raises(ValueError, match=r"about 400,000 forward passes.*refused.*mode='fast'"):
        fn.check_vjp(sleepy(0.01), (), np.zeros((1, 200_000)), mode="full")


def test_a_full_check_estimated_over_ten_minutes_warns():
    # 2 x 40,000 x at least 10 ms: at least 800 s; the warning turned into an error stops it at once
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(UserWarning, match="about 80,000 forward passes"):
            fn.check_vjp(sleepy(0.01), (), np.zeros((1, 40_000)), mode="full")


def test_a_full_check_keeps_no_record_per_element():
    """Its memory stays a small multiple of the leaf: the result is reduced element by element."""
    x = np.random.default_rng(2).standard_normal(5_000)
    fn.check_vjp(fn.tanh, (), x, mode="full")  # compile and warm up first
    tracemalloc.start()
    fn.check_vjp(fn.tanh, (), x, mode="full")
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    # the copies of x the check holds (inputs, moved leaf, outputs, y, dy, v, grads): about 12 leaves;
    # one LeafCheck per element would add some 200 bytes each, 25 leaves' worth
    assert peak < 16 * x.nbytes, f"peak {peak} bytes for a leaf of {x.nbytes}"


def mixed(f, params, x, mode="full"):
    return fn.check_vjp(f, params, x, dtype=np.float32, numeric_dtype=np.float64, mode=mode)


def test_the_mixed_check_passes_group_norm_over_groups_of_two_and_a_bias_behind_a_loss():
    """Elements whose float32 rounding is far above their own size (terms that cancel inside the vjp)."""
    for seed in range(5):
        r = np.random.default_rng(seed)
        norm = {"gamma": r.standard_normal(4).astype(np.float32), "beta": r.standard_normal(4).astype(np.float32)}
        mixed(fn.group_norm(groups=2), norm, r.standard_normal((3, 4, 1, 1)).astype(np.float32))
        net = fn.chain(fn.affine, fn.loss_layer(fn.softmax_loss, r.integers(0, 10, 50)))
        affine = {"w": (0.01 * r.standard_normal((20, 10))).astype(np.float32), "b": np.zeros(10, np.float32)}
        mixed(net, (affine, ()), r.standard_normal((50, 20)).astype(np.float32))


def test_the_rounding_allowance_does_not_let_a_wrong_float32_kernel_through(monkeypatch):
    """A float32-only bug (float64 runs right) moves smoothly with the point: the range allows nothing for it."""

    def float32_bug(params, x):
        y, vjp = fn.group_norm(groups=2)(params, x)

        def wrong(dy):
            dparams, dx = vjp(dy)
            scale = 1.002 if dx.dtype == np.float32 else 1.0
            return {**dparams, "gamma": (dparams["gamma"] * scale).astype(dx.dtype)}, dx

        return y, wrong

    r = np.random.default_rng(0)
    norm = {"gamma": r.standard_normal(4).astype(np.float32), "beta": r.standard_normal(4).astype(np.float32)}
    x = r.standard_normal((3, 4, 2, 2)).astype(np.float32)
    with pytest.raises(fn.VJPCheckError, match=r'gradient of params\["gamma"\] is wrong'):
        mixed(float32_bug, norm, x)
    spreads = []
    monkeypatch.setattr(check_module, "rounding_spread", lambda *a: spreads.append(1) or [None] * 3)
    with pytest.raises(fn.VJPCheckError):
        mixed(float32_bug, norm, x)
    assert spreads == [1]


def test_doctors_gradient_rows_name_a_nan_in_the_params():
    from funcnn.data import load_digits

    digits = load_digits()
    net = fn.nets.three_layer_convnet(4, 3, 10, 10)
    _, params = fn.init_params(net, np.random.default_rng(0), (1, 8, 8))
    params[0]["w"][0, 0, 0, 0] = np.nan
    data = (digits.train.x[:20], digits.train.y[:20])
    report = fn.doctor(net, params, data, fn.optim.adam(1e-3), overfit_steps=2, subset=10, ratio_steps=1)
    assert 'check_vjp: params[0]["w"] holds 1 NaN or infinite values (the first at (0, 0, 0, 0))' in str(report)
    assert "vjp(0) must be 0" not in str(report)
