"""ONNX export, checked by onnx.checker and by running the model in ONNX Runtime against funcnn's
evaluation-mode outputs (float32, relative 1e-5)."""

import dataclasses
import sys

import numpy as np
import pytest
from bounds import network_rounding_bound

import funcnn as fn
from funcnn.export import to_onnx

onnx = pytest.importorskip("onnx", reason="the onnx extra is not installed")
ort = pytest.importorskip("onnxruntime", reason="the onnx extra is not installed")


def max_rel_error(actual, expected):
    """The largest difference relative to the largest output: ``max |a - e| / max |e|``."""
    return float(np.abs(actual - expected).max() / np.abs(expected).max())


def exported_and_run(tmp_path, net, params, shape, state=None, batches=(5, 1)):
    """(funcnn's eval outputs, ONNX Runtime's) for inputs of each batch size, from one exported model."""
    path = to_onnx(net, params, shape, tmp_path / "net.onnx", state, overwrite=True)
    onnx.checker.check_model(onnx.load(str(path)), full_check=True)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    pairs = []
    for n in batches:
        x = rng.random((n, *shape), dtype=np.float32)
        expected, _, _ = fn.run(net, params, x, fn.init_state(net, shape) if state is None else state, train=False)
        (actual,) = session.run(["y"], {"x": x})
        assert actual.shape == expected.shape and actual.dtype == np.float32
        pairs.append((actual, expected))
    return pairs


def assert_agree(pairs, net, shape):
    """ONNX Runtime and funcnn, both in float32, within two summation orders of the network (tests/bounds.py)."""
    bound = network_rounding_bound(net, shape, np.float32)
    for actual, expected in pairs:
        assert max_rel_error(actual, expected) <= bound, (max_rel_error(actual, expected), bound)


def trained_state(net, params, shape, steps=3):
    """A state moved away from its initial values by a few training-mode passes."""
    rng = np.random.default_rng(1)
    state = fn.init_state(net, shape)
    for _ in range(steps):
        _, _, state = net.run(params, 2 + 3 * rng.random((8, *shape), dtype=np.float32), state, train=True, rng=rng)
    return state


def test_the_digits_convnet(tmp_path):
    net = fn.nets.three_layer_convnet(num_filters=32, filter_size=3, hidden_dim=100)
    _, params = fn.init_params(net, np.random.default_rng(0), (1, 8, 8))
    assert_agree(exported_and_run(tmp_path, net, params, (1, 8, 8)), net, (1, 8, 8))


@pytest.mark.parametrize("options", [{"batch_norm": True}, {"dropout": 0.5}, {"batch_norm": True, "dropout": 0.2}])
def test_fully_connected_nets_with_batch_norm_and_dropout(tmp_path, options):
    net = fn.nets.fc_net((20, 15), num_classes=7, **options)
    _, params = fn.init_params(net, np.random.default_rng(2), (3, 4))
    state = trained_state(net, params, (3, 4))
    assert_agree(exported_and_run(tmp_path, net, params, (3, 4), state), net, (3, 4))


def test_a_residual_net_with_every_layer(tmp_path):
    block = fn.sandwich(fn.conv(stride=1, pad=1, filters=6, kernel_size=3), fn.spatial_batch_norm(), fn.leaky_relu(0.1))
    net = fn.chain(
        fn.conv(stride=1, pad=1, filters=6, kernel_size=3), fn.relu, fn.residual(block), fn.group_norm(3),
        fn.fan_out(fn.tanh, fn.sigmoid, fn.identity), fn.max_pool(3, 3, 1), fn.avg_pool(2, 2, 2), fn.layer_norm(),
        fn.residual(fn.chain(fn.conv(stride=1, pad=0, filters=6, kernel_size=1), fn.dropout(0.3))),
        fn.global_avg_pool, fn.dense(4),
    )  # fmt: skip
    _, params = fn.init_params(net, np.random.default_rng(3), (2, 9, 9))
    params = fn.tree.tree_map(lambda a: a + np.float32(0.1), params)  # gammas and biases not 1 and 0
    pairs = exported_and_run(tmp_path, net, params, (2, 9, 9), trained_state(net, params, (2, 9, 9)))
    assert_agree(pairs, net, (2, 9, 9))


