"""Combinators: build a network from layers. The result is again a layer.

When any of its layers is moded (keeps state or needs a train/eval mode), the combination is
moded too and threads the state: a tuple with one entry per layer for ``chain`` and ``fan_out``,
a merged dict for ``sandwich``. Stateless layers inside it are called exactly as before.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from itertools import pairwise
from typing import Any

import numpy as np

from funcnn._checks import cotangent, float_array, like, no_params, read_only, same_shape_as_input, wrong_keys
from funcnn.core import (
    VJP,
    Init,
    Layer,
    LayerFn,
    OutShape,
    Shape,
    State,
    StateInit,
    WeightScale,
    as_layer,
    layer_factory,
    layer_name,
    moded_layer,
    output_shape,
    run,
)
from funcnn.layers._activations import relu, relu_overwriting
from funcnn.layers._handover import hand_over, sole, take, takes_handover
from funcnn.layers._init import init_params, init_state
from funcnn.tree import PyTree

Forward = Callable[[PyTree, np.ndarray, State, bool, "np.random.Generator | None"], tuple[np.ndarray, VJP, State]]


def _build(
    name: str,
    forward: Forward,
    children: tuple[Layer, ...],
    param_keys: tuple[str, ...] | None,
    init: Init,
    state_keys: tuple[str, ...] | None,
    state_init: StateInit,
    out_shape: OutShape,
    op: str,
) -> Layer:
    """A plain layer when no child is moded (state ``()``, mode irrelevant), a moded one otherwise."""
    if any(child.moded for child in children):
        return moded_layer(
            forward, name, param_keys, init, state_keys, state_init, out_shape=out_shape, op=op, children=children
        )

    def apply(params: PyTree, x: np.ndarray) -> tuple[np.ndarray, VJP]:
        y, vjp, _ = forward(params, x, (), False, None)
        return y, vjp

    return Layer(apply, name, param_keys=param_keys, init=init, out_shape=out_shape, op=op, children=children)


def _same_shapes(who: str, shapes: Sequence[tuple[str, Shape]], rule: str = "") -> None:
    """Raise unless every ``(name, shape)`` has the first one's shape; ``rule`` says why they must."""
    first, expected = shapes[0]
    for name, shape in shapes[1:]:
        if tuple(shape) != tuple(expected):
            raise ValueError(f"{who}: {rule}{name} gives shape {tuple(shape)} but {first} gives {tuple(expected)}")


def pull_back_last(vjp: VJP, dy: np.ndarray, *, need_dx: bool = True) -> tuple[PyTree, np.ndarray | None]:
    """``pull_back(vjp, dy, need_dx=need_dx)`` for the last call of a network's vjp (a training step's),
    handing ``dy`` over (see :mod:`funcnn.layers._handover`): a chain, sandwich or remat then frees each layer's
    kept arrays as soon as that layer's backward has run, and a chain cannot be called again.

    Args:
        vjp: the vjp of a forward pass, called here for the last time.
        dy: the cotangent of the output, shaped like ``y``; reused for ``dx`` only when nothing else holds it.
        need_dx: False to let a vjp that can skip the input's gradient skip it.

    Returns:
        ``(dparams, dx)``, the same as ``vjp(dy)``, with ``dx`` None when it was skipped.

    >>> layer = fn.chain(fn.dense(3), fn.relu)
    >>> _, params = fn.init_params(layer, np.random.default_rng(0), (2,), np.float64)
    >>> y, vjp = layer(params, np.ones((1, 2)))
    >>> dparams, dx = fn.pull_back_last(vjp, np.ones_like(y))
    >>> dx.shape
    (1, 2)
    """
    return hand_over(vjp, [dy], need_dx, last=True)


def _spent(name: str) -> RuntimeError:
    return RuntimeError(f"{name}: its vjp was called with last=True (a training step's) and has freed what it kept")


def _check_layers(who: str, layers: Sequence[Any]) -> tuple[str, tuple[Layer, ...]]:
    """The combination's name and its children (plain functions wrapped as custom layers)."""
    if not layers:
        raise ValueError(f"{who}: needs at least one layer")
    for f in layers:
        if not callable(f):
            raise TypeError(f"{who}: every layer must be callable (params, x) -> (y, vjp), got {f!r}")
    return f"{who}(" + ", ".join(layer_name(f) for f in layers) + ")", tuple(as_layer(f) for f in layers)


