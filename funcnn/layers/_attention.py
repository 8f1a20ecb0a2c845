"""Multi-head attention (the course's ``MultiHeadAttention``, PyTorch's ``nn.MultiheadAttention`` with
``batch_first=True``), its self-attention form, and ``causal_mask``.

The arithmetic, on ``(N, heads, S, T)`` scores: ``q = query wq + bq`` (and k, v) split into ``heads`` of
``Dh = E / heads`` columns, ``a = softmax(q k^T / sqrt(Dh))`` over T with masked entries at ``-inf``,
``o = dropout(a) v``, heads joined, ``y = o wp + bp``. Every product is one BLAS call (batched over N and
the heads) on contiguous operands: the projections are split into heads by one copy each, as NumPy's
batched matmul is 10-20x slower on a transposed second operand. Self-attention projects q, k and v in one
product and returns one summed cotangent.

Memory: the vjp keeps the inputs (for the weight gradients), q, k and v, the joined ``o`` and the
attention weights ``a`` ``(N, heads, S, T)`` (plus the dropout mask as bits); with ``recompute=True`` it
keeps q, k and v instead of ``a`` and recomputes the softmax in the backward pass.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from funcnn._checks import (
    cotangent,
    dict_params,
    example_shape,
    float_array,
    fraction,
    int_at_least,
    like,
    no_state,
    same_dtype,
    tuple_input,
)
from funcnn.core import VJP, Layer, Shape, State, WeightScale, moded_layer
from funcnn.tree import PyTree

PROJECTIONS = ("query", "key", "value", "proj")
# back(dy) -> (dparams, dquery, dkey, dvalue); the self-attention core returns (dparams, dx, None, None).
Back = Callable[[np.ndarray], tuple[dict[str, dict[str, np.ndarray]], np.ndarray, Any, Any]]


def causal_mask(t: int) -> np.ndarray:
    """The ``(T, T)`` boolean mask letting position i attend to positions ``j <= i`` (lower triangle True).

    Args:
        t: T, the sequence length.

    Returns:
        The boolean mask ``(T, T)``, True on and below the diagonal.

    >>> fn.causal_mask(3).astype(int)
    array([[1, 0, 0],
           [1, 1, 0],
           [1, 1, 1]])
    """
    t = int_at_least("causal_mask", "T", t, 1)
    mask: np.ndarray = np.tril(np.ones((t, t), dtype=bool))
    return mask


def attention_params(name: str, params: PyTree, dtype: np.dtype, embed: int) -> dict[str, dict[str, np.ndarray]]:
    """``params`` checked: ``{"query", "key", "value", "proj"}``, each ``{"w": (E, E), "b": (E,)}`` of ``dtype``."""
    if not isinstance(params, dict) or set(params) != set(PROJECTIONS):
        dict_params(name, params, PROJECTIONS)  # raises the error naming the missing and unexpected keys
    checked = {}
    for key in PROJECTIONS:
        p = dict_params(name, params[key], ("w", "b"), f"params['{key}']")
        if p["w"].shape != (embed, embed) or p["b"].shape != (embed,):
            raise ValueError(
                f"{name}: params['{key}'] must be {{'w': ({embed}, {embed}), 'b': ({embed},)}} for E={embed}, "
                f"got w {p['w'].shape}, b {p['b'].shape}"
            )
        same_dtype(name, inputs=np.empty(0, dtype), **{f"params_{key}_w": p["w"], f"params_{key}_b": p["b"]})
        checked[key] = p
    return checked


def checked_mask(name: str, mask: Any, s: int, t: int) -> np.ndarray:
    """``attn_mask`` as a boolean ``(S, T)`` array (True: may attend); integers must be 0 or 1. A float
    mask is refused (PyTorch's float masks are added to the scores, the course's multiply: ambiguous)
    and so is a row that masks every key (its softmax would be 0/0)."""
    m = np.asarray(mask)
    if m.dtype.kind not in "biu" or (m.dtype.kind != "b" and m.size and not np.isin(m, (0, 1)).all()):
        raise TypeError(
            f"{name}: attn_mask must be a boolean (S, T) array, True where query i may attend to key j "
            f"(or 0/1 integers), got dtype {m.dtype} (shape {m.shape}); fn.causal_mask(T) makes the causal one"
        )
    if m.shape != (s, t):
        raise ValueError(f"{name}: attn_mask must have shape (S, T) = {(s, t)} for these inputs, got {m.shape}")
    m = m.astype(bool, copy=False)
    empty = np.flatnonzero(~m.any(axis=1))
    if empty.size:
        raise ValueError(
            f"{name}: attn_mask row {int(empty[0])} masks every key, so that query would attend to nothing "
            f"(a softmax of 0/0); let every row attend to at least one key (shape {m.shape})"
        )
    return m


def _split(a2: np.ndarray, n: int, length: int, heads: int, parts: int) -> np.ndarray:
    """``(N*L, parts*E)`` -> contiguous ``(parts, N, heads, L, Dh)`` (one copy): q, k, v by head.

    NumPy's batched matmul calls BLAS for contiguous operands and for a transposed first one, but falls
    back to a loop 10-20x slower when the second is a transposed or strided view: every product below
    is arranged to avoid that."""
    return np.ascontiguousarray(a2.reshape(n, length, parts, heads, -1).transpose(2, 0, 3, 1, 4))


def _join(parts: list[np.ndarray]) -> np.ndarray:
    """``(N, heads, L, Dh)`` arrays -> ``(N*L, len(parts)*E)``, their heads joined side by side (one copy)."""
    n, heads, length, dh = parts[0].shape
    out = np.empty((n, length, len(parts), heads, dh), parts[0].dtype)
    for i, part in enumerate(parts):
        out[:, :, i] = part.transpose(0, 2, 1, 3)
    return out.reshape(n * length, len(parts) * heads * dh)


def _transposed(a: np.ndarray) -> np.ndarray:
    """``(N, heads, L, Dh)`` -> contiguous ``(N, heads, Dh, L)``."""
    return np.ascontiguousarray(a.transpose(0, 1, 3, 2))


def _softmax(q: np.ndarray, k: np.ndarray, not_mask: np.ndarray | None) -> np.ndarray:
    """``softmax(q k^T)`` over the last axis, ``-inf`` where ``not_mask``: ``(N, h, S, T)``, made in place."""
    a: np.ndarray = np.matmul(q, _transposed(k))
    if not_mask is not None:
        np.copyto(a, -np.inf, where=not_mask)
    a -= a.max(axis=-1, keepdims=True)
    np.exp(a, out=a)
    a /= a.sum(axis=-1, keepdims=True)
    return a


def attention_core(
    params: dict[str, dict[str, np.ndarray]],
    query: np.ndarray,
    key: np.ndarray,
    value: np.ndarray,
    mask: np.ndarray | None,
    heads: int,
    drop_prob: float,
    rng: np.random.Generator | None,
    recompute: bool,
) -> tuple[np.ndarray, Back]:
    """The attention of checked arrays ``query (N, S, E)``, ``key``, ``value (N, T, E)``; dropout on the
    weights when ``drop_prob > 0`` (then ``rng`` draws the mask). When query, key and value are one array
    (self-attention) q, k and v come from one product and ``back`` returns the summed cotangent as
    ``dquery`` (``dkey``, ``dvalue`` None); when key is value (cross-attention) k and v come from one
    product and ``dkey`` is their sum (``dvalue`` None)."""
    n, s, e = query.shape
    t = key.shape[1]
    dtype = query.dtype
    scale = dtype.type(1 / math.sqrt(e // heads))
    pq, pk, pv, pp = (params[k] for k in PROJECTIONS)
    fused = query is key and key is value
    shared = key is value and not fused
    q_in, kv_in, v_in = query.reshape(n * s, e), key.reshape(n * t, e), value.reshape(n * t, e)

    def in_weights(keys: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
        """The projections of ``keys`` side by side, q's scaled by 1/sqrt(Dh) (folded into q)."""
        ws = [params[k]["w"] * scale if k == "query" else params[k]["w"] for k in keys]
        bs = [params[k]["b"] * scale if k == "query" else params[k]["b"] for k in keys]
        return np.concatenate(ws, axis=1), np.concatenate(bs)

    groups: dict[str, tuple[str, ...]] = {"query": ("query",), "key": ("key",), "value": ("value",)}
    if fused:
        groups = {"query": ("query", "key", "value")}
    elif shared:
        groups = {"query": ("query",), "key": ("key", "value")}
    inputs = {"query": q_in, "key": kv_in, "value": v_in}
    projected: list[np.ndarray] = []
    for arg, keys in groups.items():
        w, b = in_weights(keys)
        projected.extend(_split(inputs[arg] @ w + b, n, s if arg == "query" else t, heads, len(keys)))
    q, k, v = projected
    not_mask = None if mask is None else ~mask
    a = _softmax(q, k, not_mask)
    bits = None
    keep_scale = dtype.type(1 / (1 - drop_prob)) if drop_prob > 0 else dtype.type(1)
    if drop_prob > 0:
        assert rng is not None  # the layers check it
        keep = rng.random(a.shape, dtype=np.float32) >= drop_prob
        bits = np.packbits(keep, axis=None)
        o2 = _join([np.matmul(a * (keep * keep_scale), v)])
        del keep
    else:
        o2 = _join([np.matmul(a, v)])
    y = (o2 @ pp["w"] + pp["b"]).reshape(n, s, e)
    kept_a = None if recompute else a
    del a

    def back(dy: np.ndarray) -> tuple[dict[str, dict[str, np.ndarray]], np.ndarray, Any, Any]:
        dy2 = dy.reshape(n * s, e)
        grads = {"proj": {"w": (dy2.T @ o2).T, "b": dy2.sum(axis=0)}}
        (do,) = _split(dy2 @ pp["w"].T, n, s, heads, 1)
        weights = _softmax(q, k, not_mask) if kept_a is None else kept_a
        dropped = weights
        if bits is not None:
            kept = np.unpackbits(bits, count=weights.size).view(bool).reshape(weights.shape)
            dropped = weights * (kept * keep_scale)
        dv = np.matmul(dropped.transpose(0, 1, 3, 2), do)
        del dropped
        ds = np.matmul(do, _transposed(v))
        if bits is not None:
            ds *= kept * keep_scale
            del kept
        # softmax backward: ds = a * (da - sum_t(da * a)); masked entries have a = 0, so ds = 0 there.
        # Each row of ds sums to 0, so the key bias (a shift of every score of a row) has gradient exactly
        # 0: it is returned as 0, not as the rounding left by summing dk.
        ds -= np.einsum("nhst,nhst->nhs", ds, weights)[..., None]
        ds *= weights
        cotangents = {"query": np.matmul(ds, k), "key": np.matmul(ds.transpose(0, 1, 3, 2), q), "value": dv}
        del ds
        dinputs = []
        for arg, keys in groups.items():
            d2 = _join([cotangents[key] for key in keys])
            # (d2^T x)^T: OpenBLAS ran x^T d2, the same product, 2x slower for d2 wider than x
            dw, db = (d2.T @ inputs[arg]).T, d2.sum(axis=0)
            for i, key in enumerate(keys):
                grads[key] = {"w": dw[:, i * e : (i + 1) * e], "b": db[i * e : (i + 1) * e]}
            dinputs.append((d2 @ in_weights(keys)[0].T).reshape(n, s if arg == "query" else t, e))
        grads["query"] = {"w": grads["query"]["w"] * scale, "b": grads["query"]["b"] * scale}
        grads["key"]["b"] = np.zeros_like(pk["b"])
        return grads, *dinputs, *[None] * (3 - len(dinputs))

    out = like(y)

    def checked_back(dy: Any) -> tuple[dict[str, dict[str, np.ndarray]], np.ndarray, Any, Any]:
        return back(cotangent("attention", dy, out))

    return y, checked_back


