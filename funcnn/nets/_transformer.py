"""Transformer nets: the course's CaptioningTransformer (assignment 3) with greedy sampling, and a small
decoder-only character model (pre-norm causal encoder layers, as in GPT) that the text job can train."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from funcnn._checks import int_at_least, number_at_least
from funcnn.core import VJP, Layer, Shape, WeightScale
from funcnn.layers import (
    affine,
    causal_mask,
    positional_encoding,
    temporal_affine,
    temporal_layer_norm,
    transformer_decoder_layer,
    transformer_encoder_layer,
    word_embedding,
)
from funcnn.losses import temporal_softmax_loss
from funcnn.tree import PyTree

# The course's CaptioningTransformer._init_weights: Linear and Embedding weights from N(0, 0.02^2).
INIT_STD = 0.02


def _normal(rng: np.random.Generator, shape: tuple[int, ...], std: float, dtype: np.dtype) -> np.ndarray:
    return (rng.standard_normal(shape) * std).astype(dtype)


def _affine_params(rng: np.random.Generator, d: int, m: int, std: float, dtype: np.dtype) -> dict[str, np.ndarray]:
    return {"w": _normal(rng, (d, m), std, dtype), "b": np.zeros(m, dtype)}


def _stack(layers: list[Layer], params: PyTree, x: np.ndarray, extra: tuple[Any, ...]) -> tuple[np.ndarray, Any]:
    """``x`` through ``layers`` (each fed ``(x, *extra)`` when extra is given); returns y and the vjps."""
    vjps = []
    for layer, p in zip(layers, params):
        x, vjp = layer(p, (x, *extra) if extra else x)  # type: ignore[arg-type]  # a tuple input
        vjps.append(vjp)
    return x, vjps


def _check_sizes(who: str, sizes: Mapping[str, int], width: str) -> None:
    """Every size an int >= 1, and ``num_heads`` dividing the width."""
    for name, value in sizes.items():
        int_at_least(who, name, value, 1)
    if sizes[width] % sizes["num_heads"]:
        raise ValueError(f"{who}: num_heads={sizes['num_heads']} must divide {width}={sizes[width]}")


@dataclass(frozen=True)
class CaptioningTransformer:
    """A captioning model from :func:`captioning_transformer`. ``net`` is its layer: ``(features (N, D),
    captions_in (N, T))`` -> word scores ``(N, T, V)``; params ``{"visual_projection": {"w", "b"}, "embedding":
    {"w"}, "layers": (decoder layer params, ...), "output": {"w", "b"}}``. ``null``, ``start``, ``end``: the
    special tokens' indices."""

    net: Layer
    null: int
    start: int | None
    end: int | None
    input_dim: int
    wordvec_dim: int
    num_heads: int
    num_layers: int
    dim_feedforward: int
    max_length: int
    vocab_size: int

    def init_params(self, rng: np.random.Generator, dtype: Any = np.float32) -> PyTree:
        """Params drawn as the course draws them: affine and embedding weights N(0, 0.02^2), biases 0,
        layer norms gamma 1 and beta 0 (the attention projections too are N(0, 0.02^2))."""
        dt, w = np.dtype(dtype), self.wordvec_dim
        layer = transformer_decoder_layer(self.num_heads, self.dim_feedforward)
        assert layer.init is not None
        shape: Any = ((1, w), (1, w))  # tgt and memory: a tuple input
        layers = [layer.init(rng, shape, dt, INIT_STD)[1] for _ in range(self.num_layers)]
        return {
            "visual_projection": _affine_params(rng, self.input_dim, w, INIT_STD, dt),
            "embedding": {"w": _normal(rng, (self.vocab_size, w), INIT_STD, dt)},
            "layers": tuple(layers),
            "output": _affine_params(rng, w, self.vocab_size, INIT_STD, dt),
        }

    def loss(self, params: PyTree, features: np.ndarray, captions: np.ndarray) -> tuple[float, PyTree]:
        """The course's loss: ``net`` reads ``captions[:, :-1]`` and is scored on ``captions[:, 1:]``, every
        step but the NULL ones, summed over steps and divided by N. Returns ``(loss, grads)``, the ``<NULL>``
        embedding's gradient zeroed (the course's ``padding_idx``)."""
        captions = np.asarray(captions)
        if captions.ndim != 2 or captions.shape[1] < 2:
            raise ValueError(
                f"CaptioningTransformer.loss: captions must be (N, T + 1) with T >= 1, got {captions.shape}"
            )
        target = captions[:, 1:]
        scores, vjp = self.net(params, (features, captions[:, :-1]))  # type: ignore[arg-type]
        value, loss_vjp = temporal_softmax_loss(scores, target, target != self.null)
        grads, _ = vjp(loss_vjp(1.0))
        grads["embedding"]["w"][self.null] = 0  # the course's padding_idx: the <NULL> vector is not trained
        return float(value), grads

    def sample(self, params: PyTree, features: np.ndarray, max_length: int = 30) -> np.ndarray:
        """Greedy captions ``(N, max_length)`` ints, as the course's ``sample``: from the START token, each
        step runs the net on the caption so far and appends the word of highest score at its last step."""
        if self.start is None:
            raise ValueError("CaptioningTransformer.sample: the vocabulary has no '<START>' token to begin with")
        int_at_least("CaptioningTransformer.sample", "max_length", max_length, 1)
        n = len(features)
        partial = np.full((n, 1), self.start, dtype=np.int64)
        for _ in range(max_length):
            scores, _ = self.net(params, (features, partial[:, -self.max_length :]))  # type: ignore[arg-type]
            partial = np.concatenate([partial, scores[:, -1].argmax(axis=1)[:, None]], axis=1)
        return partial[:, 1:]


