"""A character-level language model: embedding - LSTM (or RNN) from a zero state - per-step affine; its loss
in nats per character; and sampling from it one character at a time."""

from __future__ import annotations

from typing import Any

import numpy as np

from funcnn._checks import int_at_least, number_at_least
from funcnn.core import VJP, Layer, Shape, WeightScale, layer_factory
from funcnn.losses import LossVJP, temporal_softmax_loss
from funcnn.nets._cells import cell_params, check_cell, normal, start, step, words_to_scores
from funcnn.nets._transformer import sample_transformer_chars
from funcnn.tree import PyTree


@layer_factory
def char_rnn(vocab_size: int, hidden_dim: int = 128, embed_dim: int = 32, cell: str = "lstm") -> Layer:
    """Codes ``(N, T)`` (ints in ``[0, vocab_size)``) -> scores ``(N, T, vocab_size)``: at each step, the
    scores of the next character. The cell starts from zero (h0 = 0, and c0 = 0 for an LSTM).

    params (from :func:`funcnn.init_params` with input shape ``(T,)``): ``{"embed": {"w": (V, E)}, "cell":
    {"wx", "wh", "b"}, "out": {"w": (H, V), "b": (V,)}}``, drawn as the course's CaptioningRNN draws them,
    with an LSTM's forget-gate bias at 1 (it starts by remembering). The vjp's input cotangent is None
    (integer codes). Train it with :func:`char_loss`; sample with :func:`sample_chars`.

    Args:
        vocab_size: V, the number of characters.
        hidden_dim: H, the size of the hidden state.
        embed_dim: E, the size of each character's vector.
        cell: ``"lstm"`` or ``"rnn"``.

    Returns:
        The network, a layer ``(N, T)`` codes -> ``(N, T, V)`` scores.

    >>> net = fn.nets.char_rnn(vocab_size=5, hidden_dim=8, embed_dim=3)
    >>> out, params = fn.init_params(net, np.random.default_rng(0), (7,))
    >>> out, params["cell"]["wx"].shape
    ((7, 5), (3, 32))
    """
    for name, value in (("vocab_size", vocab_size), ("hidden_dim", hidden_dim), ("embed_dim", embed_dim)):
        int_at_least("char_rnn", name, value, 1)
    sequence, _ = check_cell("char_rnn", cell)

    def apply(params: PyTree, codes: np.ndarray) -> tuple[np.ndarray, VJP]:
        h0 = np.zeros((len(codes), params["cell"]["wh"].shape[0]), params["embed"]["w"].dtype)
        scores, decoder_vjp = words_to_scores(sequence, params, codes, h0)

        def vjp(dscores: np.ndarray) -> tuple[PyTree, Any]:
            return decoder_vjp(dscores)[0], None

        return scores, vjp

    def init(
        rng: np.random.Generator, shape: Shape, dtype: np.dtype, weight_scale: WeightScale
    ) -> tuple[Shape, PyTree]:
        cell_ = cell_params(rng, cell, embed_dim, hidden_dim, dtype)
        if cell == "lstm":
            cell_["b"][hidden_dim : 2 * hidden_dim] = 1  # gates i, f, o, g: f starts open
        params = {
            "embed": {"w": normal(rng, (vocab_size, embed_dim), 1.0, dtype)},
            "cell": cell_,
            "out": {
                "w": normal(rng, (hidden_dim, vocab_size), hidden_dim**-0.5, dtype),
                "b": np.zeros(vocab_size, dtype),
            },
        }
        return (*shape, vocab_size), params

    sizes = {"vocab_size": vocab_size, "hidden_dim": hidden_dim, "embed_dim": embed_dim, "cell": cell}
    return Layer(
        apply, f"char_rnn({cell}, {hidden_dim})", param_keys=None, init=init,
        out_shape=lambda shape: (*shape, vocab_size), op="char_rnn", hparams=sizes,
    )  # fmt: skip


