"""Bad input gets a clear error naming the layer, the argument and the shapes."""

import numpy as np
import pytest

import funcnn as fn

rng = np.random.default_rng(0)
X4 = rng.standard_normal((2, 3, 5, 5))
W4 = {"w": rng.standard_normal((4, 3, 3, 3)), "b": np.zeros(4)}
AFF = {"w": rng.standard_normal((6, 2)), "b": np.zeros(2)}


@pytest.mark.parametrize(
    "call, error, pattern",
    [
        (
            lambda: fn.conv()(W4, X4[0]),
            ValueError,
            r"conv\(stride=1, pad=0\): x must be 4-D \(N, C, H, W\), got shape \(3, 5, 5\)",
        ),
        (
            lambda: fn.conv_naive()(W4, X4[:, :2]),
            ValueError,
            r"conv_naive.*x has 2 channels \(shape \(2, 2, 5, 5\)\).*expects 3 \(shape \(4, 3, 3, 3\)\)",
        ),
        (
            lambda: fn.conv()({"w": W4["w"], "b": np.zeros(3)}, X4),
            ValueError,
            r"conv.*params\['b'\] must have shape \(4,\).*\(4, 3, 3, 3\), got \(3,\)",
        ),
        (
            lambda: fn.conv()({"w": W4["w"][0], "b": W4["b"]}, X4),
            ValueError,
            r"params\['w'\] must be 4-D \(F, C, HH, WW\), got shape \(3, 3, 3\)",
        ),
        (lambda: fn.conv(stride=0), ValueError, r"conv\(stride=0, pad=0\): stride must be >= 1, got 0"),
        (lambda: fn.conv(pad=-1), ValueError, r"pad must be >= 0, got -1"),
        (lambda: fn.conv(stride=1.5), TypeError, r"stride must be an int, got 1.5"),
        (
            lambda: fn.conv()({"w": rng.standard_normal((1, 3, 7, 3)), "b": np.zeros(1)}, X4),
            ValueError,
            r"kernel height window \(7\) is larger than the padded input \(5 \+ 2\*0 = 5\)",
        ),
        (
            lambda: fn.max_pool(pool_height=6)((), X4),
            ValueError,
            r"max_pool.*pool height window \(6\) is larger than the padded input \(5",
        ),
        (lambda: fn.max_pool_naive(stride=0), ValueError, r"max_pool_naive.*stride must be >= 1"),
        (
            lambda: fn.max_pool()((), X4[0]),
            ValueError,
            r"max_pool.*x must be 4-D \(N, C, H, W\), got shape \(3, 5, 5\)",
        ),
        (lambda: fn.max_pool()({"w": 1}, X4), TypeError, r"max_pool.*takes no params"),
        (
            lambda: fn.affine(AFF, rng.standard_normal((2, 5))),
            ValueError,
            r"affine: x of shape \(2, 5\) flattens to D=5, but params\['w'\] has shape \(6, 2\)",
        ),
        (
            lambda: fn.affine({"w": AFF["w"], "b": np.zeros(3)}, rng.standard_normal((2, 6))),
            ValueError,
            r"affine: params\['b'\] must have shape \(2,\)",
        ),
        (
            lambda: fn.affine({"w": AFF["w"]}, rng.standard_normal((2, 6))),
            TypeError,
            r"affine: params must be a dict with keys \['w', 'b'\]",
        ),
        (
            lambda: fn.affine(AFF, np.ones((2, 6), dtype=int)),
            TypeError,
            r"affine: x must be a float32 or float64 array, got dtype int64 \(shape \(2, 6\)\)",
        ),
        (
            lambda: fn.affine(AFF, np.ones((2, 6), dtype=np.float32)),
            TypeError,
            r"affine: arrays must share one dtype, but x is float32, w is float64",
        ),
        (
            lambda: fn.relu((), np.ones(3, dtype=np.int32)),
            TypeError,
            r"relu: x must be a float32 or float64 array, got dtype int32",
        ),
        (
            lambda: fn.conv()(W4, X4.astype(np.float16)),
            TypeError,
            r"conv.*x must be a float32 or float64 array, got dtype float16",
        ),
        (
            lambda: fn.softmax_loss(np.zeros((3, 4)), np.array([0, 1, 4])),
            ValueError,
            r"softmax_loss: labels y must be in \[0, 4\) for scores \(3, 4\), got min 0, max 4",
        ),
        (
            lambda: fn.svm_loss(np.zeros((3, 4)), np.array([0, 1])),
            ValueError,
            r"svm_loss: labels y must have shape \(3,\) to match scores \(3, 4\), got \(2,\)",
        ),
        (
            lambda: fn.svm_loss(np.zeros((3, 4)), np.array([0, -1, 2])),
            ValueError,
            r"svm_loss: labels y must be in \[0, 4\).*got min -1",
        ),
        (
            lambda: fn.softmax_loss(np.zeros((3, 4)), np.array([0.0, 1.0, 2.0])),
            TypeError,
            r"softmax_loss: labels y must be an integer array, got dtype float64",
        ),
        (
            lambda: fn.softmax_loss(np.zeros(4), np.array([0])),
            ValueError,
            r"softmax_loss: scores must be 2-D \(N, C\), got shape \(4,\)",
        ),
        (
            lambda: fn.chain(fn.affine, fn.relu)((AFF,), rng.standard_normal((2, 6))),
            TypeError,
            r"chain\(affine, relu\): params must be a tuple with one entry per layer \(2\), got tuple of length 1",
        ),
    ],
)
def test_bad_input_is_named(call, error, pattern):
    with pytest.raises(error, match=pattern):
        call()


