"""Layer metadata: ``out_shape`` agrees with what every layer really produces, shape errors name the
layer and the shape, and ``init_params``/``init_state`` infer shapes without running any layer."""

import pydoc
import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import funcnn as fn

sizes = st.integers(1, 4)
any_shapes = st.lists(sizes, min_size=1, max_size=3).map(tuple)
images = st.tuples(st.integers(1, 3), st.integers(1, 7), st.integers(1, 7))


@st.composite
def conv_layers(draw, naive=False):
    shape = draw(images)
    pad = draw(st.integers(0, 2))
    kernel = (draw(st.integers(1, shape[1] + 2 * pad)), draw(st.integers(1, shape[2] + 2 * pad)))
    factory = fn.conv_naive if naive else fn.conv
    return factory(stride=draw(st.integers(1, 3)), pad=pad, filters=draw(st.integers(1, 3)), kernel_size=kernel), shape


@st.composite
def pool_layers(draw, factory):
    shape = draw(images)
    ph, pw = draw(st.integers(1, shape[1])), draw(st.integers(1, shape[2]))
    return factory(pool_height=ph, pool_width=pw, stride=draw(st.integers(1, 3))), shape


@st.composite
def group_norm_layers(draw):
    groups = draw(st.integers(1, 3))
    return fn.group_norm(groups), (groups * draw(st.integers(1, 2)), *draw(st.lists(sizes, max_size=2)))


@st.composite
def residual_layers(draw):
    c, h, w = draw(images)
    return fn.residual(fn.conv_relu(stride=1, pad=1, filters=c, kernel_size=3)), (c, h, w)


def _fixed(layer, shapes):
    return shapes.map(lambda shape: (layer, shape))


# Every kind of layer, with the per-example input shapes it accepts.
LAYERS = {
    "relu": _fixed(fn.relu, any_shapes),
    "tanh": _fixed(fn.tanh, any_shapes),
    "sigmoid": _fixed(fn.sigmoid, any_shapes),
    "leaky_relu": _fixed(fn.leaky_relu(0.1), any_shapes),
    "identity": _fixed(fn.identity, any_shapes),
    "dropout": _fixed(fn.dropout(0.5), any_shapes),
    "dense": st.tuples(sizes.map(fn.dense), any_shapes),
    "conv": conv_layers(),
    "conv_naive": conv_layers(naive=True),
    "max_pool": pool_layers(fn.max_pool),
    "max_pool_naive": pool_layers(fn.max_pool_naive),
    "avg_pool": pool_layers(fn.avg_pool),
    "global_avg_pool": _fixed(fn.global_avg_pool, images),
    "batch_norm": _fixed(fn.batch_norm(), sizes.map(lambda d: (d,))),
    "spatial_batch_norm": _fixed(fn.spatial_batch_norm(), images),
    "layer_norm": _fixed(fn.layer_norm(), any_shapes),
    "group_norm": group_norm_layers(),
    "bind": _fixed(fn.bind(fn.dropout(0.5), train=True, rng=np.random.default_rng(0)), any_shapes),
    "chain": _fixed(
        fn.chain(fn.conv(pad=1, filters=2, kernel_size=3), fn.relu, fn.global_avg_pool, fn.dense(3)), images
    ),
    "sandwich": _fixed(fn.sandwich(fn.dense(4), fn.batch_norm(), fn.relu, fn.dropout(0.2)), any_shapes),
    "fan_out": _fixed(fn.fan_out(fn.dense(3), fn.chain(fn.dense(2), fn.dense(3))), any_shapes),
    "residual": residual_layers(),
    "dense_relu": _fixed(fn.dense_relu(5), any_shapes),
    "conv_relu_pool": _fixed(
        fn.conv_relu_pool({"stride": 1, "pad": 1, "filters": 2, "kernel_size": 3}),
        images.filter(lambda s: min(s[1:]) >= 2),
    ),
    "fc_net": _fixed(fn.nets.fc_net((4, 3), 2, batch_norm=True, dropout=0.1), any_shapes),
    "three_layer_convnet": _fixed(
        fn.nets.three_layer_convnet(2, 3, 4, 3, batch_norm=True), images.filter(lambda s: min(s[1:]) >= 2)
    ),
}