def _check_heads(name: str, e: int, heads: int, shape: Any) -> None:
    if e % heads:
        raise ValueError(f"{name}: num_heads={heads} must divide the embedding size E={e} (input shape {shape})")


def _attention_inputs(name: str, x: Any, heads: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]:
    """``(query, key, value[, attn_mask])`` checked: 3-D float arrays of one dtype, E divisible by heads,
    key and value of one length T, the mask ``(S, T)``."""
    if isinstance(x, (tuple, list)) and len(x) == 4:
        parts = tuple_input(name, x, ("query", "key", "value", "attn_mask"))
    else:
        parts = (*tuple_input(name, x, ("query", "key", "value")), None)
    arrays = [float_array(name, arg, a) for arg, a in zip(("query", "key", "value"), parts[:3])]
    query, key, value = arrays
    same_dtype(name, query=query, key=key, value=value)
    for arg, a in zip(("query", "key", "value"), arrays):
        if a.ndim != 3:
            raise ValueError(f"{name}: {arg} must be 3-D (N, L, E), got shape {a.shape}")
    n, s, e = query.shape
    _check_heads(name, e, heads, query.shape)
    if key.shape != value.shape or key.shape[0] != n or key.shape[2] != e:
        raise ValueError(
            f"{name}: key and value must both be (N, T, E) = ({n}, T, {e}) for query {query.shape}, "
            f"got key {key.shape} and value {value.shape}"
        )
    mask = None if parts[3] is None else checked_mask(name, parts[3], s, key.shape[1])
    return query, key, value, mask


