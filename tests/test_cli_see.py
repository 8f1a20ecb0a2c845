"""funcnn summary and funcnn export."""

import json
import sys

import numpy as np
import pytest
from bounds import gamma, network_rounding_bound

import funcnn as fn
from funcnn.app.cli import main
from funcnn.data import load_digits, load_shakespeare
from funcnn.training import load_checkpoint, save_checkpoint


def test_summary_prints_the_table_of_the_trained_network(capsys):
    assert main(["summary", "--dataset", "cifar10", "--filter-size", "7", "--batch-size", "2", "--batch-norm"]) == 0
    out = capsys.readouterr().out
    net = fn.nets.three_layer_convnet(32, 7, 100, 10, batch_norm=True)
    assert str(fn.summary(net, (3, 32, 32), batch_size=2)) in out
    assert "(2, 32, 32, 32)" in out and "spatial_batch_norm" in out


def test_summary_refuses_bad_options(capsys):
    assert main(["summary", "--hidden", "0"]) == 2
    assert "argument --hidden: must be an int >= 1, got '0'" in capsys.readouterr().err


def test_export_writes_the_checkpoints_network(tmp_path, capsys):
    ort = pytest.importorskip("onnxruntime", reason="the onnx extra is not installed")
    out = tmp_path / "run"
    options = ["--batch-norm", "--dropout", "0.2", "--hidden", "20"]
    assert main(["train", "--epochs", "1", "--out", str(out), *options]) == 0
    assert main(["export", str(out / "checkpoint.npz"), "--onnx", str(tmp_path / "digits.onnx")]) == 0
    assert f"wrote {tmp_path / 'digits.onnx'}" in capsys.readouterr().out
    with pytest.MonkeyPatch.context() as patch:
        patch.setitem(sys.modules, "onnx", None)
        assert main(["export", str(out / "checkpoint.npz"), "--onnx", str(tmp_path / "no.onnx")]) == 2
    assert 'funcnn export: ONNX export needs the onnx extra: pip install "funcnn[onnx]"' in capsys.readouterr().err
    net = fn.nets.three_layer_convnet(32, 3, 20, 10, batch_norm=True, dropout=0.2)
    _, params = fn.init_params(net, np.random.default_rng(0), (1, 8, 8))
    like = {"best_params": params, "best_state": fn.init_state(net, (1, 8, 8))}
    saved = load_checkpoint(out / "checkpoint.npz", like, strict=False)
    x = load_digits().test.x[:40]
    expected, _, _ = net.run(saved["best_params"], x, saved["best_state"], train=False)
    session = ort.InferenceSession(str(tmp_path / "digits.onnx"), providers=["CPUExecutionProvider"])
    (actual,) = session.run(["y"], {"x": x})
    bound = network_rounding_bound(net, (1, 8, 8), np.float32)  # two float32 summation orders (tests/bounds.py)
    assert np.abs(actual - expected).max() <= bound * np.abs(expected).max()


def test_export_refuses_a_checkpoint_without_a_network_config(tmp_path, capsys):
    path = tmp_path / "other.npz"
    save_checkpoint(path, {"config": np.asarray(json.dumps({"dataset": "digits"})), "params": np.ones(3)})
    assert main(["export", str(path), "--onnx", str(tmp_path / "x.onnx")]) == 2
    err = capsys.readouterr().err
    assert "its config lacks batch_size, filters" in err and "funcnn.export.to_onnx" in err


def test_export_writes_the_text_jobs_transformer_and_refuses_its_lstm(tmp_path, capsys):
    ort = pytest.importorskip("onnxruntime", reason="the onnx extra is not installed")
    tiny = ["train", "--dataset", "shakespeare", "--hidden", "8", "--seq-length", "16", "--train-chars", "1500",
            "--epochs", "1"]  # fmt: skip
    out = tmp_path / "run"
    assert main([*tiny, "--cell", "transformer", "--out", str(out)]) == 0
    assert main(["export", str(out / "checkpoint.npz"), "--onnx", str(tmp_path / "text.onnx")]) == 0
    assert "x (N, 16) of int64 character codes -> y" in capsys.readouterr().out
    net = fn.nets.char_transformer(len(load_shakespeare().vocab), 8, num_heads=4, num_layers=2, max_len=16)
    _, params = fn.init_params(net, np.random.default_rng(0), (16,))
    saved = load_checkpoint(out / "checkpoint.npz", {"best_params": params}, strict=False)["best_params"]
    codes = np.random.default_rng(1).integers(0, len(load_shakespeare().vocab), (5, 16))
    expected, _ = net(saved, codes)
    session = ort.InferenceSession(str(tmp_path / "text.onnx"), providers=["CPUExecutionProvider"])
    (actual,) = session.run(["y"], {"x": codes})
    # two float32 summation orders through 2 encoder layers (6 stages each), the final norm and the scores,
    # at most 32 (the feed-forward width) terms per stage, sums within 10x of the unit-scale scores
    assert np.abs(actual - expected).max() <= 14 * 10 * gamma(33, np.float32) * (1 + np.abs(expected).max())
    lstm = tmp_path / "lstm"
    assert main([*tiny, "--out", str(lstm)]) == 0
    capsys.readouterr()
    assert main(["export", str(lstm / "checkpoint.npz"), "--onnx", str(tmp_path / "lstm.onnx")]) == 2
    assert "char_rnn(lstm, 8) (op 'char_rnn') has no ONNX counterpart" in capsys.readouterr().err
    assert not (tmp_path / "lstm.onnx").exists()
