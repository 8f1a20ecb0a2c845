"""fn.nets.captioning_rnn and fn.nets.char_rnn against a plain NumPy reference of the course's model,
their sampling, and their errors."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import funcnn as fn
from funcnn.tree import tree_map


def sigmoid(a):
    return 1 / (1 + np.exp(-a))


def reference_hidden(cell, p, x, h0):
    """The course's rnn_forward / lstm_forward, written out: h (N, T, H)."""
    h, c, out = h0, np.zeros_like(h0), []
    for t in range(x.shape[1]):
        a = x[:, t] @ p["wx"] + h @ p["wh"] + p["b"]
        if cell == "rnn":
            h = np.tanh(a)
        else:
            i, f, o, g = np.split(a, 4, axis=1)
            c = sigmoid(f) * c + sigmoid(i) * np.tanh(g)
            h = sigmoid(o) * np.tanh(c)
        out.append(h)
    return np.stack(out, axis=1)


def reference_caption_loss(cell, p, features, captions, null):
    """The course's CaptioningRNN.loss forward pass, in NumPy."""
    x = p["embed"]["w"][captions[:, :-1]]
    h = reference_hidden(cell, p["cell"], x, features @ p["proj"]["w"] + p["proj"]["b"])
    scores = h @ p["vocab"]["w"] + p["vocab"]["b"]
    log_p = (
        scores
        - np.log(np.exp(scores - scores.max(-1, keepdims=True)).sum(-1, keepdims=True))
        - scores.max(-1, keepdims=True)
    )
    y = captions[:, 1:]
    picked = np.take_along_axis(log_p, y[..., None], axis=-1)[..., 0]
    return -(picked * (y != null)).sum() / len(captions)


cells = st.sampled_from(["rnn", "lstm"])
WORDS = {"<NULL>": 0, "<START>": 1, "<END>": 2, "cat": 3, "dog": 4}


@settings(max_examples=20, deadline=None)
@given(cells, st.integers(1, 4), st.integers(1, 5), st.integers(0, 2**32 - 1))
def test_captioning_loss_is_the_courses(cell, n, t, seed):
    rng = np.random.default_rng(seed)
    model = fn.nets.captioning_rnn(WORDS, input_dim=3, wordvec_dim=4, hidden_dim=5, cell_type=cell)
    params = model.init_params(rng, np.float64)
    features, captions = rng.standard_normal((n, 3)), rng.integers(len(WORDS), size=(n, t + 1))
    loss, grads = model.loss(params, features, captions)
    expected = reference_caption_loss(cell, params, features, captions, model.null)
    assert loss == pytest.approx(expected, rel=1e-12, abs=1e-12)  # the same float64 operations, reordered
    assert tree_map(np.shape, grads) == tree_map(np.shape, params)


def test_captioning_loss_ignores_the_null_steps():
    rng = np.random.default_rng(0)
    model = fn.nets.captioning_rnn(WORDS, 3, 4, 5, "lstm")
    params = model.init_params(rng, np.float64)
    features = rng.standard_normal((2, 3))
    short = np.array([[1, 3, 2, 0, 0], [1, 4, 4, 2, 0]])
    loss, grads = model.loss(params, features, short)
    shorter_loss, shorter_grads = model.loss(params, features, short[:, :4])
    # the last step is NULL in both captions: it adds nothing to the loss, and its scores get no gradient
    assert loss == pytest.approx(shorter_loss, rel=1e-12)  # a sum of the same terms, maybe reordered
    assert fn.tree.tree_allclose(grads, shorter_grads, rtol=1e-12, atol=1e-15)


@given(cells, st.integers(0, 2**32 - 1))
@settings(max_examples=10, deadline=None)
def test_greedy_sampling_feeds_back_the_best_word(cell, seed):
    rng = np.random.default_rng(seed)
    model = fn.nets.captioning_rnn(WORDS, 3, 4, 5, cell)
    params = model.init_params(rng, np.float64)
    features = rng.standard_normal((3, 3))
    captions = model.sample(params, features, max_length=6)
    assert captions.shape == (3, 6) and captions.dtype.kind == "i"
    # re-reading START + the sampled words, the scores at each step pick the next sampled word
    words = np.concatenate([np.full((3, 1), model.start), captions[:, :-1]], axis=1)
    scores, _ = model.net(params, (features, words))
    assert np.array_equal(scores.argmax(axis=-1), captions)


