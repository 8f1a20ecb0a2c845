"""Transformer encoder and decoder layers, PyTorch's ``nn.TransformerEncoderLayer`` and
``nn.TransformerDecoderLayer`` with ``batch_first=True``: post-norm (or pre-norm with ``norm_first``),
ReLU feed-forward, layer norms over the last axis with eps 1e-5.

Encoder, post-norm: ``x = norm1(x + drop(self_attn(x)))``, ``y = norm2(x + drop(ffn(x)))``; pre-norm:
``x = x + drop(self_attn(norm1(x)))``, ``y = x + drop(ffn(norm2(x)))``. The decoder has a cross-attention
sub-layer on ``memory`` between the two (``norm2``; the feed-forward's norm is ``norm3``).
``ffn(x) = ffn2(drop(relu(ffn1(x))))``. Built from :data:`funcnn.relu`, :func:`funcnn.dropout` and the
attention and norm cores, each vjp called in reverse order.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from funcnn._checks import (
    cotangent,
    example_shape,
    float_array,
    fraction,
    int_at_least,
    like,
    number_at_least,
    same_dtype,
    tuple_input,
    wrong_keys,
)
from funcnn.core import VJP, Layer, WeightScale
from funcnn.layers._activations import relu
from funcnn.layers._attention import (
    attention_core,
    attention_params,
    causal_mask,
    checked_mask,
    maybe_moded,
    projection_params,
)
from funcnn.layers._dropout import dropout as dropout_layer
from funcnn.layers._norms import gamma_beta
from funcnn.layers._temporal_norm import norm_core
from funcnn.layers._weights import weight_std, weights_and_bias
from funcnn.tree import PyTree

EPS = 1e-5
# a sub-layer's back(dy) -> (its params' gradients, dx, dmemory or None)
SubBack = Callable[[np.ndarray], tuple[dict[str, Any], np.ndarray, Any]]
Block = Callable[[np.ndarray], tuple[np.ndarray, SubBack]]


class _Context:
    """What one call's sub-layers share: params, mode, dropout and the random generator."""

    def __init__(
        self, name: str, params: dict[str, Any], heads: int, drop: float, train: bool, rng: Any, recompute: bool
    ) -> None:
        self.name, self.params, self.heads, self.recompute = name, params, heads, recompute
        self.train = train and drop > 0
        if self.train and not isinstance(rng, np.random.Generator):
            raise ValueError(f"{name}: training draws dropout masks, so it needs rng=np.random.default_rng(seed)")
        self.rng, self.drop_prob = rng, drop
        self.drop = dropout_layer(drop) if self.train else None

    def dropout(self, x: np.ndarray) -> tuple[np.ndarray, Callable[[np.ndarray], np.ndarray]]:
        if self.drop is None:
            return x, lambda d: d
        y, vjp, _ = self.drop.run((), x, train=True, rng=self.rng)
        return y, lambda d: vjp(d)[1]

    def attention(self, key: str, memory: np.ndarray | None, mask: np.ndarray | None) -> Block:
        def block(h: np.ndarray) -> tuple[np.ndarray, SubBack]:
            kv = h if memory is None else memory
            drop = self.drop_prob if self.train else 0.0
            y, back = attention_core(self.params[key], h, kv, kv, mask, self.heads, drop, self.rng, self.recompute)

            def sub_back(dy: np.ndarray) -> tuple[dict[str, Any], np.ndarray, Any]:
                grads, dh, dmemory, _ = back(dy)
                return {key: grads}, dh, dmemory

            return y, sub_back

        return block

    def feed_forward(self, h: np.ndarray) -> tuple[np.ndarray, SubBack]:
        """``ffn2(drop(relu(ffn1(h))))`` on the rows of ``h``. Not by ``temporal_affine``, whose vjp also keeps
        its output: here only h and the ReLU's output (F wide) stay for the backward pass."""
        (w1, b1), (w2, b2) = (self.params[key].values() for key in ("ffn1", "ffn2"))
        h2 = h.reshape(-1, h.shape[-1])
        r, relu_vjp = relu((), h2 @ w1 + b1)
        r, drop_back = self.dropout(r)
        f = (r @ w2 + b2).reshape(h.shape)

        def sub_back(df: np.ndarray) -> tuple[dict[str, Any], np.ndarray, Any]:
            df2 = df.reshape(h2.shape)
            _, da = relu_vjp(drop_back(df2 @ w2.T))
            grads = {"ffn1": {"w": (da.T @ h2).T, "b": da.sum(axis=0)}, "ffn2": {"w": r.T @ df2, "b": df2.sum(axis=0)}}
            return grads, (da @ w1.T).reshape(h.shape), None

        return f, sub_back

    def sublayer(
        self, norm: str, block: Block, x: np.ndarray, norm_first: bool, eps: float
    ) -> tuple[np.ndarray, SubBack]:
        """``norm(x + drop(block(x)))``, or ``x + drop(block(norm(x)))`` with ``norm_first``."""
        gamma, beta = self.params[norm]["gamma"], self.params[norm]["beta"]
        if norm_first:
            h, norm_back = norm_core(gamma, beta, x, eps)
            f, block_back = block(h)
            f, drop_back = self.dropout(f)

            def pre_back(dy: np.ndarray) -> tuple[dict[str, Any], np.ndarray, Any]:
                grads, dh, dmemory = block_back(drop_back(dy))
                grads[norm], dx = norm_back(dh)
                return grads, dx + dy, dmemory

            return x + f, pre_back
        f, block_back = block(x)
        f, drop_back = self.dropout(f)
        y, norm_back = norm_core(gamma, beta, x + f, eps)

        def post_back(dy: np.ndarray) -> tuple[dict[str, Any], np.ndarray, Any]:
            norm_grads, dh = norm_back(dy)
            grads, dx, dmemory = block_back(drop_back(dh))
            grads[norm] = norm_grads
            return grads, dx + dh, dmemory

        return y, post_back