def _run(layer, shape, dtype=np.float64):
    """Make params and state from ``shape`` alone, then run ``layer`` in training on a batch of 2."""
    rng = np.random.default_rng(0)
    _, params = fn.init_params(layer, rng, shape, dtype)
    x = rng.standard_normal((2, *shape)).astype(dtype)
    y, _, _ = fn.run(layer, params, x, fn.init_state(layer, shape, dtype), train=True, rng=rng)
    return y


@pytest.mark.parametrize("name", list(LAYERS))
@settings(max_examples=15)
@given(data=st.data())
def test_out_shape_is_the_shape_the_layer_produces(name, data):
    layer, shape = data.draw(LAYERS[name])
    out = layer.out_shape(shape)
    assert _run(layer, shape).shape == (2, *out)
    assert fn.init_params(layer, np.random.default_rng(0), shape)[0] == out


@settings(max_examples=15)
@given(classes=st.integers(2, 5))
def test_a_loss_layer_gives_a_scalar(classes):
    loss = fn.loss_layer(fn.softmax_loss, np.array([0, 1]))
    assert loss.out_shape((classes,)) == () == _run(loss, (classes,)).shape


def test_the_issues_chain_ending_in_a_loss_gets_its_params():
    """Labels for 2 examples no longer meet the example of zeros that init used to run."""
    net = fn.chain(fn.dense(3), fn.loss_layer(fn.softmax_loss, np.array([0, 2])))
    out, params = fn.init_params(net, np.random.default_rng(0), (4,))
    assert out == () and params[0]["w"].shape == (4, 3) and params[1] == ()


BAD_SHAPES = [
    (fn.conv(filters=2, kernel_size=3), (3, 4), "must be (C, H, W)"),
    (fn.conv(filters=2, kernel_size=3), (1, 2, 2), "window (3) is larger than the padded input"),
    (fn.conv(), (1, 4, 4), "needs the filters and the kernel size"),
    (fn.max_pool_naive(2, 2, 2), (1, 1, 4), "window (2) is larger"),
    (fn.avg_pool(3, 3, 1), (1, 4), "must be (C, H, W)"),
    (fn.global_avg_pool, (3, 0, 2), "H, W >= 1"),
    (fn.batch_norm(), (2, 3), "must be (D)"),
    (fn.batch_norm(), (0,), "at least one feature"),
    (fn.spatial_batch_norm(), (3,), "must be (C, H, W)"),
    (fn.layer_norm(), (), "(d1, ..., dk)"),
    (fn.group_norm(2), (3, 4, 4), "groups=2 must divide the channels"),
    (fn.affine, (4,), "use fn.dense(out_dim)"),
    (fn.loss_layer(fn.svm_loss, np.array([0])), (3, 4), "must be (C,)"),
]


@pytest.mark.parametrize("layer, shape, message", BAD_SHAPES, ids=lambda v: getattr(v, "name", None))
def test_a_shape_a_layer_refuses_is_an_error_naming_both(layer, shape, message):
    with pytest.raises(ValueError, match=re.escape(message)) as error:
        layer.out_shape(shape)
    assert str(error.value).startswith(f"{layer.name}: ") and str(shape) in str(error.value)


@pytest.mark.parametrize(
    "layer, shape, pattern",
    [
        (
            fn.fan_out(fn.dense(2), fn.dense(3)),
            (4,),
            r"fan_out\(affine\(2\), affine\(3\)\): affine\(3\) gives shape \(3,\) but affine\(2\) gives \(2,\)",
        ),
        (
            fn.residual(fn.dense(2)),
            (3,),
            r"residual\(affine\(2\)\): affine\(2\) must keep the shape of x \(3,\): affine\(2\) gives shape \(2,\)",
        ),
        (
            fn.chain(fn.dense(3), fn.max_pool()),
            (5,),
            r"max_pool\(pool_height=2, pool_width=2, stride=2\): the input shape .* must be \(C, H, W\), got \(3,\)",
        ),
    ],
)
def test_a_combination_names_the_part_that_refuses_the_shape(layer, shape, pattern):
    with pytest.raises(ValueError, match=pattern):
        layer.out_shape(shape)
    with pytest.raises(ValueError, match=pattern):
        fn.init_params(layer, np.random.default_rng(0), shape)