def _rng_for(name: str, train: bool, drop_prob: float, rng: Any) -> np.random.Generator | None:
    """The generator dropout draws from: needed in training with ``drop_prob > 0``, else unused."""
    if not train or drop_prob == 0:
        return None
    if not isinstance(rng, np.random.Generator):  # a missing rng is the usual case: ValueError, as fn.dropout
        raise ValueError(  # noqa: TRY004
            f"{name}: training draws a dropout mask, so it needs rng=np.random.default_rng(seed), got {rng!r}"
        )
    return rng


def projection_params(
    rng: np.random.Generator, e: int, dtype: np.dtype, weight_scale: WeightScale, name: str
) -> dict[str, dict[str, np.ndarray]]:
    """The four projections ``(E, E)``: normal with std ``1/sqrt(E)`` (``"he"``, for these linear maps),
    or ``weight_scale``; biases 0."""
    if weight_scale != "he" and (isinstance(weight_scale, str) or not weight_scale > 0):
        raise ValueError(f"{name}: weight_scale must be 'he' or a positive number, got {weight_scale!r}")
    std = 1 / math.sqrt(e) if weight_scale == "he" else float(weight_scale)
    return {
        key: {"w": (std * rng.standard_normal((e, e))).astype(dtype), "b": np.zeros(e, dtype)} for key in PROJECTIONS
    }