def test_captioning_rnn_refuses_what_it_cannot_build():
    with pytest.raises(ValueError, match="captioning_rnn: cell must be one of rnn, lstm, got 'gru'"):
        fn.nets.captioning_rnn(WORDS, cell_type="gru")
    with pytest.raises(ValueError, match="captioning_rnn: word_to_idx must hold '<NULL>'"):
        fn.nets.captioning_rnn({"cat": 0})
    model = fn.nets.captioning_rnn({"<NULL>": 0, "cat": 1}, 3, 4, 5)
    with pytest.raises(ValueError, match="CaptioningRNN.sample: the vocabulary has no '<START>' token"):
        model.sample(model.init_params(np.random.default_rng(0)), np.zeros((1, 3)))
    with pytest.raises(ValueError, match=r"CaptioningRNN.loss: captions must be \(N, T \+ 1\)"):
        model.loss(model.init_params(np.random.default_rng(0)), np.zeros((1, 3)), np.zeros((1, 1), dtype=int))


@settings(max_examples=20, deadline=None)
@given(cells, st.integers(1, 3), st.integers(1, 6), st.sampled_from([np.float32, np.float64]), st.integers(0, 99))
def test_char_rnn_scores_are_the_reference_models(cell, n, t, dtype, seed):
    rng = np.random.default_rng(seed)
    net = fn.nets.char_rnn(vocab_size=6, hidden_dim=5, embed_dim=3, cell=cell)
    out_shape, params = fn.init_params(net, rng, (t,), dtype)
    codes = rng.integers(6, size=(n, t))
    scores, vjp = net(params, codes)
    assert out_shape == (t, 6) and scores.shape == (n, t, 6) and scores.dtype == dtype
    p64 = tree_map(lambda a: a.astype(np.float64), params)
    h = reference_hidden(cell, p64["cell"], p64["embed"]["w"][codes], np.zeros((n, 5)))
    expected = h @ p64["out"]["w"] + p64["out"]["b"]
    # float32: a few roundings per operation over a handful of terms, on values of order 1
    assert np.allclose(scores, expected, rtol=0, atol=1e-12 if dtype == np.float64 else 1e-5)
    grads, dcodes = vjp(np.ones_like(scores))
    assert dcodes is None and tree_map(np.shape, grads) == tree_map(np.shape, params)


def test_char_loss_is_nats_per_character():
    rng = np.random.default_rng(0)
    scores, y = rng.standard_normal((3, 4, 5)), rng.integers(5, size=(3, 4))
    log_p = scores - np.log(np.exp(scores).sum(-1, keepdims=True))
    loss, vjp = fn.nets.char_loss(scores, y)
    assert loss == pytest.approx(-np.take_along_axis(log_p, y[..., None], -1).mean(), rel=1e-13)  # 12 terms
    expected = np.exp(log_p)
    np.put_along_axis(expected, y[..., None], np.take_along_axis(expected, y[..., None], -1) - 1, -1)
    assert np.allclose(vjp(), expected / 12, rtol=1e-12, atol=1e-15)


def test_sampling_is_reproducible_and_follows_the_prime():
    rng = np.random.default_rng(0)
    net = fn.nets.char_rnn(vocab_size=4, hidden_dim=6, embed_dim=2)
    _, params = fn.init_params(net, rng, (5,))
    prime = np.array([[0, 1, 2], [3, 3, 3]])
    a = fn.nets.sample_chars(net, params, prime, 20, np.random.default_rng(1))
    b = fn.nets.sample_chars(net, params, prime, 20, np.random.default_rng(1))
    assert a.shape == (2, 20) and np.array_equal(a, b) and 0 <= a.min() and a.max() < 4
    # a very low temperature is greedy: the argmax of the net's scores on the prime and what followed
    cold = fn.nets.sample_chars(net, params, prime, 4, np.random.default_rng(2), temperature=1e-6)
    scores, _ = net(params, np.concatenate([prime, cold[:, :-1]], axis=1))
    assert np.array_equal(scores[:, prime.shape[1] - 1 :].argmax(axis=-1), cold)


def test_char_rnn_and_sample_chars_refuse_bad_arguments():
    with pytest.raises(ValueError, match="char_rnn: hidden_dim must be"):
        fn.nets.char_rnn(5, hidden_dim=0)
    with pytest.raises(ValueError, match="char_rnn: cell must be one of rnn, lstm"):
        fn.nets.char_rnn(5, cell="gru")
    net = fn.nets.char_rnn(5, 4, 2)
    _, params = fn.init_params(net, np.random.default_rng(0), (3,))
    with pytest.raises(ValueError, match=r"sample_chars: prime must be codes \(N, P\) with P >= 1"):
        fn.nets.sample_chars(net, params, np.zeros((2, 0), dtype=int), 3, np.random.default_rng(0))
    with pytest.raises(ValueError, match=r"sample_chars: prime must be codes in \[0, 5\)"):
        fn.nets.sample_chars(net, params, np.array([[5]]), 3, np.random.default_rng(0))
    with pytest.raises(TypeError, match="sample_chars: net must be a fn.nets.char_rnn"):
        fn.nets.sample_chars(fn.relu, params, np.zeros((1, 1), dtype=int), 3, np.random.default_rng(0))  # type: ignore[arg-type]
