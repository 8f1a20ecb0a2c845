"""``scan``: run a cell layer over the time axis of its inputs, in the spirit of ``jax.lax.scan``."""

from __future__ import annotations

from typing import Any, cast

import numpy as np

from funcnn._checks import tuple_input
from funcnn.core import VJP, Layer, LayerFn, WeightScale, as_layer, layer_factory
from funcnn.tree import PyTree, is_shape, keystr, tree_leaves, tree_leaves_with_path, tree_map, tree_structure


def _map_shapes(f: Any, shapes: Any) -> Any:
    """``f`` applied to every shape (a tuple of ints) of a tree of shapes."""
    return f(shapes) if is_shape(shapes) else tuple(_map_shapes(f, s) for s in shapes)


def _same_carry(name: str, step: int, before: PyTree, after: PyTree) -> None:
    """The cell's new carry has the structure, shapes and dtypes of the carry it got."""
    if tree_structure(before) != tree_structure(after):
        raise ValueError(
            f"{name}: at step {step} the cell returned a carry of structure {tree_structure(after)!r}, "
            f"but it got one of structure {tree_structure(before)!r}"
        )
    for (path, a), b in zip(tree_leaves_with_path(before), tree_leaves(after)):
        a, b = np.asarray(a), np.asarray(b)
        if a.shape != b.shape or a.dtype != b.dtype:
            raise ValueError(
                f"{name}: at step {step} the cell returned {keystr(path, 'carry')} of shape {b.shape} ({b.dtype}), "
                f"but it got shape {a.shape} ({a.dtype}); the carry must keep its shapes and dtypes"
            )


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
    return tree_map(lambda a: np.asarray(a)[:, t], tree)


def _stack(trees: list[PyTree]) -> PyTree:
    """Per-step trees stacked along axis 1; a leaf None at every step (an integer input's cotangent) stays None."""
    return tree_map(lambda *leaves: None if leaves[0] is None else np.stack(leaves, axis=1), *trees)


@layer_factory
def scan(cell: LayerFn, reverse: bool = False) -> Layer:
    """Run ``cell(params, (carry, x_t)) -> ((carry', y_t), vjp_t)`` over axis 1 of ``xs``.

    The result is a layer ``scan(cell)(params, (carry0, xs)) -> ((ys, carry_T), vjp)``: ``xs`` an array
    ``(N, T, ...)`` or a tuple (tree) of them, ``ys`` the ``y_t`` stacked on axis 1 (in time order, also with
    ``reverse=True``, which runs from ``t = T - 1`` down to 0), ``carry_T`` the last carry. Every step uses the
    same ``params``. ``vjp((dys, dcarry_T)) -> (dparams, (dcarry0, dxs))`` runs the step closures backwards
    (backprop through time) and sums the parameter gradients; ``None`` for ``dys`` or ``dcarry_T`` counts as zero.

    Memory: the layer keeps one vjp closure per step (each holding what its step's backward needs)
    until the vjp is dropped: ``T`` times a cell's memory. The carry must keep its structure, shapes
    and dtypes. ``init_params`` works when the cell has an ``init``: input shape ``(carry_shape, xs_shape)``
    with ``xs_shape = (T, ...)``; the output shape is ``(ys_shape, carry_shape)``.

    Args:
        cell: a layer ``cell(params, (carry, x_t)) -> ((carry', y_t), vjp)``; the carry keeps its structure, shapes and
            dtypes.
        reverse: run the steps from the last to the first.

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
    """
    child = as_layer(cell)
    if child.moded:
        raise TypeError(f"scan: {child.name} is moded (state or train/eval); bind it first with fn.bind")
    name = f"scan({child.name}{', reverse=True' if reverse else ''})"

    def apply(params: PyTree, x: Any) -> tuple[Any, VJP]:
        carry, xs = tuple_input(name, x, ("carry", "xs"))
        steps = _sequence_axes(name, xs)
        order = list(reversed(range(steps))) if reverse else list(range(steps))
        ys: list[PyTree] = [None] * steps
        vjps: list[Any] = [None] * steps
        for t in order:
            out, vjps[t] = child(params, cast(Any, (carry, _at(xs, t))))  # a tuple input
            if not isinstance(out, tuple) or len(out) != 2:
                raise TypeError(f"{name}: the cell must return ((carry, y_t), vjp), got an output {type(out).__name__}")
            _same_carry(name, t, carry, out[0])
            carry, ys[t] = out
        result = (_stack(ys), carry)

        def vjp(dout: Any) -> tuple[PyTree, tuple[PyTree, PyTree]]:
            dys, dcarry = tuple_input(name + " vjp", dout, ("dys", "dcarry"), "dy")
            dys = tree_map(np.zeros_like, result[0]) if dys is None else dys
            dcarry = tree_map(np.zeros_like, carry) if dcarry is None else dcarry
            total: PyTree = None
            dxs: list[PyTree] = [None] * steps
            for t in reversed(order):
                dp, (dcarry, dxs[t]) = vjps[t]((dcarry, _at(dys, t)))
                if total is None:
                    total = tree_map(np.array, dp)  # a copy, summed into in place
                else:
                    for acc, g in zip(tree_leaves(total), tree_leaves(dp)):
                        np.add(acc, g, out=acc)
            return total, (dcarry, _stack(dxs))

        return result, vjp  # type: ignore[return-value]

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

    return Layer(
        apply,
        name,
        param_keys=child.param_keys,
        init=init,
        out_shape=out_shape,
        op="scan",
        hparams={"reverse": reverse},
        children=(child,),
    )