def _checked_params(name: str, params: PyTree, keys: tuple[str, ...], x: np.ndarray) -> dict[str, Any]:
    """The layer's params: a dict with ``keys``; attention ``(E, E)``, norms ``(E,)``, ``ffn1`` ``(E, F)``,
    ``ffn2`` ``(F, E)``, all of x's dtype."""
    if not isinstance(params, dict) or set(params) != set(keys):
        raise wrong_keys(name, "params", list(keys), params)
    e = x.shape[2]
    checked: dict[str, Any] = {}
    for key in keys:
        if key.endswith("attn"):
            checked[key] = attention_params(f"{name} {key}", params[key], x.dtype, e)
        elif key.startswith("norm"):
            gamma, beta = gamma_beta(f"{name} {key}", params[key], x, x.shape[-1:])
            checked[key] = {"gamma": gamma, "beta": beta}
    for key, rows, cols in (("ffn1", e, None), ("ffn2", None, e)):
        p = params[key]
        if not isinstance(p, dict) or set(p) != {"w", "b"}:
            raise wrong_keys(name, f"params['{key}']", ["w", "b"], p)
        w, b = float_array(name, f"params['{key}']['w']", p["w"]), float_array(name, f"params['{key}']['b']", p["b"])
        same_dtype(name, x=x, **{f"{key}_w": w, f"{key}_b": b})
        if w.ndim != 2 or (rows is not None and w.shape[0] != rows) or (cols is not None and w.shape[1] != cols):
            layout = "(E, F)" if key == "ffn1" else "(F, E)"
            raise ValueError(f"{name}: params['{key}']['w'] must be {layout} with E={e}, got {w.shape}")
        if b.shape != (w.shape[1],):
            raise ValueError(
                f"{name}: params['{key}']['b'] must have shape ({w.shape[1]},) for w {w.shape}, got {b.shape}"
            )
        checked[key] = {"w": w, "b": b}
    if checked["ffn1"]["w"].shape[1] != checked["ffn2"]["w"].shape[0]:
        raise ValueError(
            f"{name}: params['ffn1']['w'] {checked['ffn1']['w'].shape} and params['ffn2']['w'] "
            f"{checked['ffn2']['w'].shape} must share F"
        )
    return checked