def captioning_transformer(
    word_to_idx: Mapping[str, int],
    input_dim: int,
    wordvec_dim: int,
    num_heads: int = 4,
    num_layers: int = 2,
    max_length: int = 50,
    dim_feedforward: int = 2048,
) -> CaptioningTransformer:
    """The course's ``CaptioningTransformer(word_to_idx, input_dim, wordvec_dim, num_heads, num_layers,
    max_length)``: features projected to one memory vector ``(N, 1, W)``, embedded words plus the sin/cos
    positional encoding, ``num_layers`` post-norm :func:`funcnn.transformer_decoder_layer` with a causal
    mask, an affine map to word scores. Dropout is off (the course's 0.1 needs a moded net). ``net``'s vjp is
    the exact gradient; ``loss`` then zeroes the ``<NULL>`` embedding's, as the course's ``padding_idx`` does.

    Args:
        word_to_idx: the vocabulary, word -> index, with ``'<NULL>'`` (and ``'<START>'`` to sample).
        input_dim: D, the size of an image's features.
        wordvec_dim: W, the width of the words' vectors and of the decoder.
        num_heads: the attentions' heads; they must divide W.
        num_layers: the number of decoder layers.
        max_length: the longest caption the positional encoding covers.
        dim_feedforward: the decoder layers' feed-forward width (the course's 2048).

    Returns:
        A :class:`CaptioningTransformer`: its ``net``, ``init_params``, ``loss`` and ``sample``.

    >>> words = {"<NULL>": 0, "<START>": 1, "<END>": 2, "cat": 3}
    >>> model = fn.nets.captioning_transformer(words, input_dim=6, wordvec_dim=4, num_heads=2, dim_feedforward=8)
    >>> params = model.init_params(np.random.default_rng(0), np.float64)
    >>> loss, grads = model.loss(params, np.ones((2, 6)), np.array([[1, 3, 2, 0], [1, 3, 3, 2]]))
    >>> grads["layers"][1]["cross_attn"]["query"]["w"].shape, model.sample(params, np.ones((2, 6)), 3).shape
    ((4, 4), (2, 3))
    """
    who = "captioning_transformer"
    if "<NULL>" not in word_to_idx:
        raise ValueError(f"{who}: word_to_idx must hold '<NULL>' (the padding, scored by no loss)")
    sizes = {"input_dim": input_dim, "wordvec_dim": wordvec_dim, "num_heads": num_heads, "num_layers": num_layers,
             "max_length": max_length, "dim_feedforward": dim_feedforward}  # fmt: skip
    _check_sizes(who, sizes, "wordvec_dim")
    null = word_to_idx["<NULL>"]
    decoders = [transformer_decoder_layer(num_heads, dim_feedforward) for _ in range(num_layers)]
    encode = positional_encoding(max_length)

    def apply(params: PyTree, inputs: Any) -> tuple[np.ndarray, VJP]:
        features, captions = inputs
        embedded, embed_vjp = word_embedding(params["embedding"], captions)
        h, _ = encode((), embedded)
        memory, proj_vjp = affine(params["visual_projection"], features)
        h, vjps = _stack(decoders, params["layers"], h, (memory[:, None], causal_mask(h.shape[1])))
        scores, out_vjp = temporal_affine(params["output"], h)

        def vjp(dscores: np.ndarray) -> tuple[PyTree, Any]:
            doutput, dh = out_vjp(dscores)
            dmemory, layers = np.zeros_like(memory), []
            for layer_vjp in reversed(vjps):
                g, (dh, dm, _) = layer_vjp(dh)
                dmemory += dm[:, 0]
                layers.append(g)
            dproj, dfeatures = proj_vjp(dmemory)
            grads = {"visual_projection": dproj, "embedding": embed_vjp(dh)[0], "layers": tuple(reversed(layers)),
                     "output": doutput}  # fmt: skip
            return grads, (dfeatures, None)

        return scores, vjp

    name = f"captioning_transformer({num_layers}x{wordvec_dim})"
    net = Layer(apply, name, param_keys=None, op="captioning_transformer", hparams=sizes)
    return CaptioningTransformer(
        net, null, word_to_idx.get("<START>"), word_to_idx.get("<END>"), input_dim, wordvec_dim, num_heads,
        num_layers, dim_feedforward, max_length, len(word_to_idx),
    )  # fmt: skip


