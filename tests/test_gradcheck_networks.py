"""check_vjp on whole networks as the course checks them (tiny weights, random input, one loss):
every leaf checked around the kinks, every wrong leaf reported in one error."""

import re
import warnings

import numpy as np
import pytest

import funcnn as fn
from funcnn.data import load_digits


def course_check(net, shape, weight_scale, x=None, seed=231):
    """The course's gradient check of a net: N = 2, random labels, reg 0, the loss as the last layer."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((2, *shape)) if x is None else x
    _, params = fn.init_params(net, rng, shape, np.float64, weight_scale)
    return fn.chain(net, fn.loss_layer(fn.softmax_loss, rng.integers(0, 10, 2))), (params, ()), x


def scaled(f, leaf, factor, index=None):
    """``f`` (a net chained with its loss) whose vjp scales ``dparams[0][leaf]`` (a (layer, key) pair)
    by ``factor``: all of it, or the element at ``index``."""

    def apply(params, x):
        y, vjp = f(params, x)

        def wrong_vjp(dy):
            dparams, dx = vjp(dy)
            layer, key = leaf
            grad = dparams[0][layer][key].copy()
            if index is None:
                grad *= factor
            else:
                grad[index] *= factor
            net = list(dparams[0])
            net[layer] = {**net[layer], key: grad}
            return (tuple(net), *dparams[1:]), dx

        return y, wrong_vjp

    return apply


COURSE = fn.nets.three_layer_convnet(num_filters=3, filter_size=3, hidden_dim=7)


@pytest.mark.parametrize("weight_scale", [1e-3, 1e-2])
@pytest.mark.parametrize("mode", ["fast", "full"])
def test_the_course_convnet_is_checked_on_every_leaf_at_the_course_weight_scale(weight_scale, mode):
    """The course's ThreeLayerConvNet check (3 filters 3x3, hidden 7, 3x16x16 inputs, N = 2): with tiny
    weights many ReLU inputs and pool windows sit within a step of a kink, yet every leaf is checked."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", fn.NonDifferentiableWarning)
        report = fn.check_vjp(*course_check(COURSE, (3, 16, 16), weight_scale), mode=mode)
    assert [leaf.status for leaf in report.leaves] == ["ok"] * 7, str(report)
    assert all(leaf.n_left_out < leaf.size for leaf in report.leaves)


def test_the_issue_net_on_digits_and_random_input_is_checked_on_every_leaf():
    """chain(conv_relu_pool, dense_relu(64), dense(10)) at the course's weight scale: the reported case."""
    net = fn.chain(fn.nets.three_layer_convnet(8, 3, 64).children[0], fn.dense_relu(64), fn.dense(10))
    digits = load_digits(np.float64).train.x[:2]
    for x in (digits, None):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", fn.NonDifferentiableWarning)
            report = fn.check_vjp(*course_check(net, (1, 8, 8), 1e-2, x))
        assert {leaf.status for leaf in report.leaves} == {"ok"}, str(report)


WRONG_LEAVES = [((0, "w"), False), ((0, "b"), False), ((1, "w"), True), ((0, "w"), True)]


@pytest.mark.parametrize(("leaf", "one_element"), WRONG_LEAVES)
def test_a_wrong_gradient_in_a_kinked_course_net_is_still_caught(leaf, one_element):
    """1% off on a whole leaf, or 2x off on its element of largest gradient, at weight scale 1e-3 where
    kinks are densest."""
    f, params, x = course_check(COURSE, (3, 16, 16), 1e-3)
    grad = f(params, x)[1](1.0)[0][0][leaf[0]][leaf[1]]
    index = tuple(int(i) for i in np.unravel_index(np.argmax(np.abs(grad)), grad.shape)) if one_element else None
    wrong = scaled(f, leaf, 2.0 if one_element else 1.01, index)
    path = f'params[0][{leaf[0]}]["{leaf[1]}"]'
    for mode in ("fast", "full"):
        with pytest.raises(fn.VJPCheckError, match=re.escape(f"gradient of {path} is wrong")) as caught:
            fn.check_vjp(wrong, params, x, mode=mode)
        assert [check.path for check in caught.value.wrong] == [path]
        if one_element:
            assert caught.value.check.index == index


