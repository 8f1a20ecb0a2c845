"""Combinators: build a network from layers. The result is again a layer."""

from __future__ import annotations

from typing import Any

import numpy as np

from funcnn.init import infer
from funcnn.layer import VJP, Apply, Layer, Shape, WeightScale, layer_name
from funcnn.tree import PyTree


def chain(*layers: Apply) -> Layer:
    """Compose layers in order: ``chain(f, g)(params, x) = g(params[1], f(params[0], x))``.

    params: a tuple with one entry per layer. Returns a layer whose ``vjp(dy)`` runs the layers'
    vjps in reverse and returns ``((dp1, dp2, ...), dx)``.
    """
    if not layers:
        raise ValueError("chain: needs at least one layer")
    for f in layers:
        if not callable(f):
            raise TypeError(f"chain: every layer must be callable (params, x) -> (y, vjp), got {f!r}")
    name = "chain(" + ", ".join(layer_name(f) for f in layers) + ")"

    def apply(params: PyTree, x: np.ndarray) -> tuple[np.ndarray, VJP]:
        if not isinstance(params, (tuple, list)) or len(params) != len(layers):
            got = f"{type(params).__name__} of length {len(params)}" if isinstance(params, (tuple, list)) else repr(params)[:80]
            raise TypeError(f"{name}: params must be a tuple with one entry per layer ({len(layers)}), got {got}")
        vjps = []
        for f, p in zip(layers, params):
            x, vjp = f(p, x)
            vjps.append(vjp)

        def vjp(dy: np.ndarray) -> tuple[PyTree, np.ndarray]:
            grads = []
            for layer_vjp in reversed(vjps):
                dp, dy = layer_vjp(dy)
                grads.append(dp)
            return tuple(reversed(grads)), dy

        return x, vjp

    def init(rng: np.random.Generator, shape: Shape, dtype: np.dtype, weight_scale: WeightScale) -> tuple[Shape, PyTree]:
        params = []
        for f in layers:
            shape, p = infer(f, rng, shape, dtype, weight_scale)
            params.append(p)
        return shape, tuple(params)

    return Layer(apply, name, None, init)


def _dict_keys(f: Any, who: str) -> tuple[str, ...]:
    if not isinstance(f, Layer):
        raise TypeError(
            f"{who}: cannot tell which params {layer_name(f)} takes; wrap it with "
            f"funcnn.layer({layer_name(f)}, param_keys=(...)) (use () when it takes none)"
        )
    if f.param_keys is None:
        raise TypeError(f"{who}: {f.name} takes a params tree, not a flat dict, so it cannot be merged into a sandwich")
    return f.param_keys


def sandwich(*layers: Apply) -> Layer:
    """Compose layers in order, with their params merged into one flat dict.

    Each layer gets the keys it declares (``()`` when it declares none): ``sandwich(conv(...), relu)``
    takes ``{"w", "b"}``. Two layers declaring the same key is an error here, at build time.
    Returns a layer whose ``vjp(dy)`` returns the merged dict of gradients and ``dx``.
    """
    if not layers:
        raise ValueError("sandwich: needs at least one layer")
    name = "sandwich(" + ", ".join(layer_name(f) for f in layers) + ")"
    owned = [_dict_keys(f, name) for f in layers]
    seen: dict[str, str] = {}
    for f, keys in zip(layers, owned):
        for key in keys:
            if key in seen:
                raise ValueError(f"{name}: both {seen[key]} and {layer_name(f)} take a param named {key!r}")
            seen[key] = layer_name(f)
    all_keys = tuple(seen)
    inner = chain(*layers)

    def split(params: PyTree) -> tuple[PyTree, ...]:
        if all_keys == () and params == ():
            return tuple(() for _ in layers)
        if not isinstance(params, dict) or set(params) != set(all_keys):
            raise TypeError(f"{name}: params must be a dict with keys {sorted(all_keys)}, got {params!r:.80}")
        return tuple({k: params[k] for k in keys} if keys else () for keys in owned)

    def apply(params: PyTree, x: np.ndarray) -> tuple[np.ndarray, VJP]:
        y, chain_vjp = inner(split(params), x)

        def vjp(dy: np.ndarray) -> tuple[PyTree, np.ndarray]:
            grads, dx = chain_vjp(dy)
            if not all_keys:
                return (), dx
            merged: dict[str, np.ndarray] = {}
            for g in grads:
                if g != ():
                    merged.update(g)
            return merged, dx

        return y, vjp

    def init(rng: np.random.Generator, shape: Shape, dtype: np.dtype, weight_scale: WeightScale) -> tuple[Shape, PyTree]:
        shape, params = inner.init(rng, shape, dtype, weight_scale)
        merged = {k: v for p in params if p != () for k, v in p.items()}
        return shape, merged if all_keys else ()

    return Layer(apply, name, all_keys, init)