def _sequence(name: str, arg: str, value: Any, heads: int) -> np.ndarray:
    x = float_array(name, arg, value)
    if x.ndim != 3:
        raise ValueError(f"{name}: {arg} must be 3-D (N, S, E), got shape {x.shape}")
    if x.shape[2] % heads:
        raise ValueError(f"{name}: num_heads={heads} must divide the embedding size E={x.shape[2]} ({arg} {x.shape})")
    return x


def _init(
    rng: np.random.Generator, e: int, dim_feedforward: int, dtype: np.dtype, weight_scale: WeightScale, name: str,
    attentions: tuple[str, ...], norms: int,
) -> dict[str, Any]:  # fmt: skip
    params: dict[str, Any] = {key: projection_params(rng, e, dtype, weight_scale, name) for key in attentions}
    f = dim_feedforward
    params["ffn1"] = weights_and_bias(rng, (e, f), f, dtype, weight_std(name, weight_scale, e))
    params["ffn2"] = weights_and_bias(rng, (f, e), e, dtype, weight_std(name, weight_scale, f))
    for i in range(1, norms + 1):
        params[f"norm{i}"] = {"gamma": np.ones(e, dtype), "beta": np.zeros(e, dtype)}
    return params


def _hyper(who: str, num_heads: int, dim_feedforward: int, dropout: float, eps: float) -> tuple[int, int, float, float]:
    return (
        int_at_least(who, "num_heads", num_heads, 1),
        int_at_least(who, "dim_feedforward", dim_feedforward, 1),
        fraction(who, "dropout", dropout),
        number_at_least(who, "layer_norm_eps", eps, 0.0, strict=True),
    )


ENCODER_KEYS = ("self_attn", "ffn1", "ffn2", "norm1", "norm2")
DECODER_KEYS = ("self_attn", "cross_attn", "ffn1", "ffn2", "norm1", "norm2", "norm3")


