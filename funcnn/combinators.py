"""Combinators: build a network from layers. The result is again a layer.

When any of its layers is moded (keeps state or needs a train/eval mode), the combination is
moded too and threads the state: a tuple with one entry per layer for ``chain`` and ``fan_out``,
a merged dict for ``sandwich``. Stateless layers inside it are called exactly as before.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from funcnn.core import VJP, Apply, Layer, Shape, State, WeightScale, layer_name, moded_layer, pull_back, run, skips_dx
from funcnn.init import infer, infer_state
from funcnn.tree import PyTree
from funcnn.validation import cotangent, float_array, no_params, read_only, wrong_keys

Forward = Callable[[PyTree, np.ndarray, State, bool, "np.random.Generator | None"], tuple[np.ndarray, VJP, State]]


def _build(name: str, forward: Forward, moded: bool, param_keys: Any, init: Any, state_keys: Any, state_init: Any) -> Layer:
    """A plain layer when no part is moded (state ``()``, mode irrelevant), a moded one otherwise."""
    if moded:
        return moded_layer(forward, name, param_keys, init, state_keys, state_init)

    def apply(params: PyTree, x: np.ndarray) -> tuple[np.ndarray, VJP]:
        y, vjp, _ = forward(params, x, (), False, None)
        return y, vjp

    return Layer(apply, name, param_keys, init)


def _check_layers(who: str, layers: Sequence[Any]) -> str:
    if not layers:
        raise ValueError(f"{who}: needs at least one layer")
    for f in layers:
        if not callable(f):
            raise TypeError(f"{who}: every layer must be callable (params, x) -> (y, vjp), got {f!r}")
    return f"{who}(" + ", ".join(layer_name(f) for f in layers) + ")"


def _is_moded(layers: Sequence[Any]) -> bool:
    return any(isinstance(f, Layer) and f.moded for f in layers)


def _per_layer(name: str, what: str, tree: PyTree, count: int) -> tuple:
    if not isinstance(tree, (tuple, list)) or len(tree) != count:
        got = f"{type(tree).__name__} of length {len(tree)}" if isinstance(tree, (tuple, list)) else repr(tree)[:80]
        raise TypeError(f"{name}: {what} must be a tuple with one entry per layer ({count}), got {got}")
    return tuple(tree)


def chain(*layers: Apply) -> Layer:
    """Compose layers in order: ``chain(f, g)(params, x) = g(params[1], f(params[0], x))``.

    params: a tuple with one entry per layer. Returns a layer whose ``vjp(dy)`` runs the layers'
    vjps in reverse and returns ``((dp1, dp2, ...), dx)``. A moded chain's state is a tuple with
    one entry per layer (``()`` for stateless ones).
    """
    name = _check_layers("chain", layers)
    moded = _is_moded(layers)

    def forward(params: PyTree, x: np.ndarray, state: State, train: bool, rng: Any) -> tuple[np.ndarray, VJP, State]:
        params = _per_layer(name, "params", params, len(layers))
        states = _per_layer(name, "state", state, len(layers)) if moded else ((),) * len(layers)
        vjps, new_states = [], []
        for f, p, s in zip(layers, params, states):
            x, layer_vjp, s = run(f, p, x, s, train=train, rng=rng)
            vjps.append(layer_vjp)
            new_states.append(s)

        @skips_dx
        def vjp(dy: np.ndarray, need_dx: bool = True) -> tuple[PyTree, np.ndarray | None]:
            grads = []
            for i, layer_vjp in enumerate(reversed(vjps)):
                dp, dy = pull_back(layer_vjp, dy, need_dx=need_dx or i < len(vjps) - 1)
                grads.append(dp)
            return tuple(reversed(grads)), dy

        return x, vjp, tuple(new_states) if moded else ()

    def init(rng: np.random.Generator, shape: Shape, dtype: np.dtype, weight_scale: WeightScale) -> tuple[Shape, PyTree]:
        params = []
        for f in layers:
            shape, p = infer(f, rng, shape, dtype, weight_scale)
            params.append(p)
        return shape, tuple(params)

    def state_init(shape: Shape, dtype: np.dtype) -> State:
        states = []
        for f in layers:
            states.append(infer_state(f, shape, dtype))
            shape, _ = infer(f, np.random.default_rng(0), shape, dtype, "he")
        return tuple(states)

    return _build(name, forward, moded, None, init, None, state_init)


def _dict_keys(f: Any, who: str, what: str = "params") -> tuple[str, ...]:
    if not isinstance(f, Layer):
        raise TypeError(
            f"{who}: cannot tell which params {layer_name(f)} takes; wrap it with "
            f"funcnn.layer({layer_name(f)}, param_keys=(...)) (use () when it takes none)"
        )
    keys = f.param_keys if what == "params" else f.state_keys
    if keys is None:
        raise TypeError(f"{who}: {f.name} takes a {what} tree, not a flat dict, so it cannot be merged into a sandwich")
    return keys


def _owners(name: str, layers: Sequence[Any], what: str) -> list[tuple[str, ...]]:
    owned = [_dict_keys(f, name, what) for f in layers]
    seen: dict[str, str] = {}
    for f, keys in zip(layers, owned):
        for key in keys:
            if key in seen:
                raise ValueError(f"{name}: both {seen[key]} and {layer_name(f)} take a {what[:-1] if what == 'params' else what} named {key!r}")
            seen[key] = layer_name(f)
    return owned


def _split(name: str, what: str, tree: PyTree, owned: list[tuple[str, ...]]) -> tuple[PyTree, ...]:
    all_keys = sorted(k for keys in owned for k in keys)
    if not all_keys and tree == ():
        return tuple(() for _ in owned)
    if not isinstance(tree, dict) or sorted(tree) != all_keys:
        raise wrong_keys(name, what, all_keys, tree)
    return tuple({k: tree[k] for k in keys} if keys else () for keys in owned)


def _merge(parts: Sequence[PyTree]) -> PyTree:
    merged = {k: v for part in parts if part != () for k, v in part.items()}
    return merged if merged else ()


def sandwich(*layers: Apply) -> Layer:
    """Compose layers in order, with their params merged into one flat dict.

    Each layer gets the keys it declares (``()`` when it declares none): ``sandwich(conv(...), relu)``
    takes ``{"w", "b"}``. Two layers declaring the same key is an error here, at build time.
    Returns a layer whose ``vjp(dy)`` returns the merged dict of gradients and ``dx``. A moded
    sandwich's state is the merged dict of its layers' states.
    """
    name = _check_layers("sandwich", layers)
    owned = _owners(name, layers, "params")
    owned_state = _owners(name, layers, "state")
    inner = chain(*layers)
    moded = inner.moded

    def forward(params: PyTree, x: np.ndarray, state: State, train: bool, rng: Any) -> tuple[np.ndarray, VJP, State]:
        parts = _split(name, "params", params, owned)
        states = _split(name, "state", state, owned_state) if moded else ()
        y, chain_vjp, new_states = run(inner, parts, x, states, train=train, rng=rng)

        @skips_dx
        def vjp(dy: np.ndarray, need_dx: bool = True) -> tuple[PyTree, np.ndarray | None]:
            grads, dx = pull_back(chain_vjp, dy, need_dx=need_dx)
            return _merge(grads), dx

        return y, vjp, _merge(new_states) if moded else ()

    def init(rng: np.random.Generator, shape: Shape, dtype: np.dtype, weight_scale: WeightScale) -> tuple[Shape, PyTree]:
        shape, params = infer(inner, rng, shape, dtype, weight_scale)
        return shape, _merge(params)

    def state_init(shape: Shape, dtype: np.dtype) -> State:
        return _merge(infer_state(inner, shape, dtype))

    param_keys = tuple(k for keys in owned for k in keys)
    state_keys = tuple(k for keys in owned_state for k in keys)
    return _build(name, forward, moded, param_keys, init, state_keys, state_init)


def fan_out(*branches: Apply) -> Layer:
    """Feed the same input to every branch and sum their outputs: ``y = sum_i f_i(params[i], x)``.

    params (and a moded fan-out's state): a tuple with one entry per branch. The outputs must have
    one shape. ``vjp(dy)`` returns ``((dp_1, ...), dx)`` with ``dx`` the sum of every branch's dx:
    an input used twice gets the gradient of both uses.
    """
    name = _check_layers("fan_out", branches)
    moded = _is_moded(branches)

    def forward(params: PyTree, x: np.ndarray, state: State, train: bool, rng: Any) -> tuple[np.ndarray, VJP, State]:
        params = _per_layer(name, "params", params, len(branches))
        states = _per_layer(name, "state", state, len(branches)) if moded else ((),) * len(branches)
        outs = [run(f, p, x, s, train=train, rng=rng) for f, p, s in zip(branches, params, states)]
        for f, (y_i, _, _) in zip(branches[1:], outs[1:]):
            if y_i.shape != outs[0][0].shape:
                raise ValueError(f"{name}: {layer_name(f)} gives shape {y_i.shape} but {layer_name(branches[0])} gives {outs[0][0].shape}")
        y = sum((out[0] for out in outs[1:]), outs[0][0])

        def vjp(dy: np.ndarray) -> tuple[PyTree, np.ndarray]:
            grads = [out[1](dy) for out in outs]
            return tuple(g[0] for g in grads), sum((g[1] for g in grads[1:]), grads[0][1])

        return y, vjp, tuple(out[2] for out in outs) if moded else ()

    def init(rng: np.random.Generator, shape: Shape, dtype: np.dtype, weight_scale: WeightScale) -> tuple[Shape, PyTree]:
        results = [infer(f, rng, shape, dtype, weight_scale) for f in branches]
        for f, (out, _) in zip(branches[1:], results[1:]):
            if out != results[0][0]:
                raise ValueError(f"{name}: {layer_name(f)} gives shape {out} but {layer_name(branches[0])} gives {results[0][0]}")
        return results[0][0], tuple(p for _, p in results)

    def state_init(shape: Shape, dtype: np.dtype) -> State:
        return tuple(infer_state(f, shape, dtype) for f in branches)

    return _build(name, forward, moded, None, init, None, state_init)


def _identity(params: PyTree, x: np.ndarray) -> tuple[np.ndarray, VJP]:
    """``y = x``, any shape; params ``()``. Returns a read-only view of ``x`` and ``vjp(dy) -> ((), dy)``
    (a read-only view of ``dy``), so writing into the output cannot change the caller's array."""
    no_params("identity", params)
    x = float_array("identity", "x", x)
    return read_only(x), lambda dy: ((), read_only(cotangent("identity", dy, x)))


identity = Layer(_identity, "identity", ())


def residual(f: Apply) -> Layer:
    """``y = x + f(params, x)``, a skip connection around ``f`` (params and state are ``f``'s);
    ``f`` must keep the input's shape. The gradient of ``x`` adds the skip and ``f``'s path."""
    both = fan_out(identity, f)
    name = f"residual({layer_name(f)})"

    def forward(params: PyTree, x: np.ndarray, state: State, train: bool, rng: Any) -> tuple[np.ndarray, VJP, State]:
        try:
            y, vjp, new_state = run(both, ((), params), x, ((), state) if both.moded else (), train=train, rng=rng)
        except ValueError as error:  # fan_out's shape mismatch, said in residual's words
            if not str(error).startswith(both.name):
                raise
            raise ValueError(f"{name}: {layer_name(f)} must keep the shape of x {np.shape(x)}: {str(error).split(': ', 1)[1]}") from None

        def residual_vjp(dy: np.ndarray) -> tuple[PyTree, np.ndarray]:
            grads, dx = vjp(dy)
            return grads[1], dx

        return y, residual_vjp, new_state[1] if both.moded else ()

    def init(rng: np.random.Generator, shape: Shape, dtype: np.dtype, weight_scale: WeightScale) -> tuple[Shape, PyTree]:
        return infer(f, rng, shape, dtype, weight_scale)

    def state_init(shape: Shape, dtype: np.dtype) -> State:
        return infer_state(f, shape, dtype)

    keys = f.param_keys if isinstance(f, Layer) else None
    state_keys = f.state_keys if isinstance(f, Layer) else ()
    return _build(name, forward, both.moded, keys, init, state_keys, state_init)
