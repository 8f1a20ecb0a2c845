"""Word embedding: integer token indices ``(N, T)`` -> their vectors ``(N, T, D)``."""

from __future__ import annotations

from typing import Any

import numpy as np

from funcnn._checks import check_ndim, cotangent, dict_params, example_shape, index_array, int_at_least
from funcnn.core import VJP, Layer, Shape, WeightScale, layer_factory
from funcnn.tree import PyTree

NAME = "word_embedding"
# The course's CaptioningRNN: W_embed = randn(V, D) / 100.
EMBEDDING_STD = 0.01


def _word_embedding(params: PyTree, x: Any) -> tuple[np.ndarray, VJP]:
    """``out = w[x]``, the course's ``word_embedding_forward``.

    params: ``{"w": (V, D)}``; x: integer indices ``(N, T)`` in ``[0, V)`` (any shape works).
    Returns ``out (N, T, D)`` and ``vjp(dout) -> ({"w": dw}, None)``: indices get no cotangent.

    >>> out, vjp = fn.word_embedding({"w": np.eye(3)}, np.array([[2, 2]]))
    >>> out.shape, vjp(np.ones_like(out))[0]["w"][2]
    ((1, 2, 3), array([2., 2., 2.]))
    """
    (w,) = dict_params(NAME, params, ("w",)).values()
    check_ndim(NAME, "params['w']", w, 2, "(V, D)")
    idx = index_array(NAME, "x", x, w.shape[0])
    out = w[idx]

    def vjp(dout: np.ndarray) -> tuple[PyTree, None]:
        dout = cotangent(NAME, dout, out)
        dw = np.zeros_like(w)
        np.add.at(dw, idx.reshape(-1), dout.reshape(-1, w.shape[1]))
        return {"w": dw}, None

    return out, vjp  # type: ignore[return-value]


def _unknown_dim(shape: Shape) -> Shape:
    example_shape(NAME, shape, None, "(T,)")
    raise ValueError(f"{NAME}: its vector size D comes from params['w']; use fn.embedding(vocab, dim)")


word_embedding = Layer(_word_embedding, NAME, param_keys=("w",), out_shape=_unknown_dim, op="word_embedding")


@layer_factory
def embedding(vocab: int, dim: int) -> Layer:
    """:data:`word_embedding` with its sizes, for :func:`funcnn.init_params`: params ``{"w": (vocab, dim)}``
    drawn from ``normal(0, 0.01)`` (the course's ``randn / 100``; a number ``weight_scale`` replaces 0.01).
    Input shape ``(T,)`` (integers) -> ``(T, dim)``.

    Args:
        vocab: V, the number of words (integer inputs lie in ``[0, V)``).
        dim: D, the size of each word vector.

    Returns:
        A word-embedding layer that knows its sizes, for :func:`funcnn.init_params`: integer x ``(N, T)`` -> ``(N,
            T, D)``.

    >>> fn.init_params(fn.embedding(10, 4), np.random.default_rng(0), (7,))[1]["w"].shape
    (10, 4)
    """
    name = f"word_embedding({vocab}, {dim})"
    vocab, dim = int_at_least(name, "vocab", vocab, 1), int_at_least(name, "dim", dim, 1)

    def out_shape(shape: Shape) -> Shape:
        return (*example_shape(name, shape, None, "(T,)"), dim)

    def init(
        rng: np.random.Generator, shape: Shape, dtype: np.dtype, weight_scale: WeightScale
    ) -> tuple[Shape, PyTree]:
        if weight_scale != "he" and (isinstance(weight_scale, str) or not weight_scale > 0):
            raise ValueError(f"{name}: weight_scale must be 'he' or a positive number, got {weight_scale!r}")
        std = EMBEDDING_STD if weight_scale == "he" else float(weight_scale)
        return out_shape(shape), {"w": (std * rng.standard_normal((vocab, dim))).astype(dtype)}

    def apply(params: PyTree, x: Any) -> tuple[np.ndarray, VJP]:
        w = params.get("w") if isinstance(params, dict) else None
        if w is not None and np.shape(w) != (vocab, dim):
            raise ValueError(
                f"{name}: params['w'] has shape {np.shape(w)}, but the layer was declared ({vocab}, {dim})"
            )
        return _word_embedding(params, x)

    hparams = {"vocab": vocab, "dim": dim}
    return Layer(
        apply,
        name,
        param_keys=("w",),
        init=init,
        out_shape=out_shape,
        op="word_embedding",
        hparams=hparams,
    )