def transformer_encoder_layer(
    num_heads: int,
    dim_feedforward: int = 2048,
    dropout: float = 0.0,
    *,
    norm_first: bool = False,
    causal: bool = False,
    layer_norm_eps: float = EPS,
    recompute: bool = False,
) -> Layer:
    """PyTorch's ``nn.TransformerEncoderLayer(E, num_heads, dim_feedforward, dropout, batch_first=True,
    norm_first=norm_first)``: x ``(N, S, E)``, or ``(src (N, S, E), src_mask (S, S))`` with a boolean mask
    (True: may attend, as in :func:`funcnn.multi_head_attention`; PyTorch's bool mask is its negation);
    ``causal=True`` applies :func:`funcnn.causal_mask` itself. y ``(N, S, E)``.

    params ``{"self_attn": {"query", "key", "value", "proj"}, "ffn1": {"w": (E, F), "b"}, "ffn2": {"w": (F, E),
    "b"}, "norm1": {"gamma", "beta"}, "norm2": ...}``. Moded when ``dropout > 0``. The vjp returns ``dx``
    (with a mask: ``(dsrc, None)``). ``recompute=True``: the attention weights are recomputed in the
    backward pass instead of kept (see :func:`funcnn.multi_head_attention`).

    Args:
        num_heads: the attention's heads; they must divide E.
        dim_feedforward: F, the width of the feed-forward's hidden layer.
        dropout: the probability of each dropout in training (attention weights, sub-layer outputs, hidden).
        norm_first: pre-norm (PyTorch's ``norm_first=True``) instead of post-norm.
        causal: apply :func:`funcnn.causal_mask` (with a given mask too: both must allow).
        layer_norm_eps: the norms' eps.
        recompute: recompute the attention weights in the backward pass instead of keeping them.

    Returns:
        The layer ``x (N, S, E)`` or ``(src, src_mask)`` -> ``y (N, S, E)``.

    >>> layer = fn.transformer_encoder_layer(num_heads=2, dim_feedforward=8, causal=True)
    >>> _, params = fn.init_params(layer, np.random.default_rng(0), (3, 4), np.float64)
    >>> y, vjp = layer(params, np.ones((2, 3, 4)))
    >>> y.shape, sorted(params)
    ((2, 3, 4), ['ffn1', 'ffn2', 'norm1', 'norm2', 'self_attn'])
    """
    who = f"transformer_encoder_layer(num_heads={num_heads}, dim_feedforward={dim_feedforward})"
    heads, ff, drop, eps = _hyper(who, num_heads, dim_feedforward, dropout, layer_norm_eps)
    flags = [f"dropout={drop}"] * bool(drop) + ["pre-norm"] * norm_first + ["causal"] * causal
    name = f"transformer_encoder_layer({', '.join([str(heads), str(ff), *flags])})"

    def forward(params: PyTree, x: Any, train: bool, rng: Any) -> tuple[Any, VJP]:
        masked = isinstance(x, (tuple, list))
        src, given = tuple_input(name, x, ("src", "src_mask")) if masked else (x, None)
        src = _sequence(name, "src", src, heads)
        s = src.shape[1]
        mask = checked_mask(name, given, s, s) if masked else None
        if causal:
            mask = causal_mask(s) if mask is None else mask & causal_mask(s)
            checked_mask(name, mask, s, s)
        c = _Context(name, _checked_params(name, params, ENCODER_KEYS, src), heads, drop, train, rng, recompute)
        h, back1 = c.sublayer("norm1", c.attention("self_attn", None, mask), src, norm_first, eps)
        y, back2 = c.sublayer("norm2", c.feed_forward, h, norm_first, eps)
        out = like(y)

        def vjp(dy: Any) -> tuple[PyTree, Any]:
            grads, dh, _ = back2(cotangent(name, dy, out))
            grads1, dx, _ = back1(dh)
            grads.update(grads1)
            return grads, (dx, None) if masked else dx

        return y, vjp

    def out_shape(shape: Any) -> Any:
        masked = isinstance(shape, (tuple, list)) and shape and isinstance(shape[0], (tuple, list))
        src = tuple_input(name, shape, ("src", "src_mask"), "the input shape")[0] if masked else shape
        s = example_shape(name, src, 2, "(S, E)")
        if s[1] % heads:
            raise ValueError(f"{name}: num_heads={heads} must divide the embedding size E={s[1]} (input shape {shape})")
        return s

    def init(rng: np.random.Generator, shape: Any, dtype: np.dtype, weight_scale: WeightScale) -> tuple[Any, PyTree]:
        s = out_shape(shape)
        return s, _init(rng, s[1], ff, dtype, weight_scale, name, ("self_attn",), 2)

    hparams = {"num_heads": heads, "dim_feedforward": ff, "dropout": drop, "norm_first": norm_first,
               "causal": causal, "eps": eps, "recompute": recompute}  # fmt: skip
    return maybe_moded(
        name, drop, forward, param_keys=ENCODER_KEYS, init=init, out_shape=out_shape,
        op="transformer_encoder_layer", hparams=hparams, doc=transformer_encoder_layer.__doc__,
    )  # fmt: skip