def test_fan_out_and_residual_share_the_shape_check_when_running():
    x = np.ones((2, 3), np.float32)
    _, params = fn.init_params(fn.dense(2), np.random.default_rng(0), (3,))
    with pytest.raises(
        ValueError,
        match=r"residual\(affine\(2\)\): affine\(2\) must keep the shape of x \(2, 3\): "
        r"affine\(2\) gives shape \(2, 2\) but x gives \(2, 3\)",
    ):
        fn.residual(fn.dense(2))(params, x)
    fan_out_error = r"fan_out\(identity, affine\(2\)\): affine\(2\) gives shape \(2, 2\) but identity gives \(2, 3\)"
    with pytest.raises(ValueError, match=fan_out_error):
        fn.fan_out(fn.identity, fn.dense(2))(((), params), x)


def _refuses_to_run(params, x):
    raise AssertionError("init ran a layer")


def _refuses_to_init(rng, shape, dtype, weight_scale):
    raise AssertionError("init_state made params")


def test_init_params_and_init_state_run_no_layer_and_make_no_throwaway_params():
    never_run = fn.layer(_refuses_to_run, out_shape=lambda shape: shape[:1])
    never_init = fn.layer(_refuses_to_run, init=_refuses_to_init, out_shape=tuple)
    net = fn.chain(fn.dense(6), fn.batch_norm(), never_run, never_init)
    out, params = fn.init_params(fn.chain(*net.children[:3]), np.random.default_rng(0), (4,))
    assert out == (6,) and params[2] == ()
    state = fn.init_state(net, (4,))  # the last layer's init would raise: state needs shapes only
    assert state[1]["running_mean"].shape == (6,) and (state[0], state[2], state[3]) == ((), (), ())


def test_a_users_function_without_out_shape_gets_a_clear_error():
    def double(params, x):
        return 2 * x, lambda dy: ((), 2 * dy)

    no_out_shape = re.escape("double does not say its output shape") + r".*fn\.layer\(double, out_shape="
    with pytest.raises(TypeError, match=no_out_shape):
        fn.init_params(fn.chain(fn.dense(3), fn.layer(double), fn.dense(2)), np.random.default_rng(0), (4,))
    with pytest.raises(TypeError, match=r"fn\.layer\(double, out_shape="):
        fn.init_state(fn.chain(fn.layer(double), fn.batch_norm()), (4,))
    assert fn.init_state(fn.chain(fn.batch_norm(), fn.layer(double)), (4,))[1] == ()  # nothing after it needs its shape
    net = fn.chain(fn.dense(3), fn.layer(double, out_shape=lambda s: s), fn.dense(2))
    out, _ = fn.init_params(net, np.random.default_rng(0), (4,))
    assert out == (2,)


