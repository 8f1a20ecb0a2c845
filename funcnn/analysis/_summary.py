"""A table of what a network is: one row per layer with its output shape, parameters, FLOPs and the
memory its vjp keeps, from the layers' shape rules alone (nothing is run). See ``_costs``
for how FLOPs and memory are counted."""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
from typing_extensions import override

from funcnn._checks import checked_input_shape, int_at_least
from funcnn.analysis._costs import Cost, leaf_cost
from funcnn.core import Layer, Shape, output_shape
from funcnn.tree import is_shape, tree_leaves

__all__ = ["Summary", "SummaryRow", "summary"]

COMBINATIONS = ("chain", "sandwich", "fan_out", "residual", "bind", "remat")


@dataclass(frozen=True)
class SummaryRow:
    """One layer: ``depth`` 0 is the network itself (its numbers are the totals), its children 1, ...
    ``output_shape`` has the batch axis. ``None``: unknown (a user's layer that does not say)."""

    depth: int
    name: str
    op: str
    output_shape: Shape
    params: int | None
    forward_flops: int | None
    backward_flops: int | None
    memory: int | None


@dataclass(frozen=True)
class Summary:
    """The rows of :func:`summary`; ``str()`` gives the table, totals at the bottom."""

    rows: tuple[SummaryRow, ...]
    input_shape: Shape
    dtype: str

    @property
    def total(self) -> SummaryRow:
        """The network's own row: its numbers are the totals."""
        return self.rows[0]

    @override
    def __str__(self) -> str:
        header = ("layer", "output shape", "params", "forward FLOPs", "backward FLOPs", "vjp memory (B)")
        cells = [
            ("  " * r.depth + r.name, str(r.output_shape), *map(_number, (r.params, r.forward_flops, r.backward_flops)),
             _number(r.memory))
            for r in self.rows
        ]  # fmt: skip
        widths = [max(len(line[i]) for line in [header, *cells]) for i in range(len(header))]

        def line(values: tuple[str, ...]) -> str:
            left = [values[0].ljust(widths[0]), values[1].ljust(widths[1])]
            return "  ".join(left + [v.rjust(w) for v, w in zip(values[2:], widths[2:])])

        rule = "-" * len(line(header))
        total, itemsize = self.total, np.dtype(self.dtype).itemsize
        params = "?"
        if total.params is not None:
            params = f"{total.params:,} = {_bytes(total.params * itemsize)} in {self.dtype}"
        lines = [line(header), rule, *map(line, cells), rule,
                 f"input {self.input_shape} {self.dtype}: {_bytes(_size(self.input_shape) * itemsize)}",
                 f"params: {params}",
                 (f"FLOPs per batch of {_batch_size(self.input_shape)}: forward {_number(total.forward_flops)}, "
                  f"backward {_number(total.backward_flops)}"),
                 f"kept for the backward pass (training mode): {_bytes(total.memory)}"]  # fmt: skip
        if any(r.forward_flops is None or r.memory is None for r in self.rows):
            lines.append("?: a user's layer, whose FLOPs, memory or params funcnn cannot tell")
        return "\n".join(lines)


def _number(value: int | None) -> str:
    return "?" if value is None else f"{value:,}"


def _bytes(value: int | None) -> str:
    if value is None:
        return "?"
    for unit, size in (("MiB", 1 << 20), ("KiB", 1 << 10)):
        if value >= size:
            return f"{value:,} bytes ({value / size:.1f} {unit})"
    return f"{value:,} bytes"


def _size(shape: Any) -> int:
    """The number of elements of a shape, or of all the shapes of a tuple input's shape."""
    return math.prod(int(d) for d in shape) if is_shape(shape) else sum(_size(s) for s in shape)


def _batched(n: int, shape: Any) -> Any:
    """``shape`` (or each shape of a tuple input's) with the batch axis ``n`` in front."""
    return (n, *shape) if is_shape(shape) else tuple(_batched(n, s) for s in shape)


def _example(shape: Any) -> Any:
    """``shape`` (or each of a tuple's) without its batch axis."""
    return tuple(shape[1:]) if is_shape(shape) else tuple(_example(s) for s in shape)


def _batch_size(shape: Any) -> int:
    return int(shape[0]) if is_shape(shape) else _batch_size(shape[0])


def _add(*values: int | None) -> int | None:
    return None if any(v is None for v in values) else sum(v for v in values if v is not None)