def _per_layer(name: str, what: str, tree: PyTree, count: int) -> tuple[PyTree, ...]:
    if not isinstance(tree, (tuple, list)) or len(tree) != count:
        got = f"{type(tree).__name__} of length {len(tree)}" if isinstance(tree, (tuple, list)) else repr(tree)[:80]
        raise TypeError(f"{name}: {what} must be a tuple with one entry per layer ({count}), got {got}")
    return tuple(tree)


# ReLU then max-pool runs as max-pool then ReLU (on a quarter of the values; no ReLU output kept for the
# backward pass). Bitwise the same values and gradients: ReLU is monotone and keeps NaN, so each window's
# first maximum is the same cell, and the gradient is zero exactly where the pooled value is <= 0 or NaN.
# Measured in benchmarks/README.md ("Speed round 3"); False runs every chain in its written order.
POOL_BEFORE_RELU = True


def pool_before_relu(first: Layer, second: Layer, x: Any) -> bool:
    """Whether a chain runs ``second(first(x))`` as ``first(second(x))``: ReLU then a max-pool, on a float 4-D
    array (any other input runs in order, so that the errors name the layer that refuses it).

    Args:
        first: a chain's layer.
        second: the layer after it.
        x: ``first``'s input.

    Returns:
        True when the chain swaps the two (bitwise the same values and gradients; ``POOL_BEFORE_RELU``).
    """
    return (
        POOL_BEFORE_RELU
        and first.op == "relu"
        and second.op == "max_pool"
        and isinstance(x, np.ndarray)
        and x.ndim == 4
        and x.dtype.kind == "f"
    )


@layer_factory
def chain(*layers: LayerFn) -> Layer:
    """Compose layers in order: ``chain(f, g)(params, x) = g(params[1], f(params[0], x))``.

    params: a tuple with one entry per layer. Returns a layer whose ``vjp(dy)`` runs the layers'
    vjps in reverse and returns ``((dp1, dp2, ...), dx)``. A moded chain's state is a tuple with
    one entry per layer (``()`` for stateless ones).

    Args:
        *layers: the layers, applied in order (layers, combinations or plain ``(params, x) -> (y, vjp)`` functions).

    Returns:
        A layer with params a tuple of one entry per layer (and, when moded, a tuple of states).

    >>> net = fn.chain(fn.dense(3), fn.relu, fn.dense(2))
    >>> net.out_shape((5,)), [child.op for child in net.children]
    ((2,), ['affine', 'relu', 'affine'])
    >>> _, params = fn.init_params(net, np.random.default_rng(0), (5,))
    >>> y, vjp = net(params, np.ones((4, 5), np.float32))
    >>> dparams, dx = vjp(np.ones_like(y))
    >>> y.shape, len(dparams), dparams[1], dx.shape
    ((4, 2), 3, (), (4, 5))
    """
    name, children = _check_layers("chain", layers)
    moded = any(child.moded for child in children)

    def forward(params: PyTree, x: np.ndarray, state: State, train: bool, rng: Any) -> tuple[np.ndarray, VJP, State]:
        params = _per_layer(name, "params", params, len(layers))
        states = _per_layer(name, "state", state, len(layers)) if moded else ((),) * len(layers)
        vjps, new_states, done = [], list(states), list[int]()  # done: the layers' indices in the order they ran
        while len(done) < len(children):
            k = len(done)
            swap = k + 1 < len(children) and pool_before_relu(children[k], children[k + 1], x)
            for j in (k + 1, k) if swap else (k,):
                if children[j] is relu and done and sole(x):  # nobody else holds x (a conv's or pool's output)
                    x, layer_vjp = relu_overwriting(params[j], x)  # relu writes into it
                else:
                    x, layer_vjp, new_states[j] = run(children[j], params[j], x, states[j], train=train, rng=rng)
                vjps.append(layer_vjp)
                done.append(j)

        @takes_handover
        def vjp(
            dy: Any, need_dx: bool = True, handed: bool = False, last: bool = False
        ) -> tuple[PyTree, np.ndarray | None]:
            if not vjps:
                raise _spent(name)
            grads: list[PyTree] = [()] * len(vjps)
            d: np.ndarray | None = take(dy, handed)
            del dy
            count = len(vjps)
            for i in range(count):
                assert d is not None  # only the first layer's vjp may skip dx
                # the last call drops each layer's vjp before it runs: its arrays go once it returns
                layer_vjp = vjps.pop() if last else vjps[count - 1 - i]
                if last and vjps and not hasattr(layer_vjp, "recompute") and hasattr(vjps[-1], "recompute"):
                    vjps[-1].recompute()  # the remat before this layer recomputes while the gradient is dy, not dx
                box, d = [d], None  # handed over: each gradient is freed once the layer that reads it is done
                # each layer's grads go back at its own index (a ReLU and its max-pool ran swapped)
                grads[done[count - 1 - i]], d = hand_over(layer_vjp, box, need_dx or i < count - 1, last)
                del layer_vjp
            return tuple(grads), d

        return x, vjp, tuple(new_states) if moded else ()

    def init(
        rng: np.random.Generator, shape: Shape, dtype: np.dtype, weight_scale: WeightScale
    ) -> tuple[Shape, PyTree]:
        params = []
        for f in children:
            shape, p = init_params(f, rng, shape, dtype, weight_scale)
            params.append(p)
        return shape, tuple(params)

    def state_init(shape: Shape, dtype: np.dtype) -> State:
        states = [init_state(children[0], shape, dtype)]
        for before, f in pairwise(children):  # the last layer's output shape is not needed
            shape = output_shape(before, shape)
            states.append(init_state(f, shape, dtype))
        return tuple(states)

    def out_shape(shape: Shape) -> Shape:
        for f in children:
            shape = output_shape(f, shape)
        return shape

    return _build(name, forward, children, None, init, None, state_init, out_shape, "chain")


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
                kind = what[:-1] if what == "params" else what
                raise ValueError(f"{name}: both {seen[key]} and {layer_name(f)} take a {kind} named {key!r}")
            seen[key] = layer_name(f)
    return owned