def char_transformer(
    vocab_size: int, dim: int = 128, num_heads: int = 4, num_layers: int = 2, dim_feedforward: int | None = None,
    max_len: int = 1024,
) -> Layer:  # fmt: skip
    """A decoder-only character model: codes ``(N, T)`` -> scores ``(N, T, vocab_size)`` of each next
    character, each position seeing only those before it. Embedding ``(V, dim)`` plus the sin/cos positional
    encoding, ``num_layers`` pre-norm causal :func:`funcnn.transformer_encoder_layer` (feed-forward
    ``dim_feedforward``, default ``4 * dim``), a final :func:`funcnn.temporal_layer_norm`, an affine map to
    scores. params (from :func:`funcnn.init_params` with input shape ``(T,)``, ``T <= max_len``):
    ``{"embed": {"w"}, "layers": (...), "norm": {"gamma", "beta"}, "out": {"w", "b"}}``. Train it with
    :func:`funcnn.nets.char_loss`; :func:`funcnn.nets.sample_chars` samples from it.

    Args:
        vocab_size: V, the number of characters.
        dim: E, the width of the model.
        num_heads: the attention's heads; they must divide E.
        num_layers: the number of encoder layers.
        dim_feedforward: the feed-forward width (default ``4 * dim``).
        max_len: the longest sequence it takes.

    Returns:
        The network, a layer ``(N, T)`` codes -> ``(N, T, V)`` scores.

    >>> net = fn.nets.char_transformer(vocab_size=5, dim=8, num_heads=2, num_layers=1)
    >>> out, params = fn.init_params(net, np.random.default_rng(0), (7,))
    >>> out, params["layers"][0]["ffn1"]["w"].shape
    ((7, 5), (8, 32))
    """
    who = "char_transformer"
    ff = 4 * dim if dim_feedforward is None else dim_feedforward
    sizes = {"vocab_size": vocab_size, "dim": dim, "num_heads": num_heads, "num_layers": num_layers,
             "dim_feedforward": ff, "max_len": max_len}  # fmt: skip
    _check_sizes(who, sizes, "dim")
    blocks = [transformer_encoder_layer(num_heads, ff, norm_first=True, causal=True) for _ in range(num_layers)]
    encode, final_norm = positional_encoding(max_len), temporal_layer_norm()

    def apply(params: PyTree, codes: np.ndarray) -> tuple[np.ndarray, VJP]:
        embedded, embed_vjp = word_embedding(params["embed"], codes)
        h, _ = encode((), embedded)
        h, vjps = _stack(blocks, params["layers"], h, ())
        normed, norm_vjp = final_norm(params["norm"], h)
        scores, out_vjp = temporal_affine(params["out"], normed)

        def vjp(dscores: np.ndarray) -> tuple[PyTree, Any]:
            dout, dh = out_vjp(dscores)
            dnorm, dh = norm_vjp(dh)
            layers = []
            for block_vjp in reversed(vjps):
                g, dh = block_vjp(dh)
                layers.append(g)
            grads = {"embed": embed_vjp(dh)[0], "layers": tuple(reversed(layers)), "norm": dnorm, "out": dout}
            return grads, None

        return scores, vjp

    def init(
        rng: np.random.Generator, shape: Shape, dtype: np.dtype, weight_scale: WeightScale
    ) -> tuple[Shape, PyTree]:
        (t,) = shape
        if t > max_len:
            raise ValueError(f"{who}: sequences of {t} characters are longer than max_len={max_len}")
        layers = tuple(block.init(rng, (t, dim), dtype, weight_scale)[1] for block in blocks if block.init)
        params = {
            "embed": {"w": _normal(rng, (vocab_size, dim), 1.0, dtype)},
            "layers": layers,
            "norm": {"gamma": np.ones(dim, dtype), "beta": np.zeros(dim, dtype)},
            "out": _affine_params(rng, dim, vocab_size, dim**-0.5, dtype),
        }
        return (t, vocab_size), params

    return Layer(
        apply, f"char_transformer({num_layers}x{dim}, {num_heads} heads)", param_keys=None, init=init,
        out_shape=lambda shape: (*shape, vocab_size), op="char_transformer", hparams=sizes,
        doc=char_transformer.__doc__,
    )  # fmt: skip