def test_every_wrong_leaf_is_reported_in_one_error():
    """A wrong dw and a wrong dx: both rows, both located, one error; every leaf's row in the table."""
    rng = np.random.default_rng(0)
    params = {"w": rng.standard_normal((5, 4)), "b": rng.standard_normal(4)}

    def both_wrong(params, x):
        y, vjp = fn.affine(params, x)

        def wrong_vjp(dy):
            dparams, dx = vjp(dy)
            w = dparams["w"].copy()
            w[1, 2] *= 1.05
            return {**dparams, "w": w}, dx * 1.01

        return y, wrong_vjp

    with pytest.raises(fn.VJPCheckError) as caught:
        fn.check_vjp(both_wrong, params, rng.standard_normal((3, 5)))
    error = caught.value
    assert error.kind == "value" and [c.path for c in error.wrong] == ['params["w"]', "x"]
    assert error.check is error.wrong[0] and error.check.index == (1, 2)
    message = str(error)
    assert 'gradient of params["w"] is wrong at element (1, 2)' in message and "gradient of x is wrong" in message
    assert [leaf.path for leaf in error.report.leaves] == ['params["b"]', 'params["w"]', "x"]
    assert error.report['params["b"]'].status == "ok"


def test_a_structural_error_says_so_in_its_kind():
    """The README's handler: ``error.kind`` tells a wrong value (``error.check`` set) from a structural failure."""
    with pytest.raises(fn.VJPCheckError, match="must return a pair") as caught:
        fn.check_vjp(lambda p, x: (x * 2, lambda dy: ((), dy, dy)), (), np.ones(3))
    assert (caught.value.kind, caught.value.check, caught.value.wrong, caught.value.report) == (
        "structure",
        None,
        [],
        None,
    )


@pytest.mark.parametrize("mode", ["fast", "full"])
def test_a_bias_one_percent_off_at_an_exact_kink_is_never_passed(mode):
    """Digits and zero biases put conv outputs exactly at ReLU's kink: the right bias matches the side its
    vjp takes, at the default step's rounding; one 1% off matches neither side, so it is not checked (and
    said so), never passed by a retry whose larger rounding would hide 1%."""
    net = fn.chain(fn.nets.three_layer_convnet(8, 3, 64).children[0], fn.dense_relu(64), fn.dense(10))
    f, params, x = course_check(net, (1, 8, 8), 1e-2, load_digits(np.float64).train.x[:2])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", fn.NonDifferentiableWarning)
        assert fn.check_vjp(f, params, x, mode=mode)['params[0][0]["b"]'].status == "ok"
    with pytest.raises(fn.NonDifferentiableError, match=re.escape('not checked: params[0][0]["b"]')):
        fn.check_vjp(scaled(f, (0, "b"), 1.01), params, x, mode=mode, on_kink="raise")


def test_kinks_on_both_sides_of_a_direction_are_not_a_wrong_leaf():
    """Course net at weight scale 1e-3, the seeds where a direction crossed kinks on both sides of the point
    (its one-sided slopes moved in opposite directions) and the leaf was called wrong with no element wrong."""
    for seed in (2, 7, 12):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", fn.NonDifferentiableWarning)
            report = fn.check_vjp(*course_check(COURSE, (3, 16, 16), 1e-3, seed=seed), seed=seed)
        assert "wrong" not in {leaf.status for leaf in report.leaves}


def test_a_kink_at_the_point_below_the_rounding_floor_is_not_called_wrong():
    """f = A relu(x) - B relu(-x) at x = 0 with relu'(0) = 0: the vjp's 0 is neither side's slope, and the
    sides differ by less than the floor: not a wrong gradient."""
    for a, b in ((1.0, 0.5), (2e-9, 1.8e-9)):

        def two_sided(params, x, a=a, b=b):
            return a * np.maximum(x, 0) - b * np.maximum(-x, 0), lambda dy: ((), dy * (a * (x > 0) + b * (x < 0)))

        for mode in ("fast", "full"):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", fn.NonDifferentiableWarning)
                fn.check_vjp(two_sided, (), np.array([0.0, 0.7, -0.3]), mode=mode)


def test_slopes_at_the_rounding_floor_say_so_in_the_report():
    tiny = fn.layer(lambda p, x: (1e-9 * x**2, lambda dy: ((), 2e-9 * x * dy)), name="tiny")
    report = fn.check_vjp(tiny, (), np.random.default_rng(0).standard_normal(5))
    assert report["x"].resolution > 1e-3 and "at the rounding floor: an error under" in str(report)
