"""The transformer nets: the course's CaptioningTransformer and the decoder-only char model, gradient-checked,
causal, trainable by ``fit`` and by the text job (``--cell transformer``)."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest

import funcnn as fn
from funcnn.app.cli import main
from funcnn.data import char_text, windows
from funcnn.tree import tree_leaves

WORDS = {"<NULL>": 0, "<START>": 1, "<END>": 2, "cat": 3, "sat": 4}


def small_captioner():
    model = fn.nets.captioning_transformer(WORDS, input_dim=6, wordvec_dim=4, num_heads=2, num_layers=2,
                                           dim_feedforward=8)  # fmt: skip
    return model, model.init_params(np.random.default_rng(0), np.float64)


def test_captioning_transformer_passes_check_vjp():
    model, params = small_captioner()
    rng = np.random.default_rng(1)
    features, captions = rng.standard_normal((2, 6)), rng.integers(0, 5, size=(2, 4))  # <NULL> (0) among them
    report = fn.check_vjp(model.net, params, (features, captions))
    assert any(leaf.path.startswith('params["layers"][1]["cross_attn"]') for leaf in report.leaves)


def test_captioning_loss_is_the_masked_temporal_softmax_loss_and_null_gets_no_gradient():
    model, params = small_captioner()
    features = np.random.default_rng(2).standard_normal((2, 6))
    captions = np.array([[1, 3, 4, 2, 0], [1, 4, 2, 0, 0]])
    loss, grads = model.loss(params, features, captions)
    scores, _ = model.net(params, (features, captions[:, :-1]))
    want, _ = fn.temporal_softmax_loss(scores, captions[:, 1:], captions[:, 1:] != 0)
    assert loss == pytest.approx(float(want), rel=1e-12)
    assert not grads["embedding"]["w"][0].any() and grads["embedding"]["w"][3].any()
    # loss and grads agree: the loss moves by <g, d> along a small step d in the output layer's weights
    d = np.random.default_rng(3).standard_normal(params["output"]["w"].shape) * 1e-6
    moved = {**params, "output": {**params["output"], "w": params["output"]["w"] + d}}
    # central difference would be exact to O(|d|^2) = 1e-12; one-sided leaves the curvature term, also ~1e-12
    assert model.loss(moved, features, captions)[0] - loss == pytest.approx(np.vdot(grads["output"]["w"], d), abs=1e-10)


def test_greedy_sampling_feeds_back_the_best_word():
    model, params = small_captioner()
    features = np.random.default_rng(4).standard_normal((3, 6))
    captions = model.sample(params, features, max_length=4)
    assert captions.shape == (3, 4) and captions.dtype == np.int64
    partial = np.concatenate([np.ones((3, 1), np.int64), captions[:, :-1]], axis=1)
    scores, _ = model.net(params, (features, partial))
    np.testing.assert_array_equal(scores.argmax(axis=2), captions)  # each word is the argmax after the ones before


def test_captioning_transformer_errors():
    with pytest.raises(ValueError, match="captioning_transformer: word_to_idx must hold '<NULL>'"):
        fn.nets.captioning_transformer({"a": 0}, 4, 4)
    with pytest.raises(ValueError, match="captioning_transformer: num_heads=3 must divide wordvec_dim=4"):
        fn.nets.captioning_transformer(WORDS, 4, 4, num_heads=3)
    model, params = small_captioner()
    with pytest.raises(ValueError, match=r"CaptioningTransformer.loss: captions must be \(N, T \+ 1\)"):
        model.loss(params, np.ones((2, 6)), np.ones((2, 1), int))


def test_char_transformer_is_causal_and_passes_check_vjp():
    net = fn.nets.char_transformer(vocab_size=7, dim=8, num_heads=2, num_layers=2)
    _, params = fn.init_params(net, np.random.default_rng(5), (6,), np.float64)
    codes = np.random.default_rng(6).integers(7, size=(2, 6))
    scores, _ = net(params, codes)
    changed = codes.copy()
    changed[:, 4:] = (changed[:, 4:] + 1) % 7
    np.testing.assert_array_equal(net(params, changed)[0][:, :4], scores[:, :4])  # no peeking ahead
    assert not np.allclose(net(params, changed)[0][:, 4:], scores[:, 4:])
    report = fn.check_vjp(net, params, codes)
    assert len(report.leaves) == len(tree_leaves(params))


def test_char_transformer_learns_a_short_text_and_samples_from_it():
    text = char_text("to be, or not to be: that is the question. " * 20)
    x, y = windows(text.train, 16)
    net = fn.nets.char_transformer(vocab_size=len(text.vocab), dim=16, num_heads=2, num_layers=1)
    _, params = fn.init_params(net, np.random.default_rng(0), (16,))
    val = windows(text.val, 16)
    result = fn.fit(net, params, (x, y), val, fn.optim.adam(1e-2), epochs=3, batch_size=8, loss=fn.nets.char_loss,
                    log=None)  # fmt: skip
    counts = np.bincount(text.train, minlength=len(text.vocab))
    frequencies = counts[counts > 0] / counts.sum()
    unigram = -np.sum(frequencies * np.log(frequencies))  # the best loss of a model that ignores the context
    assert np.mean(result.history.loss_history[-5:]) < unigram
    drawn = fn.nets.sample_chars(net, result.best_params, text.encode("to be")[None], 30, np.random.default_rng(0))
    assert drawn.shape == (1, 30) and drawn.min() >= 0 and drawn.max() < len(text.vocab)


def test_the_text_job_trains_a_transformer(tmp_path, capsys):
    args = ["train", "--dataset", "shakespeare", "--cell", "transformer", "--hidden", "8", "--seq-length", "16",
            "--batch-size", "32", "--train-chars", "1500", "--epochs", "1", "--out", str(tmp_path)]  # fmt: skip
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "char_transformer(2x8, 4 heads)" in out
    nats = float(re.search(r"^test loss (\d+\.\d{4}) nats/char", out, re.M).group(1))
    assert 0 < nats < math.log(73) + 0.5  # below (or near) guessing among the 73 characters after one short epoch
    assert (tmp_path / "checkpoint.npz").exists()