def sample_transformer_chars(
    net: Layer, params: PyTree, prime: np.ndarray, length: int, rng: np.random.Generator, temperature: float = 1.0
) -> np.ndarray:
    """``length`` codes drawn one at a time from a :func:`char_transformer` after ``prime`` (codes ``(N, P)``):
    each step runs the net on the last ``max_len`` codes and draws from softmax(scores / temperature) at the
    last position. Returns ``(N, length)`` ints.

    Args:
        net: a network from :func:`char_transformer`.
        params: its params.
        prime: the codes it reads first, ``(N, P)`` with ``P >= 1``.
        length: how many codes to draw.
        rng: the generator the codes are drawn from.
        temperature: the softmax's temperature (> 0).

    Returns:
        The drawn codes ``(N, length)``.
    """
    int_at_least("sample_chars", "length", length, 0)
    temperature = number_at_least("sample_chars", "temperature", temperature, 0, strict=True)
    context, window = np.asarray(prime), int(net.hparams["max_len"])
    drawn = np.empty((context.shape[0], length), dtype=np.int64)
    for t in range(length):
        scores, _ = net(params, context[:, -window:])
        last = scores[:, -1].astype(np.float64) / temperature
        p = np.exp(last - last.max(axis=1, keepdims=True))
        p /= p.sum(axis=1, keepdims=True)
        drawn[:, t] = (p.cumsum(axis=1) < rng.random((len(p), 1))).sum(axis=1).clip(max=p.shape[1] - 1)
        context = np.concatenate([context, drawn[:, t : t + 1]], axis=1)
    return drawn