def test_a_layer_without_counterpart_is_named(tmp_path):
    def double(params, x):
        return 2 * x, lambda dy: ((), 2 * dy)

    net = fn.chain(fn.dense(3), fn.layer(double, out_shape=lambda shape: shape))
    _, params = fn.init_params(net, np.random.default_rng(0), (4,))
    with pytest.raises(ValueError, match=r"to_onnx: double \(op 'custom'\) has no ONNX counterpart"):
        to_onnx(net, params, (4,), tmp_path / "net.onnx")
    assert not (tmp_path / "net.onnx").exists()


def test_batch_norm_needs_its_state(tmp_path):
    net = fn.nets.fc_net((5,), batch_norm=True)
    _, params = fn.init_params(net, np.random.default_rng(0), (4,))
    with pytest.raises(ValueError, match="has batch norm: pass its state"):
        to_onnx(net, params, (4,), tmp_path / "net.onnx")


def test_a_missing_extra_is_named(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnx", None)
    with pytest.raises(ImportError, match=r"funcnn\[onnx\]"):
        to_onnx(fn.relu, (), (3,), tmp_path / "net.onnx")


def test_params_that_do_not_fit_are_named_by_the_layer(tmp_path):
    net = fn.chain(fn.conv(stride=1, pad=1, filters=4, kernel_size=3), fn.relu)
    _, params = fn.init_params(net, np.random.default_rng(0), (3, 5, 5))
    with pytest.raises(ValueError, match=r"conv\(stride=1, pad=1.*x has 2 channels"):
        to_onnx(net, params, (2, 5, 5), tmp_path / "net.onnx")


def run_model(tmp_path, net, params, x):
    """ONNX Runtime's output for ``x`` from ``net`` exported with ``params`` (shape of one example from ``x``)."""
    path = to_onnx(net, params, x.shape[1:], tmp_path / "net.onnx", overwrite=True)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (y,) = session.run(["y"], {"x": x})
    return y


@pytest.mark.parametrize("position", range(4))
def test_a_nan_wins_its_max_pool_window_in_every_position(tmp_path, position):
    x = np.arange(4, dtype=np.float32).reshape(1, 1, 2, 2)
    x.flat[position] = np.nan
    net = fn.max_pool(2, 2, 2)
    expected, _ = net((), x)
    assert np.isnan(expected).all()
    assert np.isnan(run_model(tmp_path, net, (), x)).all()


def test_max_pool_of_infinities_stays_infinite(tmp_path):
    x = np.array([np.inf, -np.inf, 1, 2, -np.inf, -np.inf, -np.inf, -np.inf], np.float32).reshape(1, 1, 2, 4)
    y = run_model(tmp_path, fn.max_pool(2, 2, 2), (), x)
    np.testing.assert_array_equal(y, fn.max_pool(2, 2, 2)((), x)[0])
    np.testing.assert_array_equal(y, np.array([np.inf, 2], np.float32).reshape(1, 1, 1, 2))


def test_every_exported_layer_keeps_nan(tmp_path):
    net = fn.chain(
        fn.conv(stride=1, pad=1, filters=3, kernel_size=3), fn.relu, fn.leaky_relu(0.1), fn.max_pool(2, 2, 2),
        fn.tanh, fn.sigmoid, fn.avg_pool(2, 2, 2), fn.layer_norm(), fn.group_norm(3), fn.global_avg_pool, fn.dense(4),
    )  # fmt: skip
    _, params = fn.init_params(net, np.random.default_rng(0), (2, 8, 8))
    x = np.random.default_rng(1).random((3, 2, 8, 8), dtype=np.float32)
    x[0, 1, 5, 2] = np.nan
    expected, _, _ = fn.run(net, params, x, fn.init_state(net, (2, 8, 8)), train=False)
    actual = run_model(tmp_path, net, params, x)
    np.testing.assert_array_equal(np.isnan(actual), np.isnan(expected))
    assert np.isnan(expected[0]).all() and not np.isnan(expected[1:]).any()


def course_params(rng):
    """Params of conv_relu_pool (8 3x3 filters over 1 channel, 8x8 -> 4x4), affine_relu (128 -> 20),
    affine (20 -> 10)."""
    w = rng.standard_normal
    return (
        {"w": w((8, 1, 3, 3)).astype(np.float32), "b": w(8).astype(np.float32)},
        {"w": 0.1 * w((128, 20)).astype(np.float32), "b": w(20).astype(np.float32)},
        {"w": 0.1 * w((20, 10)).astype(np.float32), "b": w(10).astype(np.float32)},
    )


def test_course_style_networks_without_sizes_are_exported(tmp_path):
    net = fn.chain(fn.conv_relu_pool(), fn.affine_relu, fn.affine)
    params = course_params(np.random.default_rng(0))
    sized = fn.chain(fn.conv(1, 1, filters=8, kernel_size=3), fn.relu, fn.max_pool(), fn.dense_relu(20), fn.dense(10))
    assert_agree(exported_and_run(tmp_path, net, params, (1, 8, 8)), sized, (1, 8, 8))  # sized: for fn.summary
    model = onnx.load(str(tmp_path / "net.onnx"))
    assert [d.dim_value or d.dim_param for d in model.graph.output[0].type.tensor_type.shape.dim] == ["N", 10]


def test_course_style_residual_and_fan_out_without_sizes_are_exported(tmp_path):
    conv = fn.conv(stride=1, pad=1)
    net = fn.chain(fn.residual(conv), fn.fan_out(conv, fn.conv_relu(pad=1)), fn.affine)
    rng = np.random.default_rng(1)
    conv_params = {"w": 0.3 * rng.standard_normal((2, 2, 3, 3)).astype(np.float32), "b": np.ones(2, np.float32)}
    affine_params = {"w": rng.random((32, 3), np.float32), "b": np.zeros(3, np.float32)}
    params = (conv_params, (conv_params, conv_params), affine_params)
    sized_conv = fn.conv(stride=1, pad=1, filters=2, kernel_size=3)
    sized = fn.chain(fn.residual(sized_conv), fn.fan_out(sized_conv, fn.sandwich(sized_conv, fn.relu)), fn.dense(3))
    assert_agree(exported_and_run(tmp_path, net, params, (2, 4, 4)), sized, (2, 4, 4))  # sized: for fn.summary


@pytest.mark.parametrize(
    "layer, w, message",
    [
        (fn.dense(4), np.ones((6, 7)),
         r"affine\(4\): params\['w'\] has shape \(6, 7\), but the layer was declared with out_dim=4"),
        (fn.conv(stride=1, pad=1, filters=2, kernel_size=3), np.ones((5, 1, 3, 3)),
         r"conv\(stride=1, pad=1, filters=2, kernel_size=3\): params\['w'\] has shape \(5, 1, 3, 3\), but the layer "
         r"was declared with filters=2, kernel_size=\(3, 3\)"),
        (fn.conv(stride=1, pad=1, filters=2, kernel_size=3), np.ones((2, 1, 5, 5)),
         r"declared with filters=2, kernel_size=\(3, 3\)"),
    ],
)  # fmt: skip
def test_params_that_contradict_declared_sizes_are_refused(tmp_path, layer, w, message):
    x = np.ones((2, 1, 6, 1) if w.ndim == 2 else (2, 1, 6, 6))
    params = {"w": w, "b": np.zeros(w.shape[-1] if w.ndim == 2 else w.shape[0])}
    with pytest.raises(ValueError, match=message):
        layer(params, x)
    with pytest.raises(ValueError, match=message):
        to_onnx(layer, params, x.shape[1:], tmp_path / "net.onnx")
    assert not (tmp_path / "net.onnx").exists()


def test_a_layer_whose_shape_rule_disagrees_with_its_run_is_refused(tmp_path):
    liar = dataclasses.replace(fn.relu, out_shape=lambda shape: (99,))
    message = r"to_onnx: chain\(relu\): .*shape \(99,\) per example, but running it gives \(3,\)"
    with pytest.raises(ValueError, match=message):
        to_onnx(fn.chain(liar), ((),), (3,), tmp_path / "net.onnx")


@pytest.mark.parametrize("shape", [(1, -8, 8), (1, 8.9, 8), "1,8,8", (1, 0, 8), (True, 8), 8])
def test_a_bad_input_shape_is_named(tmp_path, shape):
    with pytest.raises((TypeError, ValueError), match=r"to_onnx: input_shape must be a tuple of whole numbers >= 1"):
        to_onnx(fn.relu, (), shape, tmp_path / "net.onnx")