@pytest.mark.parametrize(
    "layer, params, x",
    [
        (fn.conv(stride=1, pad=1), W4, X4),
        (fn.conv_naive(stride=1, pad=1), W4, X4),
        (fn.max_pool(), (), X4[:, :, :4, :4]),
        (fn.max_pool_naive(), (), X4[:, :, :4, :4]),
        (fn.affine, AFF, rng.standard_normal((2, 6))),
        (fn.relu, (), X4),
        (fn.affine_relu, AFF, rng.standard_normal((2, 6))),
    ],
)
def test_vjp_rejects_dy_of_the_wrong_shape(layer, params, x):
    y, vjp = layer(params, x)
    with pytest.raises(ValueError, match=rf"vjp: dy must have the output's shape {re_shape(y.shape)}, got \(1, 2\)"):
        vjp(np.ones((1, 2)))


def re_shape(shape):
    return str(shape).replace("(", r"\(").replace(")", r"\)")


def test_loss_vjp_rejects_non_scalar_dloss():
    _, vjp = fn.softmax_loss(np.zeros((2, 3)), np.array([0, 1]))
    with pytest.raises(ValueError, match=r"softmax_loss vjp: dy must have the output's shape \(\)"):
        vjp(np.ones(2))


def test_sandwich_rejects_colliding_names_when_built():
    with pytest.raises(ValueError, match=r"both affine and conv\(stride=1, pad=0\) take a param named 'w'"):
        fn.sandwich(fn.affine, fn.conv())


def test_sandwich_rejects_plain_functions_with_a_hint():
    def leaky(params, x):
        return fn.relu(params, x)

    with pytest.raises(TypeError, match=r"cannot tell which params leaky takes; wrap it with funcnn.layer"):
        fn.sandwich(fn.affine, leaky)
    fn.sandwich(fn.affine, fn.layer(leaky, param_keys=()))


def test_sandwich_params_must_hold_exactly_its_keys():
    with pytest.raises(TypeError, match=r"params must be a dict with keys \['b', 'w'\]"):
        fn.affine_relu({"w": AFF["w"]}, rng.standard_normal((2, 6)))


def test_check_vjp_rejects_unknown_mode():
    with pytest.raises(ValueError, match="mode must be 'fast' or 'full'"):
        fn.check_vjp(fn.relu, (), np.ones(2), mode="slow")


BIG = np.zeros((100, 100))


@pytest.mark.parametrize(
    "call, pattern",
    [
        (
            lambda: fn.affine({"w": AFF["w"]}, BIG),
            r"affine: params must be a dict with keys \['w', 'b'\], got missing \['b'\]$",
        ),
        (
            lambda: fn.affine({**AFF, "c": BIG}, BIG),
            r"affine: params must be a dict with keys \['w', 'b'\], got unexpected \['c'\]$",
        ),
        (
            lambda: fn.affine(BIG, BIG),
            r"affine: params must be a dict with keys \['w', 'b'\], got an array of shape \(100, 100\) \(float64\)$",
        ),
        (
            lambda: fn.relu({"w": BIG}, BIG),
            r"relu: takes no params, so params must be \(\), got a dict with keys \['w'\]$",
        ),
        (
            lambda: fn.affine_relu({"v": BIG, "b": BIG}, BIG),
            r"sandwich\(affine, relu\): params must be a dict with keys \['b', 'w'\], "
            r"got missing \['w'\], unexpected \['v'\]$",
        ),
        (
            lambda: fn.run(fn.relu, (), BIG, {"s": BIG}, train=True),
            r"relu: keeps no state, so state must be \(\), got a dict with keys \['s'\]$",
        ),
        (
            lambda: fn.batch_norm().run({"gamma": BIG[0], "beta": BIG[0]}, BIG, (BIG,), train=True),
            r"state must be a dict .*, got a tuple of 1 entries$",
        ),
    ],
)
def test_params_and_state_errors_name_the_keys_never_an_array(call, pattern):
    with pytest.raises(TypeError, match=pattern) as error:
        call()
    assert "0., 0." not in str(error.value)
