"""What a training step really holds, measured by running it: per layer, the bytes of the arrays its
vjp closure keeps (found by walking the closures, not estimated from shapes), and the step's peak
(traced by ``tracemalloc``, which sees NumPy's and Numba's arrays). :func:`funcnn.summary` gives the
same per-layer column from the shape rules alone, without running anything."""

from __future__ import annotations

import tracemalloc
import types
from dataclasses import dataclass
from typing import Any

import numpy as np
from typing_extensions import override

from funcnn.core import VJP, Layer, State, run
from funcnn.layers import children_parts, pool_before_relu
from funcnn.losses import Loss, softmax_loss
from funcnn.training._objective import training_step
from funcnn.tree import PyTree, tree_leaves

__all__ = ["MemoryReport", "MemoryRow", "closure_arrays", "closure_bytes", "measure_memory"]

SEQUENCES = ("chain", "sandwich")


def _root(array: np.ndarray) -> np.ndarray:
    while isinstance(array.base, np.ndarray):
        array = array.base
    return array


def closure_arrays(vjp: Any, exclude: Any = ()) -> list[np.ndarray]:
    """The distinct arrays reachable from ``vjp`` through closures, lists, tuples and dicts (a view
    counts as the array it views), but those in ``exclude`` (a tree, e.g. the params): what the vjp
    keeps alive until it is dropped."""
    excluded = {id(_root(a)) for a in tree_leaves(exclude) if isinstance(a, np.ndarray)}
    seen: set[int] = set()
    found: dict[int, np.ndarray] = {}
    stack = [vjp]
    while stack:
        obj = stack.pop()
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        if isinstance(obj, np.ndarray):
            root = _root(obj)
            if id(root) not in excluded:
                found[id(root)] = root
        elif isinstance(obj, types.FunctionType):
            stack += [cell.cell_contents for cell in obj.__closure__ or () if _filled(cell)]
        elif isinstance(obj, (list, tuple)):
            stack += list(obj)
        elif isinstance(obj, dict):
            stack += list(obj.values())
    return list(found.values())


def _filled(cell: Any) -> bool:
    try:
        _ = cell.cell_contents
    except ValueError:
        return False
    return True


def closure_bytes(vjp: Any, exclude: Any = ()) -> int:
    """The bytes of :func:`closure_arrays`."""
    return sum(array.nbytes for array in closure_arrays(vjp, exclude))


@dataclass(frozen=True)
class MemoryRow:
    """One layer, run on its real input in training mode: ``kept`` bytes its vjp keeps (params left
    out), of which ``input`` bytes are its input's. ``depth`` 0 is the network itself."""

    depth: int
    name: str
    op: str
    kept: int
    input: int


@dataclass(frozen=True)
class MemoryReport:
    """The rows of :func:`measure_memory` and the step's ``peak``: the most bytes the training step (forward,
    loss, backward) held at once above what was allocated before it. ``str()`` gives the table."""

    rows: tuple[MemoryRow, ...]
    peak: int

    @override
    def __str__(self) -> str:
        width = max(len("layer"), *(2 * r.depth + len(r.name) for r in self.rows))
        lines = [f"{'layer':<{width}}  {'vjp keeps (B)':>14}  {'of it its input':>15}", "-" * (width + 33)]
        lines += [f"{'  ' * r.depth + r.name:<{width}}  {r.kept:>14,}  {r.input:>15,}" for r in self.rows]
        lines += ["-" * (width + 33), f"kept for the backward pass (measured): {_mib(self.rows[0].kept)}",
                  f"a training step's peak (forward, loss, backward; measured): {_mib(self.peak)}"]  # fmt: skip
        return "\n".join(lines)


def _mib(value: int) -> str:
    return f"{value:,} bytes ({value / (1 << 20):.1f} MiB)"


