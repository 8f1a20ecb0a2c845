"""``funcnn export`` on a checkpoint that ``fn.fit`` wrote from Python: the course's convnet is rebuilt from
the params' shapes and exported; any other network is refused with the Python route in the message."""

import numpy as np
import pytest
from bounds import network_rounding_bound

import funcnn as fn
from funcnn.app.cli import main

ort = pytest.importorskip("onnxruntime", reason="the onnx extra is not installed")


def _fit_checkpoint(path, net, shape, classes=10):
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((40, *shape)).astype(np.float32), rng.integers(0, classes, 40)
    _, params = fn.init_params(net, rng, shape)
    result = fn.fit(
        net, params, (x, y), (x, y), fn.optim.adam(1e-3), epochs=1, batch_size=20, checkpoint=path, log=None
    )
    return result


@pytest.mark.parametrize("batch_norm, dropout", [(False, 0.0), (True, 0.25)])
def test_a_fit_checkpoint_of_the_course_convnet_is_exported(tmp_path, capsys, batch_norm, dropout):
    shape = (3, 12, 12)  # not the digits' shape: it comes from the params
    net = fn.nets.three_layer_convnet(4, 5, 16, 7, batch_norm, dropout)
    result = _fit_checkpoint(tmp_path / "fit.npz", net, shape, classes=7)
    assert main(["export", str(tmp_path / "fit.npz"), "--onnx", str(tmp_path / "net.onnx")]) == 0
    assert "x (N, 3, 12, 12) -> y" in capsys.readouterr().out
    x = np.random.default_rng(1).random((5, *shape), dtype=np.float32)
    expected, _, _ = fn.run(net, result.best_params, x, result.best_state, train=False)
    (actual,) = ort.InferenceSession(str(tmp_path / "net.onnx"), providers=["CPUExecutionProvider"]).run(
        ["y"], {"x": x}
    )
    # both in float32: within two summation orders of the network (tests/bounds.py)
    bound = network_rounding_bound(net, shape, np.float32)
    assert np.abs(actual - expected).max() / np.abs(expected).max() <= bound


@pytest.mark.parametrize(
    "net, shape",
    [
        (fn.chain(fn.dense(10)), (6,)),
        (fn.chain(fn.sandwich(fn.conv(filters=4, kernel_size=3), fn.relu, fn.max_pool()), fn.dense(10)), (1, 8, 8)),
        # the course's three params, but a convolution without padding: the names differ
        (
            fn.chain(
                fn.sandwich(fn.conv(filters=4, kernel_size=3), fn.relu, fn.max_pool()), fn.dense_relu(16), fn.dense(10)
            ),
            (1, 10, 10),
        ),
    ],
)
def test_another_fit_checkpoint_names_the_python_route(tmp_path, capsys, net, shape):
    _fit_checkpoint(tmp_path / "fit.npz", net, shape)
    assert main(["export", str(tmp_path / "fit.npz"), "--onnx", str(tmp_path / "net.onnx")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"checkpoint {tmp_path / 'fit.npz'}: its network" in err
    assert "funcnn.export.to_onnx(net, params, input_shape, path)" in err and not (tmp_path / "net.onnx").exists()