def char_loss(scores: np.ndarray, y: np.ndarray) -> tuple[np.floating, LossVJP]:
    """Mean cross-entropy per character, in nats: :func:`funcnn.temporal_softmax_loss` with every step counted,
    divided by the T steps (the course's loss divides by N only). scores ``(N, T, V)``, y ``(N, T)`` ints;
    returns the loss and ``vjp(dloss=1.0) -> dscores``. A :func:`funcnn.fit` loss.

    Args:
        scores: scores ``(N, T, V)``.
        y: the next characters ``(N, T)``.

    Returns:
        ``(loss, vjp)``: the mean cross-entropy in nats per character.

    >>> loss, _ = fn.nets.char_loss(np.zeros((2, 3, 4)), np.zeros((2, 3), dtype=int))
    >>> round(float(loss), 4)                                  # log 4
    1.3863
    """
    steps = np.shape(y)[1] if np.ndim(y) == 2 else 1
    loss, vjp = temporal_softmax_loss(scores, y, np.ones(np.shape(y), dtype=bool))
    per_char = np.asarray(scores).dtype.type(loss / steps)

    def char_vjp(dloss: Any = 1.0) -> np.ndarray:
        dscores: np.ndarray = vjp(dloss) / steps
        return dscores

    return per_char, char_vjp


def sample_chars(
    net: Layer,
    params: PyTree,
    prime: np.ndarray,
    length: int,
    rng: np.random.Generator,
    temperature: float = 1.0,
) -> np.ndarray:
    """``length`` codes drawn one at a time from a :func:`char_rnn` after it has read ``prime`` (codes ``(N, P)``,
    P >= 1): each from softmax(scores / temperature) of the step before, fed back as the next input.
    Returns ``(N, length)`` ints. One step of the cell at a time: memory does not grow with ``length``.

    A :func:`char_transformer` is sampled by :func:`sample_transformer_chars`.

    Args:
        net: a network from :func:`char_rnn` (or :func:`char_transformer`).
        params: its params.
        prime: codes ``(N, P)`` to start from.
        length: how many characters to draw.
        rng: the generator they are drawn with.
        temperature: divides the scores before the softmax (lower: surer).

    Returns:
        The drawn codes ``(N, length)``.
    """
    if isinstance(net, Layer) and net.op == "char_transformer":
        return sample_transformer_chars(net, params, prime, length, rng, temperature)
    if not isinstance(net, Layer) or net.op != "char_rnn":
        raise TypeError(f"sample_chars: net must be a fn.nets.char_rnn, got {net.name}")
    prime = np.asarray(prime)
    if prime.ndim != 2 or prime.shape[1] < 1:
        raise ValueError(f"sample_chars: prime must be codes (N, P) with P >= 1, got shape {prime.shape}")
    vocab_size = net.hparams["vocab_size"]
    if prime.dtype.kind not in "iu" or prime.min() < 0 or prime.max() >= vocab_size:
        raise ValueError(
            f"sample_chars: prime must be codes in [0, {vocab_size}), got {prime.dtype} {prime.tolist()[:3]}"
        )
    int_at_least("sample_chars", "length", length, 0)
    temperature = number_at_least("sample_chars", "temperature", temperature, 0, strict=True)
    cell, embed, out = net.hparams["cell"], params["embed"]["w"], params["out"]
    state = start(cell, np.zeros((prime.shape[0], params["cell"]["wh"].shape[0]), embed.dtype))
    for t in range(prime.shape[1] - 1):
        state = step(cell, params["cell"], embed[prime[:, t]], state)
    codes, drawn = prime[:, -1], np.empty((prime.shape[0], length), dtype=np.int64)
    for t in range(length):
        state = step(cell, params["cell"], embed[codes], state)
        scores = (state[0] @ out["w"] + out["b"]).astype(np.float64) / temperature
        p = np.exp(scores - scores.max(axis=1, keepdims=True))
        p /= p.sum(axis=1, keepdims=True)
        codes = (p.cumsum(axis=1) < rng.random((len(p), 1))).sum(axis=1).clip(max=p.shape[1] - 1)
        drawn[:, t] = codes
    return drawn