def maybe_moded(
    name: str, drop_prob: float, forward: Callable[[PyTree, Any, bool, Any], tuple[Any, VJP]], **layer: Any
) -> Layer:
    """A plain layer when ``drop_prob`` is 0 (evaluation and training agree), else a moded one."""

    def run_fn(params: PyTree, x: Any, state: State, train: bool, rng: Any) -> tuple[Any, VJP, State]:
        no_state(name, state)
        y, vjp = forward(params, x, train, rng)
        return y, vjp, ()

    if drop_prob == 0:

        def apply(params: PyTree, x: Any) -> tuple[Any, VJP]:
            return forward(params, x, False, None)

        return Layer(apply, name, **layer)
    return moded_layer(run_fn, name, **layer)


def multi_head_attention(num_heads: int, dropout: float = 0.0, *, recompute: bool = False) -> Layer:
    """Multi-head attention, the course's ``MultiHeadAttention(E, num_heads, dropout)``.

    x: ``(query (N, S, E), key (N, T, E), value (N, T, E))`` or with a fourth entry ``attn_mask (S, T)``,
    boolean, True where query i may attend to key j (the course's 1; a 0 masks; see :func:`causal_mask`);
    a row masking every key is an error. params ``{"query", "key", "value", "proj"}``, each
    ``{"w": (E, E), "b": (E,)}`` used as ``x @ w + b`` (PyTorch's ``in_proj_weight`` rows, transposed).
    Returns ``y (N, S, E)`` and ``vjp(dy) -> (dparams, (dquery, dkey, dvalue[, None]))``; for
    self-attention pass one array three times and add the three cotangents.

    Heads of ``Dh = E / num_heads`` columns, scores scaled by ``1/sqrt(Dh)``, softmax over T, dropout on
    the weights in training (then the layer is moded: ``layer.run(params, x, train=True, rng=...)``),
    then ``proj``. The vjp keeps ``(N, heads, S, T)`` weights; ``recompute=True`` recomputes them instead.

    Args:
        num_heads: the number of heads; it must divide E.
        dropout: the probability of dropping an attention weight in training.
        recompute: recompute the attention weights in the backward pass instead of keeping them.

    Returns:
        The layer ``(query, key, value[, attn_mask]) -> y (N, S, E)``.

    >>> layer = fn.multi_head_attention(num_heads=2)
    >>> _, params = fn.init_params(layer, np.random.default_rng(0), ((3, 4), (5, 4), (5, 4)), np.float64)
    >>> x, memory = np.ones((1, 3, 4)), np.ones((1, 5, 4))
    >>> y, vjp = layer(params, (x, memory, memory))
    >>> y.shape, [d.shape for d in vjp(np.ones_like(y))[1]]
    ((1, 3, 4), [(1, 3, 4), (1, 5, 4), (1, 5, 4)])
    """
    name = f"multi_head_attention(num_heads={num_heads}{f', dropout={dropout}' if dropout else ''})"
    heads = int_at_least(name, "num_heads", num_heads, 1)
    drop_prob = fraction(name, "dropout", dropout)

    def forward(params: PyTree, x: Any, train: bool, rng: Any) -> tuple[Any, VJP]:
        query, key, value, mask = _attention_inputs(name, x, heads)
        p = attention_params(name, params, query.dtype, query.shape[2])
        generator = _rng_for(name, train, drop_prob, rng)
        # one array given three times is still three inputs: each gets its own cotangent
        key_ = key.view() if key is query else key
        value_ = value.view() if value is query or value is key else value
        y, back = attention_core(
            p, query, key_, value_, mask, heads, drop_prob if generator else 0.0, generator, recompute
        )
        out = like(y)

        def vjp(dy: Any) -> tuple[PyTree, Any]:
            grads, dq, dk, dv = back(cotangent(name, dy, out))
            return grads, (dq, dk, dv) if mask is None else (dq, dk, dv, None)

        return y, vjp

    def out_shape(shape: Any) -> Any:
        parts = shape[:3] if isinstance(shape, (tuple, list)) and len(shape) == 4 else shape
        qs, ks, vs = (example_shape(name, p, 2, "(L, E)") for p in tuple_input(name, parts, PROJECTIONS[:3], "shape"))
        _check_heads(name, qs[1], heads, shape)
        if ks != vs or ks[1] != qs[1]:
            raise ValueError(f"{name}: key and value must both be (T, E) with E={qs[1]}, got input shape {shape}")
        return qs

    def init(rng: np.random.Generator, shape: Any, dtype: np.dtype, weight_scale: WeightScale) -> tuple[Any, PyTree]:
        qs = out_shape(shape)
        return qs, projection_params(rng, qs[1], dtype, weight_scale, name)

    return maybe_moded(
        name, drop_prob, forward, param_keys=PROJECTIONS, init=init, out_shape=out_shape, op="multi_head_attention",
        hparams={"num_heads": heads, "dropout": drop_prob, "recompute": recompute}, doc=multi_head_attention.__doc__,
    )  # fmt: skip