def _split(name: str, what: str, tree: PyTree, owned: list[tuple[str, ...]]) -> tuple[PyTree, ...]:
    all_keys = sorted(k for keys in owned for k in keys)
    if not all_keys and tree == ():
        return tuple(() for _ in owned)
    if not isinstance(tree, dict) or sorted(tree) != all_keys:
        raise wrong_keys(name, what, all_keys, tree)
    return tuple({k: tree[k] for k in keys} if keys else () for keys in owned)


def children_parts(layer: Layer, tree: PyTree, what: str = "params") -> tuple[PyTree, ...]:
    """Each child's share of a combination's ``tree`` (``what``: "params" or "state"), split as the
    combination itself splits it: one entry per child for chain and fan_out, each child's keys of the merged
    dict for sandwich, the whole tree for residual and bind. A wrong tree is the combination's own error."""
    if layer.op in ("residual", "bind", "remat"):
        return (tree,)
    if what == "state" and not layer.moded:
        return ((),) * len(layer.children)
    if layer.op == "sandwich":
        return _split(layer.name, what, tree, _owners(layer.name, layer.children, what))
    return _per_layer(layer.name, what, tree, len(layer.children))


def _merge(parts: Sequence[PyTree]) -> PyTree:
    merged = {k: v for part in parts if part != () for k, v in part.items()}
    return merged if merged else ()


@layer_factory
def sandwich(*layers: LayerFn) -> Layer:
    """Compose layers in order, with their params merged into one flat dict.

    Each layer gets the keys it declares (``()`` when it declares none): ``sandwich(conv(...), relu)``
    takes ``{"w", "b"}``. Two layers declaring the same key is an error here, at build time.
    Returns a layer whose ``vjp(dy)`` returns the merged dict of gradients and ``dx``. A moded
    sandwich's state is the merged dict of its layers' states.

    Args:
        *layers: the layers, applied in order; two of them must not declare the same param key.

    Returns:
        A layer whose params (and state) are one flat dict merging its layers'.

    >>> block = fn.sandwich(fn.dense(3), fn.relu)
    >>> block.param_keys
    ('w', 'b')
    >>> _, params = fn.init_params(block, np.random.default_rng(0), (5,))
    >>> {key: value.shape for key, value in params.items()}
    {'w': (5, 3), 'b': (3,)}
    """
    name, children = _check_layers("sandwich", layers)
    owned = _owners(name, layers, "params")
    owned_state = _owners(name, layers, "state")
    inner = chain(*children)
    moded = inner.moded

    def forward(params: PyTree, x: np.ndarray, state: State, train: bool, rng: Any) -> tuple[np.ndarray, VJP, State]:
        parts = _split(name, "params", params, owned)
        states = _split(name, "state", state, owned_state) if moded else ()
        y, chain_vjp, new_states = run(inner, parts, x, states, train=train, rng=rng)

        @takes_handover
        def vjp(
            dy: Any, need_dx: bool = True, handed: bool = False, last: bool = False
        ) -> tuple[PyTree, np.ndarray | None]:
            grads, dx = hand_over(chain_vjp, dy if handed else [dy], need_dx, last)
            return _merge(grads), dx

        return y, vjp, _merge(new_states) if moded else ()

    def init(
        rng: np.random.Generator, shape: Shape, dtype: np.dtype, weight_scale: WeightScale
    ) -> tuple[Shape, PyTree]:
        shape, params = init_params(inner, rng, shape, dtype, weight_scale)
        return shape, _merge(params)

    def state_init(shape: Shape, dtype: np.dtype) -> State:
        return _merge(init_state(inner, shape, dtype))

    param_keys = tuple(k for keys in owned for k in keys)
    state_keys = tuple(k for keys in owned_state for k in keys)

    def out_shape(shape: Shape) -> Shape:
        return output_shape(inner, shape)

    return _build(name, forward, children, param_keys, init, state_keys, state_init, out_shape, "sandwich")