def measure_memory(
    net: Layer,
    params: PyTree,
    x: np.ndarray,
    y: np.ndarray,
    state: State = (),
    *,
    rng: np.random.Generator | None = None,
    loss: Loss = softmax_loss,
) -> MemoryReport:
    """Measure what ``net`` holds in a training step on ``x`` (``(N, ...)``) with labels ``y``
    (``(N,)``): each layer's vjp closure, run on its real input (the layers of chains and
    sandwiches indented under them), and the peak of one step (forward in training mode, ``loss``,
    backward as :func:`funcnn.fit` runs it, after a first step that compiles the kernels). Bytes,
    params left out. ``str()`` of the result is the table.

    Args:
        net: the network, a layer (moded or not).
        params: its params.
        x: a batch of inputs ``(N, ...)``.
        y: its labels ``(N,)``, as ``loss`` takes them.
        state: the network's state (``()`` for a plain one).
        rng: the generator for dropout (default: one seeded 0).
        loss: the loss of the step (default :func:`funcnn.softmax_loss`).

    Returns:
        A :class:`MemoryReport`: ``.rows`` (one :class:`MemoryRow` a layer, row 0 the network) and
        ``.peak``, the bytes the step held at once above what was allocated before it.

    >>> net = fn.chain(fn.dense(8), fn.relu, fn.dense(3))
    >>> _, params = fn.init_params(net, np.random.default_rng(0), (4,))
    >>> report = fn.measure_memory(net, params, np.ones((10, 4), np.float32), np.zeros(10, int))
    >>> [(row.name, row.kept) for row in report.rows]  # affines keep their input, relu a bit an element
    [('chain', 490), ('affine(8)', 160), ('relu', 10), ('affine(3)', 320)]
    """
    rows: list[MemoryRow] = []
    _visit(net, params, x, state, rng, 0, rows)
    step = training_step(net, loss)
    generator = rng if rng is not None else np.random.default_rng(0)
    step(params, x, y, state, generator)  # compiles the kernels, loads the libraries
    tracing = tracemalloc.is_tracing()
    if not tracing:
        tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        result = step(params, x, y, state, generator)
        peak = tracemalloc.get_traced_memory()[1] - before
        del result
    finally:
        if not tracing:
            tracemalloc.stop()
    return MemoryReport(tuple(rows), peak)


def _visit(
    layer: Layer, params: PyTree, x: np.ndarray, state: State, rng: Any, depth: int, rows: list[MemoryRow]
) -> np.ndarray:
    """Append the rows of ``layer`` run on ``x`` (and of its children); return its output."""
    generator = rng if rng is not None else np.random.default_rng(0)
    y, vjp, _ = run(layer, params, x, state, train=True, rng=generator)
    rows.append(_row(layer, vjp, params, x, depth))
    if layer.op in SEQUENCES:
        children = list(zip(layer.children, children_parts(layer, params), children_parts(layer, state, "state")))
        k = 0
        while k < len(children):  # in the order the chain runs them: a ReLU after the max-pool behind it
            swap = k + 1 < len(children) and pool_before_relu(children[k][0], children[k + 1][0], x)
            for child, p, s in (children[k + 1], children[k]) if swap else (children[k],):
                x = _visit(child, p, x, s, rng, depth + 1, rows)
            if swap:  # two leaves, one row each: shown in the written order
                rows[-2], rows[-1] = rows[-1], rows[-2]
            k += 2 if swap else 1
    elif layer.op in ("fan_out", "residual", "remat"):  # each child is fed the combination's input
        states = children_parts(layer, state, "state")
        for child, p, s in zip(layer.children, children_parts(layer, params), states):
            _visit(child, p, x, s, rng, depth + 1, rows)
    return y


def _row(layer: Layer, vjp: VJP, params: PyTree, x: np.ndarray, depth: int) -> MemoryRow:
    kept = closure_arrays(vjp, params)
    root = _root(x) if isinstance(x, np.ndarray) else None
    given = sum(a.nbytes for a in kept if a is root)
    name = layer.name if layer.op not in (*SEQUENCES, "fan_out", "residual") else layer.op
    return MemoryRow(depth, name, layer.op, sum(a.nbytes for a in kept), given)
