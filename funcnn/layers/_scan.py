"""``scan``: run a cell layer over the time axis of its inputs, in the spirit of ``jax.lax.scan``."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from funcnn._checks import int_at_least, tuple_input
from funcnn.core import VJP, Layer, LayerFn, State, WeightScale, as_layer, layer_factory, moded_layer
from funcnn.tree import (
    PyTree,
    TreeDef,
    is_shape,
    keystr,
    tree_flatten,
    tree_leaves,
    tree_leaves_with_path,
    tree_map,
    tree_structure,
    tree_unflatten,
)


@dataclass(frozen=True, eq=False)
class Outer:
    """A parameter gradient ``a.T @ b`` (``a`` (N, K), ``b`` (N, M)) left unmultiplied, so that
    :func:`scan` sums it over all steps in one matrix product instead of one per step."""

    a: np.ndarray
    b: np.ndarray


def gives_outer(vjp: Callable[..., tuple[PyTree, Any]]) -> VJP:
    """Mark a cell's vjp that also takes ``outer=True`` and may then return some parameter gradients
    as :class:`Outer` (called plainly, it returns arrays, as every vjp does)."""
    vjp.gives_outer = True  # type: ignore[attr-defined]
    return vjp


class _GradSum:
    """The sum of the steps' parameter gradients, added in place into one copy of the first; the
    :class:`Outer` terms of a leaf are kept and multiplied once, all steps stacked, by :meth:`total`."""

    def __init__(self) -> None:
        self.treedef: TreeDef | None = None
        self.dense: list[np.ndarray | None] = []
        self.factors: list[tuple[list[np.ndarray], list[np.ndarray]]] = []
        self.keys: list[str] = []  # the keys in tree order when the gradients are a flat dict of leaves

    def add(self, dparams: PyTree) -> None:
        if self.keys and type(dparams) is dict and dparams.keys() == set(self.keys):  # a flat dict, as at step one
            leaves = [dparams[key] for key in self.keys]
        else:
            leaves, treedef = tree_flatten(dparams)
            if self.treedef is None:
                self.treedef, self.dense, self.factors = treedef, [None] * len(leaves), [([], []) for _ in leaves]
                flat = type(dparams) is dict and all(tree_structure(v) == tree_structure(0) for v in dparams.values())
                self.keys = sorted(dparams) if flat else []
        for i, leaf in enumerate(leaves):
            if isinstance(leaf, Outer):
                self.factors[i][0].append(leaf.a)
                self.factors[i][1].append(leaf.b)
            else:
                dense = self.dense[i]
                if dense is None:
                    self.dense[i] = np.array(leaf)  # a copy, summed into in place
                else:
                    np.add(dense, leaf, out=dense)

    def total(self) -> PyTree:
        leaves = []
        for dense, (a, b) in zip(self.dense, self.factors):
            if a:
                product = _joined(a).T @ _joined(b)
                dense = product if dense is None else dense + product
            leaves.append(dense)
        return tree_unflatten(self.treedef, leaves) if self.treedef is not None else None


def _joined(arrays: list[np.ndarray]) -> np.ndarray:
    """``np.concatenate(arrays)`` (2-D, along axis 0), or a view when they already lie one after another
    in one C-contiguous buffer (cells that take their steps' arrays from one allocation)."""
    first = arrays[0]
    base = first.base
    if not isinstance(base, np.ndarray) or not base.flags.c_contiguous:
        return np.concatenate(arrays)
    same = all(a.base is base and a.flags.c_contiguous and a.dtype == first.dtype for a in arrays)
    if not same or any(b.ctypes.data != a.ctypes.data + a.nbytes or b.shape[1:] != a.shape[1:]
                       for a, b in zip(arrays, arrays[1:])):  # fmt: skip
        return np.concatenate(arrays)
    rows = sum(a.shape[0] for a in arrays)
    return np.ndarray((rows, *first.shape[1:]), first.dtype, buffer=base, offset=first.ctypes.data - _address(base))


def _address(a: np.ndarray) -> int:
    return int(a.ctypes.data)


def _map_shapes(f: Any, shapes: Any) -> Any:
    """``f`` applied to every shape (a tuple of ints) of a tree of shapes."""
    return f(shapes) if is_shape(shapes) else tuple(_map_shapes(f, s) for s in shapes)


def _carry_check(name: str, carry: PyTree) -> Callable[[int, PyTree], None]:
    """A check that a cell's new carry has the structure, shapes and dtypes of ``carry``."""
    structure = tree_structure(carry)
    described = [(path, np.shape(a), np.asarray(a).dtype) for path, a in tree_leaves_with_path(carry)]

    flat = list(carry) if type(carry) is tuple else [carry]
    simple = all(type(a) is np.ndarray for a in flat)  # an array or a tuple of arrays: checked without trees
    kinds = [(a.shape, a.dtype) for a in flat] if simple else []

    def same_arrays(after: PyTree) -> bool:
        parts = after if type(after) is tuple else (after,)
        if type(after) is not type(carry) or len(parts) != len(kinds):
            return False
        return all(
            type(b) is np.ndarray and b.shape == shape and b.dtype == dtype for b, (shape, dtype) in zip(parts, kinds)
        )

    def check(step: int, after: PyTree) -> None:
        if simple and same_arrays(after):
            return
        if tree_structure(after) != structure:
            raise ValueError(
                f"{name}: at step {step} the cell returned a carry of structure {tree_structure(after)!r}, "
                f"but it got one of structure {structure!r}"
            )
        for (path, shape, dtype), b in zip(described, tree_leaves(after)):
            if np.shape(b) != shape or np.asarray(b).dtype != dtype:
                b = np.asarray(b)
                raise ValueError(
                    f"{name}: at step {step} the cell returned {keystr(path, 'carry')} of shape {b.shape} ({b.dtype}), "
                    f"but it got shape {shape} ({dtype}); the carry must keep its shapes and dtypes"
                )

    return check


def _sequence_axes(name: str, xs: PyTree) -> int:
    """T, the length of axis 1 shared by every leaf of ``xs`` (each ``(N, T, ...)``)."""
    leaves = [np.asarray(leaf) for leaf in tree_leaves(xs)]
    if not leaves or any(leaf.ndim < 2 for leaf in leaves):
        shapes = [leaf.shape for leaf in leaves]
        raise ValueError(f"{name}: xs must be arrays (or a tree of arrays) of shape (N, T, ...), got shapes {shapes}")
    if len({leaf.shape[:2] for leaf in leaves}) > 1:
        raise ValueError(f"{name}: every leaf of xs must share (N, T), got shapes {[leaf.shape for leaf in leaves]}")
    if leaves[0].shape[1] < 1:
        raise ValueError(f"{name}: xs must have at least one time step, got shapes {[leaf.shape for leaf in leaves]}")
    return int(leaves[0].shape[1])


def _at(tree: PyTree, t: int) -> PyTree:
    if isinstance(tree, np.ndarray):
        return tree[:, t]
    return tree_map(lambda a: np.asarray(a)[:, t], tree)


def _stack(trees: list[PyTree], view: bool = False) -> PyTree:
    """Per-step trees stacked along axis 1; a leaf None at every step (an integer input's cotangent) stays None.
    With ``view``, a leaf whose steps lie evenly spaced in one buffer (an arena's) is stacked as a view of it."""

    def stack(*leaves: np.ndarray) -> np.ndarray:
        spaced = _evenly_spaced(leaves) if view else None
        return np.stack(leaves, axis=1) if spaced is None else spaced

    if isinstance(trees[0], np.ndarray):
        return stack(*trees)
    return tree_map(lambda *leaves: None if leaves[0] is None else stack(*leaves), *trees)


def _evenly_spaced(arrays: Sequence[np.ndarray]) -> np.ndarray | None:
    """``np.stack(arrays, axis=1)`` as a view, when the arrays are C-contiguous parts of one buffer at evenly
    spaced addresses (in either direction); None otherwise."""
    first = arrays[0]
    base = first.base
    if not isinstance(base, np.ndarray) or len(arrays) < 2 or first.ndim < 1:
        return None
    if any(type(a) is not np.ndarray or a.base is not base or not a.flags.c_contiguous for a in arrays):
        return None
    if any(a.shape != first.shape or a.dtype != first.dtype for a in arrays):
        return None
    step = _address(arrays[1]) - _address(first)
    if step == 0 or any(_address(b) - _address(a) != step for a, b in zip(arrays, arrays[1:])):
        return None
    low = min(_address(first), _address(arrays[-1]))
    if low < _address(base) or max(_address(first), _address(arrays[-1])) + first.nbytes > _address(base) + base.nbytes:
        return None
    shape = (first.shape[0], len(arrays), *first.shape[1:])
    strides = (first.strides[0], step, *first.strides[1:])
    return np.lib.stride_tricks.as_strided(first, shape, strides, writeable=False)


def _zeros_of(tree: PyTree) -> Callable[[], PyTree]:
    """A maker of zeros shaped like ``tree``, which keeps only its shapes and dtypes."""
    leaves, treedef = tree_flatten(tree)
    described = [(np.shape(a), np.asarray(a).dtype) for a in leaves]
    return lambda: tree_unflatten(treedef, [np.zeros(shape, dtype) for shape, dtype in described])


def _snapshot(rng: Any) -> tuple[type, Any] | None:
    """What a generator's state is now, to start a fresh one there again (None for no generator)."""
    return (type(rng.bit_generator), rng.bit_generator.state) if isinstance(rng, np.random.Generator) else None


def _generator_at(start: tuple[type, Any] | None) -> np.random.Generator | None:
    if start is None:
        return None
    bit_generator = start[0]()
    bit_generator.state = start[1]
    return np.random.Generator(bit_generator)


def _pull(vjp: Any, d: Any) -> tuple[PyTree, tuple[PyTree, PyTree]]:
    """One step's ``vjp((dcarry, dy_t)) -> (dparams, (dcarry_before, dx_t))``, :class:`Outer` terms and all."""
    if getattr(vjp, "gives_outer", False):
        return vjp(d, outer=True)  # type: ignore[no-any-return]
    return vjp(d)  # type: ignore[no-any-return]


@layer_factory
def scan(cell: LayerFn, reverse: bool = False, checkpoint_every: int | None = None) -> Layer:
    """Run ``cell(params, (carry, x_t)) -> ((carry', y_t), vjp_t)`` over axis 1 of ``xs``.

    The result is a layer ``scan(cell)(params, (carry0, xs)) -> ((ys, carry_T), vjp)``: ``xs`` an array
    ``(N, T, ...)`` or a tuple (tree) of them, ``ys`` the ``y_t`` stacked on axis 1 (in time order, also with
    ``reverse=True``, which runs from ``t = T - 1`` down to 0), ``carry_T`` the last carry. Every step uses the
    same ``params``. ``vjp((dys, dcarry_T)) -> (dparams, (dcarry0, dxs))`` runs the step closures backwards
    (backprop through time) and sums the parameter gradients; ``None`` for ``dys`` or ``dcarry_T`` counts as zero.
    ``dxs`` comes back as a read-only view when the cell takes its steps' cotangents from one buffer at
    evenly spaced places (the recurrent layers' cells do), a fresh array otherwise.
    A moded cell (dropout, a state) makes a moded scan: ``run(params, (carry0, xs), state, train=, rng=)``
    threads the state and the random generator through the steps in the order they run.

    Memory: the plain scan keeps one vjp closure per step (each holding what its step's backward
    needs) until the vjp is dropped: ``T`` times a cell's memory. ``checkpoint_every=k`` keeps instead
    only the carry (and the state and the generator's state) at the start of every ``k``-th step,
    ``ceil(T / k)`` of them, and no closure; its vjp runs each segment of ``k`` steps forward again from
    its carry, from the last segment to the first, and pulls back through those ``k`` closures before
    the next segment's are made: at most ``k`` live closures, ``O(T / k + k)`` memory (``k`` near
    ``sqrt(T)`` is the least), for one more forward pass of every step. The answers, gradients and
    dropout masks are the same as without it (bitwise). The carry must keep its structure, shapes and
    dtypes. ``init_params`` works when the cell has an ``init``: input shape ``(carry_shape, xs_shape)``
    with ``xs_shape = (T, ...)``; the output shape is ``(ys_shape, carry_shape)``.

    Args:
        cell: a layer ``cell(params, (carry, x_t)) -> ((carry', y_t), vjp)``; the carry keeps its structure, shapes and
            dtypes.
        reverse: run the steps from the last to the first.
        checkpoint_every: keep only every k-th step's carry and recompute each segment of k steps in the
            vjp (``ceil(T / k)`` carries and at most k closures live instead of T); None keeps every closure.

    Returns:
        A layer ``(carry0, xs) -> (ys, carry_T)``, ``ys`` stacked on axis 1, whose vjp runs the steps backwards.

    >>> def cell(params, x):                                  # a running sum: carry' = carry + x_t, y_t = carry'
    ...     carry, x_t = x
    ...     total = carry + x_t
    ...     return (total, total), lambda d: ((), (d[0] + d[1], d[0] + d[1]))
    >>> (ys, last), vjp = fn.scan(cell)((), (np.zeros((1, 2)), np.ones((1, 3, 2))))
    >>> ys[0, :, 0], last
    (array([1., 2., 3.]), array([[3., 3.]]))
    >>> vjp((np.ones_like(ys), None))[1][1][0, :, 0]        # x_t counts in every y from t on
    array([3., 2., 1.])
    >>> vjp2 = fn.scan(cell, checkpoint_every=2)((), (np.zeros((1, 2)), np.ones((1, 3, 2))))[1]
    >>> vjp2((np.ones_like(ys), None))[1][1][0, :, 0]       # the same, keeping 2 carries and no closure
    array([3., 2., 1.])
    """
    child = as_layer(cell)
    every = None if checkpoint_every is None else int_at_least("scan", "checkpoint_every", checkpoint_every, 1)
    options = (", reverse=True" if reverse else "") + (f", checkpoint_every={every}" if every else "")
    name = f"scan({child.name}{options})"
    moded = child.moded

    def steps_of(
        params: PyTree, carry: PyTree, xs: PyTree, order: Sequence[int], state: State, train: bool, rng: Any, keep: bool
    ) -> tuple[dict[int, PyTree], PyTree, list[Any], State]:
        """Run the steps ``order``: (their y_t by t, the last carry, their vjps if ``keep``, the last state)."""
        check = _carry_check(name, carry)
        ys: dict[int, PyTree] = {}
        vjps: list[Any] = []
        for t in order:
            if moded:
                assert child.run_fn is not None
                out, vjp_t, state = child.run_fn(params, (carry, _at(xs, t)), state, train, rng)  # type: ignore[arg-type]
            else:
                out, vjp_t = child.apply(params, (carry, _at(xs, t)))  # type: ignore[arg-type]
            if not isinstance(out, tuple) or len(out) != 2:
                raise TypeError(f"{name}: the cell must return ((carry, y_t), vjp), got an output {type(out).__name__}")
            check(t, out[0])
            carry, ys[t] = out
            if keep:
                vjps.append(vjp_t)
        return ys, carry, vjps, state

    def forward(params: PyTree, x: Any, state: State, train: bool, rng: Any) -> tuple[Any, VJP, State]:
        carry0, xs = tuple_input(name, x, ("carry", "xs"))
        steps = _sequence_axes(name, xs)
        order = list(reversed(range(steps))) if reverse else list(range(steps))
        segments = [order[i : i + every] for i in range(0, steps, every)] if every else [order]
        starts: list[tuple[PyTree, State, Any]] = []  # each segment's carry, state and generator state
        vjps: list[Any] = []
        ys: dict[int, PyTree] = {}
        carry, new_state = carry0, state
        for segment in segments:
            if every:
                starts.append((carry, new_state, _snapshot(rng)))
            seg_ys, carry, vjps, new_state = steps_of(params, carry, xs, segment, new_state, train, rng, not every)
            ys.update(seg_ys)
        result = (_stack([ys[t] for t in range(steps)]), carry)
        zeros_ys, zeros_carry = _zeros_of(result[0]), _zeros_of(carry)  # for a None cotangent, without the arrays
        replay = (xs, starts) if every else None  # what the checkpointed vjp runs again; the plain one keeps vjps

        def vjp(dout: Any) -> tuple[PyTree, tuple[PyTree, PyTree]]:
            dys, dcarry = tuple_input(name + " vjp", dout, ("dys", "dcarry"), "dy")
            dys = zeros_ys() if dys is None else dys
            dcarry = zeros_carry() if dcarry is None else dcarry
            grads = _GradSum()
            dxs: list[PyTree] = [None] * steps
            for index in reversed(range(len(segments))):
                if replay is not None:
                    start_carry, start_state, start_rng = replay[1][index]
                    segment_vjps = steps_of(
                        params,
                        start_carry,
                        replay[0],
                        segments[index],
                        start_state,
                        train,
                        _generator_at(start_rng),
                        True,
                    )[2]
                else:
                    segment_vjps = vjps
                for t, vjp_t in zip(reversed(segments[index]), reversed(segment_vjps)):
                    dp, (dcarry, dxs[t]) = _pull(vjp_t, (dcarry, _at(dys, t)))
                    grads.add(dp)
                del segment_vjps  # this segment's closures go before the next segment's are made
            return grads.total(), (dcarry, _stack(dxs, view=True))

        return result, vjp, new_state  # type: ignore[return-value]

    def step_shape(shape: Any) -> tuple[Any, Any]:
        carry, xs = tuple_input(name, shape, ("carry", "xs"), "the input shape")
        return carry, _map_shapes(lambda s: tuple(s[1:]), xs)

    def whole_shape(shape: Any, out: Any) -> Any:
        steps = _map_shapes(lambda s: s[0], tuple_input(name, shape, ("carry", "xs"), "the input shape")[1])
        first = steps if isinstance(steps, (int, np.integer)) else tree_leaves(steps)[0]
        carry, y = tuple_input(name, out, ("carry", "y_t"), f"{child.name}'s output shape")
        return _map_shapes(lambda s: (int(first), *s), y), carry

    def out_shape(shape: Any) -> Any:
        if child.out_shape is None:
            raise TypeError(f"{name}: {child.name} does not say its output shape")
        return whole_shape(shape, child.out_shape(step_shape(shape)))

    def init(rng: np.random.Generator, shape: Any, dtype: np.dtype, weight_scale: WeightScale) -> tuple[Any, PyTree]:
        if child.init is None:
            raise TypeError(f"{name}: {child.name} has no init, so its params cannot be made")
        out, params = child.init(rng, step_shape(shape), dtype, weight_scale)
        return whole_shape(shape, out), params

    hparams = {"reverse": reverse, "checkpoint_every": every}
    if moded:
        child_state_init = child.state_init
        state_init = None
        if child_state_init is not None:

            def state_init(shape: Any, dtype: np.dtype) -> State:
                return child_state_init(step_shape(shape), dtype)

        return moded_layer(
            forward, name, child.param_keys, init, child.state_keys, state_init,
            out_shape=out_shape, op="scan", hparams=hparams, children=(child,),
        )  # fmt: skip

    def apply(params: PyTree, x: Any) -> tuple[Any, VJP]:
        y, vjp, _ = forward(params, x, (), False, None)
        return y, vjp

    return Layer(
        apply,
        name,
        param_keys=child.param_keys,
        init=init,
        out_shape=out_shape,
        op="scan",
        hparams=hparams,
        children=(child,),
    )