@layer_factory
def fan_out(*branches: LayerFn) -> Layer:
    """Feed the same input to every branch and sum their outputs: ``y = sum_i f_i(params[i], x)``.

    params (and a moded fan-out's state): a tuple with one entry per branch. The outputs must have
    one shape. ``vjp(dy)`` returns ``((dp_1, ...), dx)`` with ``dx`` the sum of every branch's dx:
    an input used twice gets the gradient of both uses.

    Args:
        *branches: layers given the same input, whose outputs have one shape.

    Returns:
        A layer ``y = sum_i f_i(params[i], x)``; params a tuple of one entry per branch.

    >>> both = fn.fan_out(fn.identity, fn.relu)               # y = x + relu(x)
    >>> y, vjp = both(((), ()), np.array([[-1.0, 2.0]]))
    >>> y
    array([[-1.,  4.]])
    >>> vjp(np.ones_like(y))
    (((), ()), array([[1., 2.]]))
    """
    name, children = _check_layers("fan_out", branches)
    moded = any(child.moded for child in children)

    def forward(params: PyTree, x: np.ndarray, state: State, train: bool, rng: Any) -> tuple[np.ndarray, VJP, State]:
        params = _per_layer(name, "params", params, len(children))
        states = _per_layer(name, "state", state, len(children)) if moded else ((),) * len(children)
        outs = [run(f, p, x, s, train=train, rng=rng) for f, p, s in zip(children, params, states)]
        _same_shapes(name, [(f.name, out[0].shape) for f, out in zip(children, outs)])
        y = sum((out[0] for out in outs[1:]), outs[0][0])

        def vjp(dy: np.ndarray) -> tuple[PyTree, np.ndarray]:
            grads = [out[1](dy) for out in outs]
            return tuple(g[0] for g in grads), sum((g[1] for g in grads[1:]), grads[0][1])

        return y, vjp, tuple(out[2] for out in outs) if moded else ()

    def init(
        rng: np.random.Generator, shape: Shape, dtype: np.dtype, weight_scale: WeightScale
    ) -> tuple[Shape, PyTree]:
        results = [init_params(f, rng, shape, dtype, weight_scale) for f in children]
        _same_shapes(name, [(f.name, out) for f, (out, _) in zip(children, results)])
        return results[0][0], tuple(p for _, p in results)

    def state_init(shape: Shape, dtype: np.dtype) -> State:
        return tuple(init_state(f, shape, dtype) for f in children)

    def out_shape(shape: Shape) -> Shape:
        shapes = [(f.name, output_shape(f, shape)) for f in children]
        _same_shapes(name, shapes)
        return shapes[0][1]

    return _build(name, forward, children, None, init, None, state_init, out_shape, "fan_out")


def _identity(params: PyTree, x: np.ndarray) -> tuple[np.ndarray, VJP]:
    """``y = x``, any shape; params ``()``. Returns a read-only view of ``x`` and ``vjp(dy) -> ((), dy)``
    (a read-only view of ``dy``), so writing into the output cannot change the caller's array.

    >>> x = np.ones(3)
    >>> y, vjp = fn.identity((), x)
    >>> y.flags.writeable, bool(np.shares_memory(y, x))       # a read-only view of x
    (False, True)
    """
    no_params("identity", params)
    x = float_array("identity", "x", x)
    return read_only(x), lambda dy: ((), read_only(cotangent("identity", dy, x)))


