"""The course's CaptioningRNN (assignment 3): image features -> h0 by an affine layer, embedded words, an RNN
or LSTM, a per-step affine to word scores, the masked loss (no loss on the NULL token), greedy sampling."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from funcnn._checks import int_at_least
from funcnn.core import VJP, Layer
from funcnn.layers import affine
from funcnn.losses import temporal_softmax_loss
from funcnn.nets._cells import cell_params, check_cell, normal, start, step, words_to_scores
from funcnn.tree import PyTree


@dataclass(frozen=True)
class CaptioningRNN:
    """A captioning model from :func:`captioning_rnn`. ``net`` is its layer: ``(features (N, D), captions_in
    (N, T))`` -> word scores ``(N, T, V)``, params ``{"proj": {"w", "b"}, "embed": {"w"}, "cell": {"wx", "wh",
    "b"}, "vocab": {"w", "b"}}`` (the course's W_proj, b_proj; W_embed; Wx, Wh, b; W_vocab, b_vocab).
    ``null``, ``start``, ``end``: the special tokens' indices."""

    net: Layer
    null: int
    start: int | None
    end: int | None
    input_dim: int
    wordvec_dim: int
    hidden_dim: int
    vocab_size: int
    cell: str

    def init_params(self, rng: np.random.Generator, dtype: Any = np.float32) -> PyTree:
        """Params drawn as the course draws them: W_embed / 100, the others / sqrt(fan-in), biases 0."""
        dt = np.dtype(dtype)
        d, w, h, v = self.input_dim, self.wordvec_dim, self.hidden_dim, self.vocab_size
        return {
            "proj": {"w": normal(rng, (d, h), d**-0.5, dt), "b": np.zeros(h, dt)},
            "embed": {"w": normal(rng, (v, w), 0.01, dt)},
            "cell": cell_params(rng, self.cell, w, h, dt),
            "vocab": {"w": normal(rng, (h, v), h**-0.5, dt), "b": np.zeros(v, dt)},
        }

    def loss(self, params: PyTree, features: np.ndarray, captions: np.ndarray) -> tuple[float, PyTree]:
        """The course's ``loss(features, captions)``: ``net`` reads ``captions[:, :-1]`` and is scored on
        ``captions[:, 1:]``, every step but the NULL ones, summed over steps and divided by N. Returns
        ``(loss, grads)``, grads mirroring ``params``."""
        captions = np.asarray(captions)
        if captions.ndim != 2 or captions.shape[1] < 2:
            raise ValueError(f"CaptioningRNN.loss: captions must be (N, T + 1) with T >= 1, got {captions.shape}")
        target = captions[:, 1:]
        inputs: Any = (features, captions[:, :-1])  # a tuple input (the Layer type still names an array)
        scores, vjp = self.net(params, inputs)
        value, loss_vjp = temporal_softmax_loss(scores, target, target != self.null)
        grads, _ = vjp(loss_vjp(1.0))
        return float(value), grads

    def sample(self, params: PyTree, features: np.ndarray, max_length: int = 30) -> np.ndarray:
        """Greedy captions ``(N, max_length)`` ints, as the course's ``sample``: from h0 = the features'
        projection and the START token, each step feeds back the word of highest score."""
        if self.start is None:
            raise ValueError("CaptioningRNN.sample: the vocabulary has no '<START>' token to begin with")
        int_at_least("CaptioningRNN.sample", "max_length", max_length, 1)
        h0, _ = affine(params["proj"], features)
        state = start(self.cell, h0)
        words = np.full(len(h0), self.start, dtype=np.int64)
        captions = np.full((len(h0), max_length), self.null, dtype=np.int64)
        for t in range(max_length):
            state = step(self.cell, params["cell"], params["embed"]["w"][words], state)
            words = (state[0] @ params["vocab"]["w"] + params["vocab"]["b"]).argmax(axis=1)
            captions[:, t] = words
        return captions


def captioning_rnn(
    word_to_idx: Mapping[str, int],
    input_dim: int = 512,
    wordvec_dim: int = 128,
    hidden_dim: int = 128,
    cell_type: str = "rnn",
) -> CaptioningRNN:
    """The course's ``CaptioningRNN(word_to_idx, input_dim, wordvec_dim, hidden_dim, cell_type)``, its
    vocabulary of ``len(word_to_idx)`` words with ``'<NULL>'`` among them, cell ``"rnn"`` or ``"lstm"``.

    Args:
        word_to_idx: the vocabulary, with ``<NULL>``, ``<START>`` and ``<END>``.
        input_dim: D, the size of the image features.
        wordvec_dim: W, the size of the word vectors.
        hidden_dim: H, the size of the hidden state.
        cell_type: ``"rnn"`` or ``"lstm"``.

    Returns:
        A :class:`CaptioningRNN`: ``init_params``, ``loss``, ``sample`` and its network ``net``.

    >>> model = fn.nets.captioning_rnn({"<NULL>": 0, "<START>": 1, "<END>": 2, "cat": 3}, 6, 5, 4, "lstm")
    >>> params = model.init_params(np.random.default_rng(0), np.float64)
    >>> loss, grads = model.loss(params, np.ones((2, 6)), np.array([[1, 3, 2, 0], [1, 3, 3, 2]]))
    >>> grads["cell"]["wx"].shape, model.sample(params, np.ones((2, 6)), max_length=3).shape
    ((5, 16), (2, 3))
    """
    sequence, _ = check_cell("captioning_rnn", cell_type)
    if "<NULL>" not in word_to_idx:
        raise ValueError("captioning_rnn: word_to_idx must hold '<NULL>' (the padding, scored by no loss)")
    for name, value in (("input_dim", input_dim), ("wordvec_dim", wordvec_dim), ("hidden_dim", hidden_dim)):
        int_at_least("captioning_rnn", name, value, 1)

    def apply(params: PyTree, inputs: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, VJP]:
        features, captions_in = inputs
        h0, proj_vjp = affine(params["proj"], features)
        decoder = {"embed": params["embed"], "cell": params["cell"], "out": params["vocab"]}
        scores, decoder_vjp = words_to_scores(sequence, decoder, captions_in, h0)

        def vjp(dscores: np.ndarray) -> tuple[PyTree, Any]:
            d, dh0 = decoder_vjp(dscores)
            dproj, dfeatures = proj_vjp(dh0)
            return {"proj": dproj, "embed": d["embed"], "cell": d["cell"], "vocab": d["out"]}, (dfeatures, None)

        return scores, vjp

    vocab_size = len(word_to_idx)
    sizes = {"input_dim": input_dim, "wordvec_dim": wordvec_dim, "hidden_dim": hidden_dim, "cell": cell_type}
    name = f"captioning_rnn({cell_type}, {hidden_dim})"
    net = Layer(apply, name, param_keys=None, op="captioning_rnn", hparams=sizes)  # type: ignore[arg-type]
    return CaptioningRNN(
        net, word_to_idx["<NULL>"], word_to_idx.get("<START>"), word_to_idx.get("<END>"),
        input_dim, wordvec_dim, hidden_dim, vocab_size, cell_type,
    )  # fmt: skip