def self_attention(num_heads: int, dropout: float = 0.0, *, causal: bool = False, recompute: bool = False) -> Layer:
    """:func:`multi_head_attention` of ``x (N, S, E)`` with itself (query = key = value = x), causal
    (position i attends to ``j <= i``) when ``causal``. A single-input layer for ``chain``; its vjp returns
    the summed cotangent ``dx (N, S, E)``. q, k and v come from one product.

    Args:
        num_heads: the number of heads; it must divide E.
        dropout: the probability of dropping an attention weight in training.
        causal: let position i attend to positions ``j <= i`` only.
        recompute: recompute the attention weights in the backward pass instead of keeping them.

    Returns:
        The layer ``x (N, S, E) -> y (N, S, E)``.

    >>> layer = fn.self_attention(num_heads=2, causal=True)
    >>> _, params = fn.init_params(layer, np.random.default_rng(0), (3, 4), np.float64)
    >>> y, vjp = layer(params, np.ones((2, 3, 4)))
    >>> y.shape, vjp(np.ones_like(y))[1].shape
    ((2, 3, 4), (2, 3, 4))
    """
    flags = "".join([f", dropout={dropout}"] * bool(dropout) + [", causal"] * causal)
    name = f"self_attention(num_heads={num_heads}{flags})"
    heads = int_at_least(name, "num_heads", num_heads, 1)
    drop_prob = fraction(name, "dropout", dropout)

    def forward(params: PyTree, x: Any, train: bool, rng: Any) -> tuple[Any, VJP]:
        x = float_array(name, "x", x)
        if x.ndim != 3:
            raise ValueError(f"{name}: x must be 3-D (N, S, E), got shape {x.shape}")
        _check_heads(name, x.shape[2], heads, x.shape)
        p = attention_params(name, params, x.dtype, x.shape[2])
        generator = _rng_for(name, train, drop_prob, rng)
        mask = causal_mask(x.shape[1]) if causal and x.shape[1] else None
        y, back = attention_core(p, x, x, x, mask, heads, drop_prob if generator else 0.0, generator, recompute)
        out = like(y)

        def vjp(dy: Any) -> tuple[PyTree, np.ndarray]:
            grads, dx, _, _ = back(cotangent(name, dy, out))
            return grads, dx

        return y, vjp

    def out_shape(shape: Shape) -> Shape:
        s = example_shape(name, shape, 2, "(S, E)")
        _check_heads(name, s[1], heads, shape)
        return s

    def init(
        rng: np.random.Generator, shape: Shape, dtype: np.dtype, weight_scale: WeightScale
    ) -> tuple[Shape, PyTree]:
        s = out_shape(shape)
        return s, projection_params(rng, s[1], dtype, weight_scale, name)

    return maybe_moded(
        name, drop_prob, forward, param_keys=PROJECTIONS, init=init, out_shape=out_shape, op="self_attention",
        hparams={"num_heads": heads, "dropout": drop_prob, "causal": causal, "recompute": recompute},
        doc=self_attention.__doc__,
    )  # fmt: skip