identity = Layer(_identity, "identity", param_keys=(), out_shape=same_shape_as_input("identity"), op="identity")


@layer_factory
def residual(f: LayerFn) -> Layer:
    """``y = x + f(params, x)``, a skip connection around ``f`` (params and state are ``f``'s);
    ``f`` must keep the input's shape. The gradient of ``x`` adds the skip and ``f``'s path.

    Args:
        f: a layer that keeps its input's shape.

    Returns:
        The layer ``x + f(params, x)``, with ``f``'s params and state.

    >>> block = fn.residual(fn.tanh)                          # y = x + tanh(x)
    >>> y, vjp = block((), np.array([[0.0, 1.0]]))
    >>> vjp(np.ones_like(y))[1].round(3)                      # 1 + tanh'(x)
    array([[2.  , 1.42]])
    """
    child = as_layer(f)
    name = f"residual({child.name})"

    def same_as_x(x_shape: Shape, f_shape: Shape) -> None:
        rule = f"{child.name} must keep the shape of x {x_shape}: "
        _same_shapes(name, [("x", x_shape), (child.name, f_shape)], rule)

    def forward(params: PyTree, x: np.ndarray, state: State, train: bool, rng: Any) -> tuple[np.ndarray, VJP, State]:
        x = float_array(name, "x", x)
        fx, f_vjp, new_state = run(child, params, x, state, train=train, rng=rng)
        same_as_x(x.shape, fx.shape)
        y, out = x + fx, like(x)

        def vjp(dy: np.ndarray) -> tuple[PyTree, np.ndarray]:
            dy = cotangent(name, dy, out)
            grads, dx = f_vjp(dy)
            return grads, dx + dy

        return y, vjp, new_state

    def init(
        rng: np.random.Generator, shape: Shape, dtype: np.dtype, weight_scale: WeightScale
    ) -> tuple[Shape, PyTree]:
        out, params = init_params(child, rng, shape, dtype, weight_scale)
        same_as_x(tuple(shape), out)
        return out, params

    def state_init(shape: Shape, dtype: np.dtype) -> State:
        return init_state(child, shape, dtype)

    def out_shape(shape: Shape) -> Shape:
        same_as_x(tuple(shape), output_shape(child, shape))
        return tuple(shape)

    return _build(name, forward, (child,), child.param_keys, init, child.state_keys, state_init, out_shape, "residual")


REMAT_POLICIES = ("nothing", "products")
PRODUCTS = ("conv", "affine")


def _generator_at(start: tuple[type, Any] | None) -> np.random.Generator | None:
    """A fresh generator in the state ``start`` recorded (``None`` for none)."""
    if start is None:
        return None
    bit_generator = start[0]()
    bit_generator.state = start[1]
    return np.random.Generator(bit_generator)


def _keeping_products(f: Layer, tape: list[Any]) -> Layer:
    """``f`` rebuilt so that its conv and affine layers (inside chains and sandwiches) record their
    ``(y, vjp)`` on ``tape[0]`` when ``tape[1]`` is "record", and replay them when it is "replay"."""
    if f.op in PRODUCTS and not f.moded:

        def apply(params: PyTree, x: np.ndarray) -> tuple[np.ndarray, VJP]:
            if tape[1] == "replay":
                y, vjp = tape[0][tape[2]]
                tape[2] += 1
                return y, vjp
            y, vjp = f(params, x)
            tape[0].append((y, vjp))
            return y, vjp

        return Layer(
            apply, f.name, param_keys=f.param_keys, init=f.init, out_shape=f.out_shape, op=f.op, hparams=f.hparams
        )
    if f.op in ("chain", "sandwich"):
        children = [_keeping_products(child, tape) for child in f.children]
        return chain(*children) if f.op == "chain" else sandwich(*children)
    return f


