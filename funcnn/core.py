"""The layer type: a pure function ``(params, x) -> (y, vjp)`` with a name and its parameter keys.

Layers that keep state (batch norm's running statistics) or behave differently in training and
evaluation (dropout) are *moded*: they run as ``layer.run(params, x, state, train=..., rng=...) ->
(y, vjp, new_state)``, with the mode, the state and the random generator passed in every call.
``bind`` fixes those to give back a plain ``(params, x) -> (y, vjp)`` layer.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from dataclasses import KW_ONLY, dataclass, field, replace
from types import MappingProxyType
from typing import Any, Generic, ParamSpec, Protocol, TypeVar

import numpy as np
from typing_extensions import override

from funcnn._checks import no_state
from funcnn.tree import PyTree, tree_leaves, tree_map

__all__ = [
    "VJP",
    "Init",
    "Layer",
    "LayerFn",
    "OpRules",
    "OutShape",
    "Run",
    "Shape",
    "State",
    "WeightScale",
    "bind",
    "layer",
    "layer_factory",
    "output_shape",
    "pull_back",
    "run",
    "skips_dx",
]

VJP = Callable[[np.ndarray], tuple[PyTree, np.ndarray]]


class LayerFn(Protocol):
    """The layer protocol: ``layer(params, x) -> (y, vjp)`` with ``vjp(dy) -> (dparams, dx)``."""

    def __call__(self, params: PyTree, x: np.ndarray, /) -> tuple[np.ndarray, VJP]: ...


Shape = tuple[int, ...]
# out_shape(input_shape) -> output_shape, per example (no N), from shapes alone.
OutShape = Callable[[Shape], Shape]
WeightScale = float | str
# init(rng, input_shape, dtype, weight_scale) -> (output_shape, params); shapes are per example (no N).
Init = Callable[[np.random.Generator, Shape, np.dtype, WeightScale], tuple[Shape, PyTree]]
State = PyTree
# run(params, x, state, train, rng) -> (y, vjp, new_state): the call of a moded layer.
Run = Callable[[PyTree, np.ndarray, State, bool, "np.random.Generator | None"], tuple[np.ndarray, VJP, State]]
StateInit = Callable[[Shape, np.dtype], State]


@dataclass(frozen=True, eq=False)
class Layer:
    """A named pure layer. Calling it is calling ``apply``: ``layer(params, x) -> (y, vjp)``.

    ``Layer(apply, name, param_keys=..., ...)``: the fields after ``name`` are keyword-only.
    ``param_keys`` says what params the layer takes: ``()`` for none (params ``()``), a tuple of
    names for a flat dict with exactly those keys, or ``None`` for any other tree (a chain's tuple).
    ``sandwich`` uses it to merge its layers' dicts. ``init``, when the layer knows its sizes,
    makes its params from an input shape (see :func:`funcnn.init_params`).

    A moded layer has ``run_fn``; its state is described by ``state_keys`` (like ``param_keys``)
    and made by ``state_init(input_shape, dtype)``. Calling it without a mode is an error that
    says how to call it.

    What the layer is, for tools that read a network without running it: ``out_shape(in_shape)``,
    the output shape of one example from its input shape (``None`` for a user's function that did
    not give it); ``op``, its kind ("conv", "chain", ..., "custom" for a user's function);
    ``hparams``, its hyperparameters (read-only); ``children``, the layers it combines. ``doc``
    is what ``help(layer)`` shows (the factory's docstring, else ``apply``'s).
    """

    apply: LayerFn
    name: str
    _: KW_ONLY
    param_keys: tuple[str, ...] | None = ()
    init: Init | None = None
    run_fn: Run | None = None
    state_keys: tuple[str, ...] | None = ()
    state_init: StateInit | None = None
    out_shape: OutShape | None = None
    op: str = "custom"
    hparams: Mapping[str, Any] = field(default_factory=dict)
    children: tuple[Layer, ...] = ()
    doc: str | None = None

    @property
    def moded(self) -> bool:
        """True when the layer needs ``run`` (a mode, maybe a state or a random generator)."""
        return self.run_fn is not None

    def run(
        self, params: PyTree, x: np.ndarray, state: State = (), *, train: bool, rng: np.random.Generator | None = None
    ) -> tuple[np.ndarray, VJP, State]:
        """``(y, vjp, new_state)`` in training (``train=True``) or evaluation mode. ``state`` is
        never modified: the new one is returned. A layer that is not moded returns state ``()``.

        Args:
            params: the layer's params.
            x: the input batch.
            state: its state (``()`` for a stateless layer).
            train: training mode (batch statistics, dropout) or evaluation mode.
            rng: the generator dropout draws its masks from (needed in training).

        Returns:
            ``(y, vjp, new_state)``.
        """
        if not isinstance(train, (bool, np.bool_)):
            raise TypeError(f"{self.name}: train must be True or False, got {train!r}")
        if self.run_fn is None:
            return run(self.apply, params, x, state, train=train, rng=rng)
        return self.run_fn(params, x, state, bool(train), rng)

    def __post_init__(self) -> None:
        object.__setattr__(self, "hparams", MappingProxyType(dict(self.hparams)))
        # help(layer) shows what the factory or the wrapped function documents.
        object.__setattr__(self, "__doc__", self.doc or self.apply.__doc__ or type(self).__doc__)

    def __call__(self, params: PyTree, x: np.ndarray) -> tuple[np.ndarray, VJP]:
        return self.apply(params, x)

    @override
    def __repr__(self) -> str:
        return self.name


def layer(
    apply: LayerFn,
    name: str | None = None,
    param_keys: tuple[str, ...] | None = (),
    init: Init | None = None,
    out_shape: OutShape | None = None,
) -> Layer:
    """Wrap a user function ``apply(params, x) -> (y, vjp)`` as a :class:`Layer` (op ``"custom"``).

    Needed to put a function with a dict of params inside ``sandwich``, which must know its keys,
    or to give :func:`funcnn.init_params` what it needs: ``init`` to make its params and
    ``out_shape(input_shape) -> output_shape`` (one example, no batch axis) for the layers after it,
    e.g. ``out_shape=lambda shape: shape`` for an elementwise function.

    Args:
        apply: the function ``apply(params, x) -> (y, vjp)``.
        name: the layer's name in errors and summaries (default: the function's).
        param_keys: the keys of its dict params, for ``sandwich``; ``None`` for any params tree.
        init: ``init(rng, input_shape, dtype, weight_scale) -> params``, for :func:`funcnn.init_params`.
        out_shape: ``out_shape(input_shape) -> output_shape`` for one example (no batch axis).

    Returns:
        A :class:`Layer` of op ``"custom"`` that calls ``apply``.

    >>> def double(params, x):
    ...     return 2 * x, lambda dy: ((), 2 * dy)
    >>> net = fn.chain(fn.dense(3), fn.layer(double, out_shape=lambda shape: shape), fn.dense(2))
    >>> fn.init_params(net, np.random.default_rng(0), (4,))[0]
    (2,)
    """
    return Layer(
        apply, name or str(getattr(apply, "__name__", "layer")), param_keys=param_keys, init=init, out_shape=out_shape
    )


P = ParamSpec("P")


def layer_factory(factory: Callable[P, Layer]) -> Callable[P, Layer]:
    """Decorate a function that makes a layer: ``help()`` of the layer it makes shows the factory's docstring.

    >>> @fn.core.layer_factory
    ... def doubling() -> fn.Layer:
    ...     "Doubles its input."
    ...     return fn.layer(lambda params, x: (2 * x, lambda dy: ((), 2 * dy)), "doubling")
    >>> doubling().__doc__
    'Doubles its input.'
    """

    @functools.wraps(factory)
    def make(*args: P.args, **kwargs: P.kwargs) -> Layer:
        return replace(factory(*args, **kwargs), doc=factory.__doc__)

    return make


def moded_layer(
    run_fn: Run,
    name: str,
    param_keys: tuple[str, ...] | None = (),
    init: Init | None = None,
    state_keys: tuple[str, ...] | None = (),
    state_init: StateInit | None = None,
    *,
    out_shape: OutShape | None = None,
    op: str = "custom",
    hparams: Mapping[str, Any] | None = None,
    children: tuple[Layer, ...] = (),
    doc: str | None = None,
) -> Layer:
    """A :class:`Layer` with a mode (train/eval), randomness or state: it must be called with ``run``;
    a plain call explains how. :func:`bind` makes it a plain layer (for ``check_vjp``).

    Args:
        run_fn: ``run_fn(params, x, state, train, rng) -> (y, vjp, new_state)``; ``rng`` is a
            ``np.random.Generator`` or None, and the new state is returned, never written into ``state``.
        name: the layer's name, shown in errors and summaries.
        param_keys: the keys of its params dict (``()`` for none, None when they are not a flat dict).
        init: ``init(rng, input_shape, dtype, weight_scale) -> (output_shape, params)``.
        state_keys: the keys of its state dict.
        state_init: ``state_init(input_shape, dtype) -> state``, the state before the first step.
        out_shape: ``out_shape(input_shape) -> output_shape`` (one example, no batch axis).
        op: the op the analyses (costs, export) know it by; "custom" for a user's layer.
        hparams: its hyperparameters, shown by ``summary``.
        children: the layers it is built of.
        doc: the docstring shown for it (``help(layer)``).

    Returns:
        The moded :class:`Layer`: ``layer.run(params, x, state, train=..., rng=...) -> (y, vjp, new_state)``.
    """

    def apply(params: PyTree, x: np.ndarray) -> tuple[np.ndarray, VJP]:
        raise TypeError(
            f"{name} needs a mode: call layer.run(params, x, state, train=True/False, rng=...) or make a plain "
            "layer with funcnn.bind(layer, state, train=..., rng=...)"
        )

    return Layer(
        apply,
        name,
        param_keys=param_keys,
        init=init,
        run_fn=run_fn,
        state_keys=state_keys,
        state_init=state_init,
        out_shape=out_shape,
        op=op,
        hparams=hparams or {},
        children=children,
        doc=doc,
    )


def run(
    f: LayerFn, params: PyTree, x: np.ndarray, state: State = (), *, train: bool, rng: np.random.Generator | None = None
) -> tuple[np.ndarray, VJP, State]:
    """:meth:`Layer.run` for any layer, including a plain function ``(params, x) -> (y, vjp)``.

    Args:
        f: a layer or a plain ``(params, x) -> (y, vjp)`` function.
        params: its params.
        x: the input batch.
        state: its state (``()`` for a stateless layer).
        train: training mode (batch statistics, dropout) or evaluation mode.
        rng: the generator dropout draws its masks from (needed in training).

    Returns:
        ``(y, vjp, new_state)``; the state passed in is left as it was.
    """
    if isinstance(f, Layer) and f.moded:
        return f.run(params, x, state, train=train, rng=rng)
    no_state(layer_name(f), state)
    y, vjp = f(params, x)
    return y, vjp, ()


@layer_factory
def bind(f: LayerFn, state: State = (), *, train: bool, rng: np.random.Generator | None = None) -> Layer:
    """A plain layer ``(params, x) -> (y, vjp)`` running ``f`` in a fixed mode from a fixed state.

    Every call starts ``rng`` from the state it had when bound, so dropout draws the same mask each
    time: exactly what ``check_vjp`` needs. The bound state's float arrays take the dtype of ``x``
    (so a float32 state serves ``check_vjp``'s float64 run). The new state is dropped.

    Args:
        f: a layer, moded or not.
        state: the state to run from (kept for every call).
        train: the mode.
        rng: the generator, restarted from its present state at every call.

    Returns:
        A plain layer ``(params, x) -> (y, vjp)`` that drops the new state.

    >>> layer = fn.bind(fn.dropout(0.5), train=True, rng=np.random.default_rng(0))
    >>> x = np.ones((2, 4))
    >>> bool((layer((), x)[0] == layer((), x)[0]).all())      # the same mask every call
    True
    """
    start = None if rng is None else (type(rng.bit_generator), rng.bit_generator.state)

    def apply(params: PyTree, x: np.ndarray) -> tuple[np.ndarray, VJP]:
        generator = None
        if start is not None:
            bit_generator = start[0]()
            bit_generator.state = start[1]
            generator = np.random.Generator(bit_generator)
        dtype = next((a.dtype for a in map(np.asarray, tree_leaves(x)) if a.dtype.kind == "f"), np.dtype(np.float64))
        cast = tree_map(lambda a: a.astype(dtype, copy=False) if np.asarray(a).dtype.kind == "f" else a, state)
        y, vjp, _ = run(f, params, x, cast, train=train, rng=generator)
        return y, vjp

    child = as_layer(f)
    return Layer(
        apply,
        f"bind({child.name}, train={train})",
        param_keys=child.param_keys,
        init=child.init,
        out_shape=child.out_shape,
        op="bind",
        hparams={"train": train},
        children=(child,),
    )


def skips_dx(vjp: Callable[..., tuple[PyTree, Any]]) -> VJP:
    """Mark a vjp that also takes ``need_dx=False`` and then returns ``(dparams, None)``, sparing the
    work of ``dx`` (a network's first layer, whose input is data). ``vjp(dy)`` stays the contract.

    Args:
        vjp: a vjp that accepts ``need_dx=False``.

    Returns:
        The same function, marked for :func:`pull_back`.
    """
    vjp.skips_dx = True  # type: ignore[attr-defined]
    return vjp


def pull_back(vjp: VJP, dy: np.ndarray, *, need_dx: bool = True) -> tuple[PyTree, np.ndarray | None]:
    """``vjp(dy) -> (dparams, dx)``; with ``need_dx=False``, a vjp marked by :func:`skips_dx` may
    return ``dx = None`` instead of computing it. Any other vjp is called as ``vjp(dy)``.

    Args:
        vjp: a vjp from a forward pass.
        dy: the cotangent of the output, shaped like ``y``.
        need_dx: False to let a vjp marked by :func:`skips_dx` skip the input's gradient.

    Returns:
        ``(dparams, dx)``, with ``dx`` None when it was skipped.
    """
    if not need_dx and getattr(vjp, "skips_dx", False):
        return vjp(dy, need_dx=False)  # type: ignore[call-arg]
    return vjp(dy)


def as_layer(f: LayerFn) -> Layer:
    """``f`` itself when it is a :class:`Layer`, else a custom layer of it taking any params tree."""
    return f if isinstance(f, Layer) else Layer(f, layer_name(f), param_keys=None)


def output_shape(f: LayerFn, input_shape: Shape) -> Shape:
    """The output shape of one example after ``f`` (no batch axis), from its ``out_shape``; a clear
    error when ``f`` has none."""
    if isinstance(f, Layer) and f.out_shape is not None:
        return tuple(f.out_shape(tuple(input_shape)))
    name = layer_name(f)
    raise TypeError(
        f"{name} does not say its output shape, so the shapes after it are unknown: wrap it with "
        f"fn.layer({name}, out_shape=lambda shape: ...) (one example's shape in, its output shape out)"
    )


def layer_name(f: Any) -> str:
    """A readable name for a layer or a plain function, for messages."""
    return f.name if isinstance(f, Layer) else getattr(f, "__name__", repr(f))


Rule = TypeVar("Rule", bound=Callable[..., Any])


class OpRules(Generic[Rule]):
    """One analysis's rules by layer op (``op -> rule``), filled by :meth:`register`; a layer whose op has
    no rule is a LookupError naming the analysis and how to add one, never a silent default.

    >>> from funcnn.core import OpRules
    >>> double = OpRules("doubling rule", "@double.register(op)")
    >>> @double.register("relu")
    ... def relu_twice(layer):
    ...     return 2
    >>> double.of(fn.relu)(fn.relu)
    2
    """

    def __init__(self, what: str, how: str) -> None:
        self.what, self.how = what, how
        self._rules: dict[str, Rule] = {}

    def register(self, *ops: str) -> Callable[[Rule], Rule]:
        """A decorator: the function becomes the rule of ``ops``; an op given a second rule is a ValueError."""

        def add(rule: Rule) -> Rule:
            for op in ops:
                if op in self._rules:
                    raise ValueError(f"op {op!r} already has a {self.what}: {self._rules[op].__name__}")
                self._rules[op] = rule
            return rule

        return add

    def of(self, layer: Layer) -> Rule:
        """The rule of ``layer``'s op."""
        if layer.op not in self._rules:
            raise LookupError(f"{layer.name} (op {layer.op!r}) has no {self.what}: add one with {self.how}")
        return self._rules[layer.op]

    @property
    def ops(self) -> frozenset[str]:
        """The ops that have a rule."""
        return frozenset(self._rules)