def transformer_decoder_layer(
    num_heads: int,
    dim_feedforward: int = 2048,
    dropout: float = 0.0,
    *,
    norm_first: bool = False,
    layer_norm_eps: float = EPS,
    recompute: bool = False,
) -> Layer:
    """PyTorch's ``nn.TransformerDecoderLayer(E, num_heads, dim_feedforward, dropout, batch_first=True,
    norm_first=norm_first)``, also the course's ``TransformerDecoderLayer``: x ``(tgt (N, T, E), memory (N, S,
    E))`` or ``(tgt, memory, tgt_mask (T, T))`` (boolean, True: may attend; :func:`funcnn.causal_mask`);
    y ``(N, T, E)``. Self-attention on tgt (``norm1``), attention from tgt to memory (``norm2``), the
    feed-forward (``norm3``).

    params ``{"self_attn", "cross_attn", "ffn1", "ffn2", "norm1", "norm2", "norm3"}`` (as
    :func:`transformer_encoder_layer`'s). The vjp returns ``(dtgt, dmemory[, None])``. Moded when ``dropout > 0``;
    ``recompute`` as for the encoder layer.

    Args:
        num_heads: the attentions' heads; they must divide E.
        dim_feedforward: F, the width of the feed-forward's hidden layer.
        dropout: the probability of each dropout in training.
        norm_first: pre-norm instead of post-norm.
        layer_norm_eps: the norms' eps.
        recompute: recompute the attention weights in the backward pass instead of keeping them.

    Returns:
        The layer ``(tgt (N, T, E), memory (N, S, E)[, tgt_mask (T, T)]) -> y (N, T, E)``.

    >>> layer = fn.transformer_decoder_layer(num_heads=2, dim_feedforward=8)
    >>> _, params = fn.init_params(layer, np.random.default_rng(0), ((3, 4), (1, 4)), np.float64)
    >>> y, vjp = layer(params, (np.ones((2, 3, 4)), np.ones((2, 1, 4)), fn.causal_mask(3)))
    >>> y.shape, [None if d is None else d.shape for d in vjp(np.ones_like(y))[1]]
    ((2, 3, 4), [(2, 3, 4), (2, 1, 4), None])
    """
    who = f"transformer_decoder_layer(num_heads={num_heads}, dim_feedforward={dim_feedforward})"
    heads, ff, drop, eps = _hyper(who, num_heads, dim_feedforward, dropout, layer_norm_eps)
    flags = [f"dropout={drop}"] * bool(drop) + ["pre-norm"] * norm_first
    name = f"transformer_decoder_layer({', '.join([str(heads), str(ff), *flags])})"

    def forward(params: PyTree, x: Any, train: bool, rng: Any) -> tuple[Any, VJP]:
        masked = isinstance(x, (tuple, list)) and len(x) == 3
        names = ("tgt", "memory", "tgt_mask") if masked else ("tgt", "memory")
        parts = tuple_input(name, x, names)
        tgt, memory = _sequence(name, "tgt", parts[0], heads), _sequence(name, "memory", parts[1], heads)
        same_dtype(name, tgt=tgt, memory=memory)
        if memory.shape[0] != tgt.shape[0] or memory.shape[2] != tgt.shape[2]:
            raise ValueError(
                f"{name}: memory must be (N, S, E) with tgt's N and E, got tgt {tgt.shape} and memory {memory.shape}"
            )
        t = tgt.shape[1]
        mask = checked_mask(name, parts[2], t, t) if masked else None
        c = _Context(name, _checked_params(name, params, DECODER_KEYS, tgt), heads, drop, train, rng, recompute)
        h, back1 = c.sublayer("norm1", c.attention("self_attn", None, mask), tgt, norm_first, eps)
        h, back2 = c.sublayer("norm2", c.attention("cross_attn", memory, None), h, norm_first, eps)
        y, back3 = c.sublayer("norm3", c.feed_forward, h, norm_first, eps)
        out = like(y)

        def vjp(dy: Any) -> tuple[PyTree, Any]:
            grads, dh, _ = back3(cotangent(name, dy, out))
            grads2, dh, dmemory = back2(dh)
            grads1, dtgt, _ = back1(dh)
            grads.update(grads2)
            grads.update(grads1)
            return grads, (dtgt, dmemory, None) if masked else (dtgt, dmemory)

        return y, vjp

    def out_shape(shape: Any) -> Any:
        count = len(shape) if isinstance(shape, (tuple, list)) else 0
        names = ("tgt", "memory", "tgt_mask") if count == 3 else ("tgt", "memory")
        parts = tuple_input(name, shape, names, "the input shape")
        tgt, memory = example_shape(name, parts[0], 2, "(T, E)"), example_shape(name, parts[1], 2, "(S, E)")
        if tgt[1] % heads or memory[1] != tgt[1]:
            raise ValueError(
                f"{name}: tgt and memory must share E, divisible by num_heads={heads}; got input shape {shape}"
            )
        return tgt

    def init(rng: np.random.Generator, shape: Any, dtype: np.dtype, weight_scale: WeightScale) -> tuple[Any, PyTree]:
        s = out_shape(shape)
        return s, _init(rng, s[1], ff, dtype, weight_scale, name, ("self_attn", "cross_attn"), 3)

    hparams = {"num_heads": heads, "dim_feedforward": ff, "dropout": drop, "norm_first": norm_first, "eps": eps,
               "recompute": recompute}  # fmt: skip
    return maybe_moded(
        name, drop, forward, param_keys=DECODER_KEYS, init=init, out_shape=out_shape,
        op="transformer_decoder_layer", hparams=hparams, doc=transformer_decoder_layer.__doc__,
    )  # fmt: skip