def summary(net: Layer, input_shape: Shape, dtype: Any = np.float32, *, batch_size: int = 1) -> Summary:
    """The summary of ``net`` fed a batch of ``batch_size`` examples of ``input_shape`` (one
    example, no batch axis, e.g. ``(3, 32, 32)``; a tuple of shapes for a tuple input, e.g.
    ``((T, D), (H,))`` for an LSTM's ``(x, h0)``) in ``dtype``. Shapes come from each layer's
    ``out_shape`` (nothing is run). FLOPs count a batch, a multiply-add as 2: conv ``2*N*F*H'*W'*C*HH*WW``
    forward and twice that backward (``dx`` and ``dw``), affine ``2*N*D*M`` and ``4*N*D*M``; pools,
    norms and activations count the operations of their formulas per element, bias additions are
    left out (the rules are in ``funcnn/analysis/_costs.py``). Memory: the bytes the vjps keep in training mode.
    ``str()`` of the result is the table; its ``rows`` are the data (row 0 is ``net`` itself, with the totals).

    Args:
        net: a layer that knows its shapes (``out_shape``).
        input_shape: one example's shape, or a tree of shapes for a tuple input.
        dtype: the dtype of the input and params.
        batch_size: the batch the FLOPs and memory are counted for.

    Returns:
        A :class:`Summary`: prints as the table, ``.rows`` as data, ``.total`` the network's row.

    >>> table = fn.summary(fn.chain(fn.dense(10), fn.relu), (3, 4), batch_size=2)
    >>> [(row.name, row.output_shape, row.params, row.forward_flops) for row in table.rows]
    [('chain', (2, 10), 130, 500), ('affine(10)', (2, 10), 130, 480), ('relu', (2, 10), 0, 20)]
    """
    batch_size = int_at_least("summary", "batch_size", batch_size, 1)
    dtype = np.dtype(dtype)
    if dtype.kind != "f":
        raise ValueError(f"summary: dtype must be a float type such as float32, got {dtype}")
    shape = _batched(batch_size, checked_input_shape("summary", input_shape))
    rows: list[SummaryRow] = []
    _visit(net, shape, 0, dtype.itemsize, rows)
    return Summary(tuple(rows), shape, dtype.name)


def _out_shape(layer: Layer, shape: Shape) -> Shape:
    """The output shape of ``layer`` fed a batch of ``shape``, by :func:`funcnn.core.output_shape`."""
    out: Shape = _batched(_batch_size(shape), output_shape(layer, _example(shape)))
    return out


def _visit(
    layer: Layer, shape: Shape, depth: int, itemsize: int, rows: list[SummaryRow]
) -> tuple[Shape, Cost, int | None]:
    """Append the rows of ``layer`` (fed a batch of ``shape``) and its children; return its output
    shape, cost and parameter count."""
    out = _out_shape(layer, shape)
    index = len(rows)
    rows.append(SummaryRow(depth, "", "", out, None, None, None, None))  # filled in below, after the children
    if layer.op in COMBINATIONS:
        cost, params = _combination(layer, shape, depth, itemsize, rows)
        name = layer.op if layer.op != "bind" else f"bind(train={layer.hparams.get('train')})"
    else:
        cost, params, name = leaf_cost(layer, shape, out, itemsize), _leaf_params(layer, shape), layer.name
    memory = _add(cost.inner, *((_size(shape) * itemsize,) if cost.keeps_input else ()),
                  *((_size(out) * itemsize,) if cost.keeps_output and not cost.alias else ()))  # fmt: skip
    rows[index] = SummaryRow(depth, name, layer.op, out, params, cost.forward, cost.backward, memory)
    return out, cost, params


def _leaf_params(layer: Layer, shape: Shape) -> int | None:
    """The number of parameters of a leaf fed a batch of ``shape``, counted in what its own ``init`` makes;
    0 for a layer without params, ``None`` when it cannot say (a user's function, a course-style layer
    without its sizes)."""
    if layer.param_keys == () and layer.init is None:
        return 0
    if layer.init is None:
        return None
    _, params = layer.init(np.random.default_rng(0), _example(shape), np.dtype(np.float32), "he")
    return sum(np.size(leaf) for leaf in tree_leaves(params))


def _combination(
    layer: Layer, shape: Shape, depth: int, itemsize: int, rows: list[SummaryRow]
) -> tuple[Cost, int | None]:
    """The cost of a chain, sandwich or bind (children in sequence) or a fan_out or residual
    (children side by side, outputs summed). Memory counts an array kept by two layers once."""
    if layer.op == "remat":
        return _remat(layer, shape, depth, itemsize, rows)
    if layer.op not in ("fan_out", "residual"):
        return _sequence(layer, shape, depth, itemsize, rows)
    outs, costs, params = zip(*(_visit(child, shape, depth + 1, itemsize, rows) for child in layer.children))
    n_in, n_out = _size(shape), _size(outs[0])
    if layer.op == "residual":  # y = x + f(x); its vjp keeps what f's vjp keeps
        (f,) = costs
        inner = _add(f.inner, n_out * itemsize if f.keeps_output and not f.alias else 0)
        return Cost(_add(f.forward, n_out), _add(f.backward, n_in), inner, f.keeps_input or f.alias), params[0]
    # fan_out keeps every branch's output (an identity's is its input) until its vjp runs.
    inner = _add(*(c.inner for c in costs), *(_size(o) * itemsize for o, c in zip(outs, costs) if not c.alias))
    extra = len(costs) - 1
    forward = _add(*(c.forward for c in costs), extra * n_out)
    backward = _add(*(c.backward for c in costs), extra * n_in)
    return Cost(forward, backward, inner, any(c.keeps_input or c.alias for c in costs)), _add(*params)