@layer_factory
def remat(f: LayerFn, policy: str = "nothing") -> Layer:
    """``f`` rematerialized (``jax.checkpoint``): its forward pass keeps only ``x`` (and params, state
    and the random generator's state), and its vjp runs ``f``'s forward again to pull back, trading
    a second forward pass for the memory of ``f``'s activations. Same params, state, output shape
    and answers (bitwise) as ``f``; dropout draws the same mask in both passes.

    ``policy``: "nothing" keeps nothing of ``f``'s inside; "products" keeps the outputs and vjps of
    the conv and affine layers inside ``f``'s chains and sandwiches, so the backward pass re-runs
    only the cheap layers between them (norms, activations, pools, dropout).

    Args:
        f: the block to recompute.
        policy: ``"nothing"`` keeps only the block's input; ``"products"`` also the outputs of its convs and affines.

    Returns:
        A layer with ``f``'s params, state, shapes and answers, whose vjp runs ``f``'s forward pass again.

    >>> block = fn.remat(fn.sandwich(fn.dense(3), fn.relu))
    >>> _, params = fn.init_params(block, np.random.default_rng(0), (5,))
    >>> y, vjp = block(params, np.ones((2, 5), np.float32))
    >>> y.shape, sorted(vjp(np.ones_like(y))[0])
    ((2, 3), ['b', 'w'])
    """
    child = as_layer(f)
    if policy not in REMAT_POLICIES:
        raise ValueError(f"remat({child.name}): policy must be one of {REMAT_POLICIES}, got {policy!r}")
    tape: list[Any] = [[], "off", 0]
    inner = _keeping_products(child, tape) if policy == "products" else child
    name = f"remat({child.name}, policy={policy!r})"

    def forward(params: PyTree, x: np.ndarray, state: State, train: bool, rng: Any) -> tuple[np.ndarray, VJP, State]:
        start = (type(rng.bit_generator), rng.bit_generator.state) if isinstance(rng, np.random.Generator) else None
        if policy == "products":
            tape[:] = [[], "record", 0]
        try:
            y, _, new_state = run(inner, params, x, state, train=train, rng=rng)  # f's vjp is dropped here
        finally:
            kept, tape[:] = tape[0], [[], "off", 0]

        prepared: list[VJP] = []

        def recompute() -> None:
            """Run f's forward again now, for the vjp's next call: a training step's chain calls it before
            the backward pass of the layer after this one, whose dy is often smaller than its dx."""
            saved = list(tape)
            tape[:] = [kept, "replay", 0]
            try:
                prepared.append(run(inner, params, x, state, train=train, rng=_generator_at(start))[1])
            finally:
                tape[:] = saved

        @takes_handover
        def vjp(
            dy: Any, need_dx: bool = True, handed: bool = False, last: bool = False
        ) -> tuple[PyTree, np.ndarray | None]:
            if not prepared:
                recompute()
            again = prepared.pop()
            return hand_over(again, dy if handed else [dy], need_dx, last)

        vjp.recompute = recompute  # type: ignore[attr-defined]
        return y, vjp, new_state

    hparams = {"policy": policy}
    if child.moded:
        return moded_layer(
            forward, name, child.param_keys, child.init, child.state_keys, child.state_init,
            out_shape=child.out_shape, op="remat", hparams=hparams, children=(child,),
        )  # fmt: skip

    def apply(params: PyTree, x: np.ndarray) -> tuple[np.ndarray, VJP]:
        y, vjp, _ = forward(params, x, (), False, None)
        return y, vjp

    return Layer(apply, name, param_keys=child.param_keys, init=child.init, out_shape=child.out_shape, op="remat",
                 hparams=hparams, children=(child,))  # fmt: skip


@layer_factory
def remat_chain(*layers: LayerFn, every: int = 1, policy: str = "nothing") -> Layer:
    """``chain(*layers)`` with every run of ``every`` consecutive layers (blocks) wrapped in
    :func:`remat`: params are a tuple with one entry per group, each the group's chain params (a
    group of one holds that layer's params directly).

    Args:
        *layers: the layers, applied in order.
        every: how many consecutive layers form one recomputed block, ``>= 1``.
        policy: as in :func:`remat`.

    Returns:
        A layer with params a tuple of one entry per block.

    >>> net = fn.remat_chain(fn.dense(4), fn.relu, fn.dense(2), every=2)
    >>> [child.name for child in net.children]
    ["remat(chain(affine(4), relu), policy='nothing')", "remat(affine(2), policy='nothing')"]
    """
    every = int(every)
    if every < 1:
        raise ValueError(f"remat_chain: every must be >= 1, got {every}")
    groups = [layers[i : i + every] for i in range(0, len(layers), every)]
    return chain(*(remat(group[0] if len(group) == 1 else chain(*group), policy) for group in groups))
