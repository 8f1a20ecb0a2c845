"""Register-tile FMA microkernels written in LLVM IR, called from Numba kernels as intrinsics.

Plain Numba loops leave a register tile's accumulators in memory (3-25 GFLOP/s on one core, issue 23);
here each accumulator is a vector phi node, so LLVM keeps the whole tile in registers. The IR is built
inside the calling kernel's own module (``numba.extending.intrinsic``), so that kernel keeps Numba's
on-disk cache. ``lanes`` floats make a vector: 16 where the CPU has AVX-512 (32 vector registers), 8
with AVX2 (16 registers); :func:`lanes` picks it at import. Every tile compiles on every CPU (LLVM splits
a vector wider than the machine's), so the driver chooses among them at run time.

Two tiles, both over float32:

- ``product``: ``y[r, v] = bias[r] + sum_k a[k, r] * x[offs[k] + xv[v]]`` for ``mr`` rows of ``a``
  (filters) and ``nv`` vectors of output pixels: a direct conv, one scalar of ``a`` broadcast against
  ``nv`` vectors of the input per step of k. A conv's dw uses it too, with output pixels as k and
  ``(tap, channels)`` vectors of a channels-last image as columns (``funcnn.kernels.direct_conv``).
- ``reduction``: ``acc[r, j] += sum_p dy[r * ldf + dyp[p]] * x[koff[j] + xp[p]]``, lane by lane, for
  ``mr`` rows of ``dy`` (filters) and ``nk`` taps: a conv's ``dw`` without columns; the caller adds the lanes.

``llvm.fmuladd`` rather than ``llvm.fma``: fused where the CPU has FMA, a multiply and an add where it
has none (``llvm.fma`` would call libm's ``fmaf`` there).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import llvmlite.ir as ir
from numba import types
from numba.core import errors
from numba.extending import intrinsic

F32, I64 = ir.FloatType(), ir.IntType(64)
F32P, I64P = F32.as_pointer(), I64.as_pointer()
# (mr, nv) of the product tile and (mr, nk) of the reduction tile, by lanes: mr * nv accumulators plus the
# nv input vectors and a broadcast stay within the registers (32 with AVX-512, 16 with AVX2).
# Fewer rows than the smallest tile's: no tile (the conv keeps its columns). Thinner reduction tiles, with
# more taps, ran at a quarter of the speed: their tap pointers no longer fit the 16 integer registers.
PRODUCT_TILES = {16: ((8, 3), (3, 8)), 8: ((4, 3), (3, 4))}
REDUCTION_TILES = {16: ((4, 6),), 8: ((2, 5),)}


def host_lanes() -> int:
    """The vector width this CPU's tiles use: 16 with AVX-512, 8 with AVX2 and FMA, 0 otherwise (no tile:
    the conv keeps its columns and BLAS)."""
    import llvmlite.binding as llvm

    features = llvm.get_host_cpu_features()
    if features.get("avx512f", False):
        return 16
    if features.get("avx2", False) and features.get("fma", False):
        return 8
    return 0


def lanes() -> int:
    """The tile width in use: ``FUNCNN_CONV_TILE`` (``avx512``, ``avx2`` or ``none``) when set, else the CPU's.

    Returns:
        16, 8, or 0 (no tile).
    """
    setting = os.environ.get("FUNCNN_CONV_TILE", "").strip().lower()
    forced = {"avx512": 16, "avx2": 8, "none": 0}
    if setting:
        if setting not in forced:
            raise ValueError(f"FUNCNN_CONV_TILE must be one of {sorted(forced)}, got {setting!r}")
        return forced[setting]
    return host_lanes()


def _vector(builder: ir.IRBuilder, pointer: Any, lanes_: int) -> Any:
    return builder.load(builder.bitcast(pointer, ir.VectorType(F32, lanes_).as_pointer()), align=4)


def _store(builder: ir.IRBuilder, value: Any, pointer: Any, lanes_: int) -> None:
    builder.store(value, builder.bitcast(pointer, ir.VectorType(F32, lanes_).as_pointer()), align=4)


def _splat(builder: ir.IRBuilder, scalar: Any, lanes_: int) -> Any:
    vec = ir.VectorType(F32, lanes_)
    one = builder.insert_element(ir.Constant(vec, None), scalar, ir.Constant(ir.IntType(32), 0))
    return builder.shuffle_vector(one, ir.Constant(vec, None), ir.Constant(ir.VectorType(ir.IntType(32), lanes_), None))


def _fmuladd(module: ir.Module, lanes_: int) -> Any:
    vec = ir.VectorType(F32, lanes_)
    name = f"llvm.fmuladd.v{lanes_}f32"
    return module.globals.get(name) or ir.Function(module, ir.FunctionType(vec, [vec, vec, vec]), name)


def _at(builder: ir.IRBuilder, pointer: Any, index: Any) -> Any:
    return builder.gep(pointer, [index])


def _i64(value: int) -> ir.Constant:
    return ir.Constant(I64, value)


def _not_unrolled(module: ir.Module, branch: Any, name: str) -> None:
    """Keep LLVM from unrolling the loop that ``branch`` closes: two copies of a tile's body need twice
    its registers and spill the accumulators."""
    disable = module.add_metadata([ir.MetaDataString(module, "llvm.loop.unroll.disable")])
    loop = module.add_metadata([ir.MetaDataString(module, name), disable])
    loop.operands = (loop, disable)  # a loop's metadata starts with a reference to itself
    branch.set_metadata("llvm.loop", loop)


class _Tile:
    """A tile function being built: ``entry`` (set-up), ``loop`` (one step: accumulators as phi nodes) and
    ``done`` (stores) blocks."""

    def __init__(self, module: ir.Module, name: str, args: list[Any], noalias: Sequence[int]) -> None:
        self.module, self.name = module, name
        self.fn = ir.Function(module, ir.FunctionType(ir.VoidType(), args), name)
        self.fn.linkage = "internal"
        for i in noalias:
            self.fn.args[i].add_attribute("noalias")
        self.entry, self.loop, self.done = (self.fn.append_basic_block(block) for block in ("entry", "loop", "done"))
        self.b = ir.IRBuilder(self.entry)

    def open_loop(self, start: list[list[Any]]) -> tuple[Any, list[list[Any]]]:
        """Enter the loop: its counter (from 0) and the accumulators, starting at ``start``."""
        b = self.b
        b.branch(self.loop)
        b.position_at_end(self.loop)
        counter = b.phi(I64)
        counter.add_incoming(_i64(0), self.entry)
        acc = [[b.phi(value.type) for value in row] for row in start]
        for phis, values in zip(acc, start):
            for phi, value in zip(phis, values):
                phi.add_incoming(value, self.entry)
        return counter, acc

    def close_loop(self, counter: Any, count: Any, acc: list[list[Any]], new: list[list[Any]]) -> None:
        """End a step: the accumulators become ``new``, and the loop repeats until ``count`` steps."""
        b = self.b
        following = b.add(counter, _i64(1))
        counter.add_incoming(following, self.loop)
        for phis, values in zip(acc, new):
            for phi, value in zip(phis, values):
                phi.add_incoming(value, self.loop)
        _not_unrolled(self.module, b.cbranch(b.icmp_signed("<", following, count), self.loop, self.done), self.name)
        b.position_at_end(self.done)


def _define_product(module: ir.Module, lanes_: int, mr: int, nv: int) -> ir.Function:
    """void product(a, x, offs, k, xv, y, yv, ldy, bias): see the module's docstring; ``a`` is
    ``(k, mr)``, ``y[r, v]`` is stored at ``y + r * ldy + yv[v]``; ``k >= 1``."""
    name = f"funcnn_tile_product_{lanes_}_{mr}_{nv}"
    if name in module.globals:
        return module.globals[name]
    tile = _Tile(module, name, [F32P, F32P, I64P, I64, I64P, F32P, I64P, I64, F32P], (0, 1, 2, 4, 5, 6, 8))
    a, x, offs, k_count, xv, y, yv, ldy, bias = tile.fn.args
    fma, b = _fmuladd(module, lanes_), tile.b
    x_at = [b.load(_at(b, xv, _i64(v))) for v in range(nv)]
    y_at = [b.load(_at(b, yv, _i64(v))) for v in range(nv)]
    start = [[_splat(b, b.load(_at(b, bias, _i64(r))), lanes_)] * nv for r in range(mr)]
    k, acc = tile.open_loop(start)
    base = _at(b, x, b.load(_at(b, offs, k)))
    inputs = [_vector(b, _at(b, base, x_at[v]), lanes_) for v in range(nv)]
    row = _at(b, a, b.mul(k, _i64(mr)))
    new = []
    for r in range(mr):
        scalar = _splat(b, b.load(_at(b, row, _i64(r))), lanes_)
        new.append([b.call(fma, [scalar, inputs[v], acc[r][v]]) for v in range(nv)])
    tile.close_loop(k, k_count, acc, new)
    for r in range(mr):
        row_y = _at(b, y, b.mul(_i64(r), ldy))
        for v in range(nv):
            _store(b, new[r][v], _at(b, row_y, y_at[v]), lanes_)
    b.ret_void()
    return tile.fn


def _define_reduction(module: ir.Module, lanes_: int, mr: int, nk: int) -> ir.Function:
    """void reduction(dy, ldf, x, koff, xp, p, acc): see the module's docstring, with ``dyp[p] = p * lanes``;
    ``acc`` is ``(mr, nk, lanes)``, loaded first and stored at the end; ``p >= 1``."""
    name = f"funcnn_tile_reduction_{lanes_}_{mr}_{nk}"
    if name in module.globals:
        return module.globals[name]
    tile = _Tile(module, name, [F32P, I64, F32P, I64P, I64P, I64, F32P], (0, 2, 3, 4, 6))
    dy, ldf, x, koff, xp, p_count, out = tile.fn.args
    fma, b = _fmuladd(module, lanes_), tile.b
    # row and tap pointers made once: the loop then needs one index for dy and one for x
    taps = [_at(b, x, b.load(_at(b, koff, _i64(j)))) for j in range(nk)]
    rows = [_at(b, dy, b.mul(_i64(r), ldf)) for r in range(mr)]
    slots = [[_at(b, out, _i64((r * nk + j) * lanes_)) for j in range(nk)] for r in range(mr)]
    p, acc = tile.open_loop([[_vector(b, slot, lanes_) for slot in row] for row in slots])
    at_dy, at_x = b.mul(p, _i64(lanes_)), b.load(_at(b, xp, p))
    grads = [_vector(b, _at(b, rows[r], at_dy), lanes_) for r in range(mr)]
    new: list[list[Any]] = [[None] * nk for _ in range(mr)]
    for j in range(nk):
        tap = _vector(b, _at(b, taps[j], at_x), lanes_)
        for r in range(mr):
            new[r][j] = b.call(fma, [grads[r], tap, acc[r][j]])
    tile.close_loop(p, p_count, acc, new)
    for r in range(mr):
        for j in range(nk):
            _store(b, new[r][j], slots[r][j], lanes_)
    b.ret_void()
    return tile.fn


def _pointer(context: Any, builder: ir.IRBuilder, array_type: Any, array: Any, start: Any) -> Any:
    data = context.make_array(array_type)(context, builder, value=array).data
    return builder.gep(data, [start])


def _lowering(define: Any, shape: tuple[int, ...], plan: list[tuple[str, int, int | None]]) -> Any:
    """An intrinsic's codegen: call ``define(module, *shape)`` with, for each ``(kind, i, j)`` of ``plan``, a
    pointer into array argument ``i`` at the flat index in argument ``j`` (0 when None), the length of array
    ``i``, or argument ``i`` itself; arguments counted after the three compile-time constants."""

    def codegen(context: Any, builder: ir.IRBuilder, signature: Any, args: Any) -> None:
        types_, values = signature.args[3:], args[3:]
        call = []
        for kind, i, j in plan:
            if kind == "ptr":
                call.append(_pointer(context, builder, types_[i], values[i], _i64(0) if j is None else values[j]))
            elif kind == "len":
                call.append(context.make_array(types_[i])(context, builder, value=values[i]).nitems)
            else:
                call.append(values[i])
        builder.call(define(builder.module, *shape), call)

    return codegen


def _literal(name: str, value: Any) -> int:
    if not isinstance(value, types.IntegerLiteral):
        raise errors.RequireLiteralValue(f"{name} must be a compile-time constant (numba.literally)")
    return int(value.literal_value)


def _product(typingctx: Any, lanes_: Any, mr: Any, nv: Any, a: Any, a0: Any, x: Any, x0: Any, offs: Any, xv: Any,
            y: Any, y0: Any, yv: Any, ldy: Any, bias: Any, b0: Any) -> Any:  # fmt: skip
    """The product tile (Numba kernels only): ``product(lanes, mr, nv, a, a0, x, x0, offs, xv, y, y0, yv, ldy,
    bias, b0)``, the first three compile-time constants; arrays (float32 or int64, C-contiguous) with
    the flat index each starts at; ``len(offs)`` steps of k, ``len(xv) == len(yv) == nv``."""
    shape = _literal("lanes", lanes_), _literal("mr", mr), _literal("nv", nv)
    sig = types.void(lanes_, mr, nv, a, types.int64, x, types.int64, offs, xv, y, types.int64, yv, types.int64,
                     bias, types.int64)  # fmt: skip

    # the IR function's arguments, from the intrinsic's after the three constants
    plan = [("ptr", 0, 1), ("ptr", 2, 3), ("ptr", 4, None), ("len", 4, None), ("ptr", 5, None), ("ptr", 6, 7),
            ("ptr", 8, None), ("value", 9, None), ("ptr", 10, 11)]  # fmt: skip
    return sig, _lowering(_define_product, shape, plan)


def _reduction(typingctx: Any, lanes_: Any, mr: Any, nk: Any, dy: Any, dy0: Any, ldf: Any, x: Any, x0: Any,
              koff: Any, xp: Any, acc: Any, acc0: Any) -> Any:  # fmt: skip
    """The reduction tile (Numba kernels only): ``reduction(lanes, mr, nk, dy, dy0, ldf, x, x0, koff, xp, acc,
    acc0)``, the first three compile-time constants; arrays (float32 or int64, C-contiguous) with the flat
    index each starts at; ``len(xp)`` steps of p, ``len(koff) == nk``."""
    shape = _literal("lanes", lanes_), _literal("mr", mr), _literal("nk", nk)
    sig = types.void(lanes_, mr, nk, dy, types.int64, types.int64, x, types.int64, koff, xp, acc, types.int64)

    plan = [("ptr", 0, 1), ("value", 2, None), ("ptr", 3, 4), ("ptr", 5, None), ("ptr", 6, None), ("len", 6, None),
            ("ptr", 7, 8)]  # fmt: skip
    return sig, _lowering(_define_reduction, shape, plan)


# Typed as Any: Numba's intrinsic wrapper takes the arguments after ``typingctx``, which mypy cannot see.
product: Any = intrinsic(_product)
reduction: Any = intrinsic(_reduction)