def _sequence(layer: Layer, shape: Shape, depth: int, itemsize: int, rows: list[SummaryRow]) -> tuple[Cost, int | None]:
    sizes = {0: _size(shape) * itemsize}  # the arrays passed between the children, by number
    kept: set[int] = set()
    current = 0
    forward: int | None = 0
    backward: int | None = 0
    inner: int | None = 0
    params: int | None = 0
    moved: tuple[int, Layer] | None = None  # a ReLU run after the max-pool behind it (layers/_combinators.py)
    for child, after in zip(layer.children, (*layer.children[1:], None)):
        reordered, row = _pool_runs_first(child, after, shape), len(rows)
        shape, cost, count = _visit(child, shape, depth + 1, itemsize, rows)
        if reordered:  # what it keeps is counted on the pool's output, below
            cost = dataclasses.replace(cost, inner=0, keeps_input=False, keeps_output=False)
        output = current if cost.alias else len(sizes)
        sizes[output] = _size(shape) * itemsize
        kept |= {current} if cost.keeps_input else set()
        kept |= {output} if cost.keeps_output else set()
        if moved is not None:  # the ReLU ran on this pool's output, which is its input and its output's size
            relu = leaf_cost(moved[1], shape, shape, itemsize)
            keeps_array = relu.keeps_input or relu.keeps_output
            kept |= {output} if keeps_array else set()
            inner = _add(inner, relu.inner)
            memory = _add(relu.inner, sizes[output] if keeps_array else 0)
            rows[moved[0]] = dataclasses.replace(rows[moved[0]], memory=memory)
        moved = (row, child) if reordered else None
        forward, backward = _add(forward, cost.forward), _add(backward, cost.backward)
        inner, params = _add(inner, cost.inner), _add(params, count)
        current = output
    inner = _add(inner, *(sizes[i] for i in kept - {0, current}))
    return Cost(forward, backward, inner, 0 in kept, current in kept, alias=current == 0), params


def _pool_runs_first(child: Layer, after: Layer | None, shape: Shape) -> bool:
    """Whether a chain runs ``child`` (ReLU) after ``after`` (a max-pool): then ReLU works on the pooled output."""
    from funcnn.layers import pool_before_relu

    dummy = np.empty((0,) * len(shape)) if is_shape(shape) else None
    return after is not None and pool_before_relu(child, after, dummy)


def _remat(layer: Layer, shape: Shape, depth: int, itemsize: int, rows: list[SummaryRow]) -> tuple[Cost, int | None]:
    """A remat keeps its input and its child's state, and with policy "products" the outputs of the
    convs and affines in its child's chains and sandwiches and what their vjps keep; its backward
    pass runs the forward again."""
    from funcnn.layers import init_state

    (child,) = layer.children
    _, cost, params = _visit(child, shape, depth + 1, itemsize, rows)
    state = init_state(child, shape[1:], np.dtype(f"f{itemsize}")) if child.moded else ()
    kept: dict[int, int] = {}
    output = 0
    if layer.hparams.get("policy") == "products":
        _, output = _products_kept(child, shape, 0, itemsize, kept, itertools.count(1))
    inner = _add(sum(leaf.nbytes for leaf in tree_leaves(state)), *(n for i, n in kept.items() if i not in (0, output)))
    backward = _add(cost.forward, cost.backward)
    return Cost(cost.forward, backward, inner, True, output in kept and output != 0, alias=cost.alias), params


def _products_kept(
    layer: Layer, shape: Shape, current: int, itemsize: int, kept: dict[int, int], numbers: Iterator[int]
) -> tuple[Shape, int]:
    """Walk ``layer`` fed array number ``current`` of ``shape`` as remat's "products" policy runs it,
    adding to ``kept`` (array number -> bytes, ``-k`` for a conv's own arrays) what the recorded
    conv and affine layers keep; ``numbers`` gives new arrays theirs. Returns the output's shape and
    array number."""
    out = _out_shape(layer, shape)
    if layer.op in ("chain", "sandwich"):
        for child in layer.children:
            shape, current = _products_kept(child, shape, current, itemsize, kept, numbers)
        return shape, current
    if layer.op == "identity":
        return out, current
    output = next(numbers)
    if layer.op in ("conv", "affine") and not layer.moded:
        cost = leaf_cost(layer, shape, out, itemsize)
        kept[current] = math.prod(shape) * itemsize
        kept[output] = math.prod(out) * itemsize
        kept[-output] = cost.inner or 0
    return out, output