CONV = fn.conv(stride=2, pad=1, filters=4, kernel_size=(3, 5))
METADATA = [
    (fn.affine, "affine", {"out_dim": None}, ()),
    (fn.dense(7), "affine", {"out_dim": 7}, ()),
    (CONV, "conv", {"stride": 2, "pad": 1, "filters": 4, "kernel_size": (3, 5), "naive": False}, ()),
    (fn.conv_naive(), "conv", {"stride": 1, "pad": 0, "filters": None, "kernel_size": None, "naive": True}, ()),
    (fn.max_pool(2, 3, 1), "max_pool", {"pool_height": 2, "pool_width": 3, "stride": 1, "naive": False}, ()),
    (fn.max_pool_naive(), "max_pool", {"pool_height": 2, "pool_width": 2, "stride": 2, "naive": True}, ()),
    (fn.avg_pool(3, 3, 3), "avg_pool", {"pool_height": 3, "pool_width": 3, "stride": 3}, ()),
    (fn.global_avg_pool, "global_avg_pool", {}, ()),
    (fn.relu, "relu", {}, ()),
    (fn.leaky_relu(0.2), "leaky_relu", {"alpha": 0.2}, ()),
    (fn.tanh, "tanh", {}, ()),
    (fn.sigmoid, "sigmoid", {}, ()),
    (fn.batch_norm(0.8, 1e-3), "batch_norm", {"momentum": 0.8, "eps": 1e-3}, ()),
    (fn.spatial_batch_norm(), "spatial_batch_norm", {"momentum": 0.9, "eps": 1e-5}, ()),
    (fn.layer_norm(1e-4), "layer_norm", {"eps": 1e-4}, ()),
    (fn.group_norm(2), "group_norm", {"groups": 2, "eps": 1e-5}, ()),
    (fn.dropout(0.3), "dropout", {"drop_prob": 0.3}, ()),
    (fn.identity, "identity", {}, ()),
    (fn.chain(CONV, fn.relu), "chain", {}, (CONV, fn.relu)),
    (fn.sandwich(CONV, fn.relu), "sandwich", {}, (CONV, fn.relu)),
    (fn.fan_out(CONV, fn.identity), "fan_out", {}, (CONV, fn.identity)),
    (fn.residual(CONV), "residual", {}, (CONV,)),
    (fn.bind(CONV, train=False), "bind", {"train": False}, (CONV,)),
    (fn.loss_layer(fn.softmax_loss, np.array([1])), "loss", {}, ()),
    (fn.layer(_refuses_to_run), "custom", {}, ()),
]


@pytest.mark.parametrize("layer, op, hparams, children", METADATA, ids=lambda v: getattr(v, "name", None))
def test_every_layer_says_what_it_is(layer, op, hparams, children):
    assert layer.op == op and dict(layer.hparams) == hparams
    assert len(layer.children) == len(children) and all(a is b for a, b in zip(layer.children, children))
    with pytest.raises(TypeError):
        layer.hparams["stride"] = 3  # read-only


def test_a_plain_function_in_a_combination_becomes_a_custom_child():
    def double(params, x):
        return 2 * x, lambda dy: ((), 2 * dy)

    (child,) = fn.chain(double).children
    assert child.op == "custom" and child.name == "double" and child.apply is double and child.out_shape is None


@pytest.mark.parametrize(
    "layer, factory",
    [
        (fn.conv(), fn.conv),
        (fn.conv_naive(), fn.conv_naive),
        (fn.dense(3), fn.dense),
        (fn.max_pool(), fn.max_pool),
        (fn.max_pool_naive(), fn.max_pool_naive),
        (fn.avg_pool(), fn.avg_pool),
        (fn.leaky_relu(), fn.leaky_relu),
        (fn.batch_norm(), fn.batch_norm),
        (fn.spatial_batch_norm(), fn.spatial_batch_norm),
        (fn.layer_norm(), fn.layer_norm),
        (fn.group_norm(1), fn.group_norm),
        (fn.dropout(), fn.dropout),
        (fn.dense_relu(2), fn.dense_relu),
        (fn.conv_relu(), fn.conv_relu),
        (fn.conv_relu_pool(), fn.conv_relu_pool),
        (fn.loss_layer(fn.svm_loss, np.array([0])), fn.loss_layer),
        (fn.nets.fc_net(), fn.nets.fc_net),
        (fn.nets.two_layer_net(), fn.nets.two_layer_net),
        (fn.nets.three_layer_convnet(), fn.nets.three_layer_convnet),
    ],
    ids=lambda v: getattr(v, "__name__", None),
)
def test_help_on_a_factory_made_layer_shows_the_factorys_docstring(layer, factory):
    text = pydoc.render_doc(layer, renderer=pydoc.plaintext)
    first_line = factory.__doc__.strip().splitlines()[0]
    assert first_line in text and "class Layer" not in text


@pytest.mark.parametrize("shape", ["(3, 4)", (3, -1), (2.0, 3), (True,)])
def test_an_input_shape_that_is_no_shape_is_a_type_error_naming_the_layer(shape):
    with pytest.raises(TypeError, match=r"^relu: an input shape must be a tuple of sizes >= 0, got "):
        fn.relu.out_shape(shape)
