"""Reliability in one process: nothing funcnn writes replaces a run's files or another output without an
explicit overwrite; labels and empty inputs refused or computed correctly, never a silent wrong answer."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import funcnn as fn
from funcnn.app.cli import main
from funcnn.data import DataFormatError, load_mnist
from funcnn.optim import sgd

SMALL = ["--epochs", "1", "--filters", "2", "--hidden", "8"]


@pytest.fixture(scope="module")
def run_folder(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    assert main(["train", *SMALL, "--out", str(out)]) == 0
    return out


@pytest.mark.parametrize("name", ["checkpoint.npz", "history.json"])
def test_export_never_replaces_a_run_file(run_folder, name, capsys):
    pytest.importorskip("onnx", reason="the onnx extra is not installed")
    before = (run_folder / name).read_bytes()
    assert main(["export", str(run_folder / "checkpoint.npz"), "--onnx", str(run_folder / name)]) == 2
    assert str(run_folder / name) in capsys.readouterr().err
    assert (run_folder / name).read_bytes() == before


def test_export_replaces_a_model_only_with_overwrite(run_folder, tmp_path, capsys):
    pytest.importorskip("onnx", reason="the onnx extra is not installed")
    model = tmp_path / "model.onnx"
    model.write_bytes(b"an older model")
    assert main(["export", str(run_folder / "checkpoint.npz"), "--onnx", str(model)]) == 2
    assert "--overwrite" in capsys.readouterr().err and model.read_bytes() == b"an older model"
    checkpoint = run_folder / "checkpoint.npz"
    assert main(["export", str(checkpoint), "--onnx", str(checkpoint), "--overwrite"]) == 2  # never its own input
    assert main(["export", str(checkpoint), "--onnx", str(model), "--overwrite"]) == 0
    assert model.read_bytes() != b"an older model" and not list(tmp_path.glob(".*.tmp"))  # no temporary left


def _tiny_fit(path, **checkpoint):
    rng = np.random.default_rng(0)
    net = fn.dense(3)
    _, params = fn.init_params(net, rng, (4,), np.float64)
    x, y = rng.normal(size=(12, 4)), rng.integers(0, 3, 12)
    return fn.fit(net, params, (x, y), (x, y), sgd(learning_rate=0.1), epochs=1, batch_size=6, log=None,
                  checkpoint=fn.Checkpoint(path, **checkpoint))  # fmt: skip


def test_fit_refuses_to_replace_an_existing_checkpoint_without_resume(tmp_path):
    path = tmp_path / "checkpoint.npz"
    path.write_bytes(b"another network's checkpoint")
    with pytest.raises(ValueError, match="already exists.*resume=True.*overwrite=True"):
        _tiny_fit(path)
    assert path.read_bytes() == b"another network's checkpoint"
    _tiny_fit(path, overwrite=True)
    assert path.read_bytes() != b"another network's checkpoint"


def _net_and_params():
    net = fn.dense(5)
    _, params = fn.init_params(net, np.random.default_rng(0), (3,), np.float64)
    return net, params


@given(st.integers(5, 50))
@settings(max_examples=10, deadline=None)
def test_accuracy_refuses_labels_outside_the_scores_classes(label):
    net, params = _net_and_params()
    x = np.random.default_rng(label).normal(size=(4, 3))
    with pytest.raises(ValueError, match=r"accuracy: labels y must be in \[0, 5\)"):
        fn.accuracy(net, params, x, np.full(4, label))


def test_accuracy_refuses_float_labels_and_an_empty_x():
    net, params = _net_and_params()
    x = np.ones((4, 3))
    with pytest.raises(ValueError, match="labels y must be integers.*float64"):
        fn.accuracy(net, params, x, np.zeros(4))
    for call in (lambda: fn.accuracy(net, params, x[:0], np.zeros(0, int)), lambda: fn.predict(net, params, x[:0])):
        with pytest.raises(ValueError, match=r"x has no examples \(shape \(0, 3\)\)"):
            call()


def test_fit_refuses_validation_labels_outside_the_classes_before_training(tmp_path):
    net, params = _net_and_params()
    x, y = np.ones((6, 3)), np.arange(6) % 5
    with pytest.raises(ValueError, match=r"fit: val: labels y must be in \[0, 5\).*from 10 to 14"):
        fn.fit(net, params, (x, y), (x[:5], np.arange(10, 15)), sgd(learning_rate=0.1), epochs=1, log=None)


def test_an_mnist_folder_of_no_images_is_an_error_naming_the_file(tmp_path):
    header = (0x0803).to_bytes(4, "big") + (0).to_bytes(4, "big") + (28).to_bytes(4, "big") * 2
    (tmp_path / "train-images-idx3-ubyte").write_bytes(header)
    (tmp_path / "train-labels-idx1-ubyte").write_bytes((0x0801).to_bytes(4, "big") + (0).to_bytes(4, "big"))
    with pytest.raises(DataFormatError, match=r"train-images-idx3-ubyte: expected .*N >= 1, found uint8 of shape \(0"):
        load_mnist(tmp_path)


@given(
    st.sampled_from([(1, 0, 3), (1, 1, 3), (2, 1, 1), (1, 2, 5)]),
    st.integers(1, 3),
    st.integers(3, 7),
    st.sampled_from([np.float32, np.float64]),
)
@settings(max_examples=25, deadline=None)
def test_conv_on_an_empty_batch_equals_conv_naive(conv_args, c, size, dtype):
    stride, pad, k = conv_args
    rng = np.random.default_rng(size)
    params = {"w": rng.normal(size=(4, c, k, k)).astype(dtype), "b": np.zeros(4, dtype)}
    x = np.zeros((0, c, size + k, size + k), dtype)
    (fast, fast_vjp), (naive, naive_vjp) = (
        fn.conv(stride, pad).apply(params, x),
        fn.conv_naive(stride, pad).apply(params, x),
    )
    assert fast.shape == naive.shape and fast.shape[:2] == (0, 4) and fast.dtype == dtype
    (dparams, dx), (naive_dparams, _) = fast_vjp(fast), naive_vjp(naive)
    assert dx.shape == x.shape and np.array_equal(dparams["w"], naive_dparams["w"]) and not dparams["w"].any()


@pytest.mark.parametrize("layer", [fn.max_pool(2, 2, 2), fn.max_pool_naive(2, 2, 2), fn.max_pool(3, 3, 1)])
def test_max_pool_on_an_empty_batch_gives_an_empty_output(layer):
    x = np.zeros((0, 3, 6, 6), np.float32)
    y, vjp = layer.apply((), x)
    assert y.shape == (0, 3, *layer.out_shape((3, 6, 6))[1:]) and y.dtype == np.float32 and vjp(y)[1].shape == x.shape


@pytest.mark.parametrize("w_shape, x_shape", [((0, 3, 3, 3), (2, 3, 5, 5)), ((4, 0, 3, 3), (2, 0, 5, 5))])
@pytest.mark.parametrize("make", [fn.conv, fn.conv_naive])
def test_conv_with_no_channels_or_no_filters_is_an_error_naming_the_layer(make, w_shape, x_shape):
    params = {"w": np.ones(w_shape), "b": np.zeros(w_shape[0])}
    with pytest.raises(ValueError, match=r"conv(_naive)?\(stride=1, pad=1\): x must have C >= 1 .*F >= 1"):
        make(1, 1).apply(params, np.ones(x_shape))
