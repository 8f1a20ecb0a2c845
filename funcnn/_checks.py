"""Argument checks shared by the layers: each error names the layer, the argument and the shapes."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np

from funcnn.tree import is_empty

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def float_array(layer: str, arg: str, value: Any) -> np.ndarray:
    """``value`` as a float32 or float64 ndarray (no copy when it already is one)."""
    array = np.asarray(value)
    if array.dtype not in FLOAT_DTYPES:
        raise TypeError(
            f"{layer}: {arg} must be a float32 or float64 array, got dtype {array.dtype} (shape {array.shape})"
        )
    return array


def read_only(array: np.ndarray) -> np.ndarray:
    """A read-only view of ``array``: how a layer hands back its input without sharing writable memory."""
    view = array.view()
    view.flags.writeable = False
    return view


def check_ndim(layer: str, arg: str, array: np.ndarray, ndim: int, layout: str) -> None:
    """Raise when ``array`` is not ``ndim``-D, naming the expected ``layout``."""
    if array.ndim != ndim:
        raise ValueError(f"{layer}: {arg} must be {ndim}-D {layout}, got shape {array.shape}")


def same_dtype(layer: str, **arrays: np.ndarray) -> np.dtype:
    """The common dtype of ``arrays``; mixing float32 and float64 is an error, not a silent upcast."""
    dtypes = {name: a.dtype for name, a in arrays.items()}
    if len(set(dtypes.values())) > 1:
        listed = ", ".join(f"{name} is {dtype}" for name, dtype in dtypes.items())
        raise TypeError(f"{layer}: arrays must share one dtype, but {listed}; cast them with .astype()")
    return next(iter(dtypes.values()))


def int_at_least(layer: str, arg: str, value: Any, minimum: int) -> int:
    """``value`` as an int ``>= minimum``; bools and floats are refused."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{layer}: {arg} must be an int, got {value!r}")
    if value < minimum:
        raise ValueError(f"{layer}: {arg} must be >= {minimum}, got {value}")
    return int(value)


def output_size(
    layer: str, shape: tuple[int, ...], window: tuple[int, ...], stride: int, pad: int, what: str
) -> tuple[int, int]:
    """``(H', W')`` for the last two axes ``(H, W)`` of ``shape``: ``(H + 2*pad - HH) // stride + 1``
    and the same for W, or a clear error naming ``shape`` when the window does not fit."""
    out = []
    for size, side, axis in zip(shape[-2:], window, ("height", "width")):
        if side > size + 2 * pad:
            raise ValueError(
                f"{layer}: the {what} {axis} window ({side}) is larger than the padded input "
                f"({size} + 2*{pad} = {size + 2 * pad}) of shape {tuple(shape)}"
            )
        out.append((size + 2 * pad - side) // stride + 1)
    return out[0], out[1]


class Like(NamedTuple):
    """An output's shape and dtype, which a vjp keeps instead of the output when its backward pass
    needs nothing else of it (the array itself can then be freed once the next layer is done)."""

    shape: tuple[int, ...]
    dtype: np.dtype[Any]


def like(y: np.ndarray) -> Like:
    """The :class:`Like` of ``y``: what :func:`cotangent` needs to check a ``dy`` against it."""
    return Like(y.shape, y.dtype)


def cotangent(layer: str, dy: Any, y: np.ndarray | Like) -> np.ndarray:
    """Check that ``dy`` matches the output ``y`` (or its :class:`Like`) in shape; returns it in ``y``'s dtype."""
    dy = np.asarray(dy)
    if dy.shape != y.shape:
        raise ValueError(f"{layer} vjp: dy must have the output's shape {y.shape}, got {dy.shape}")
    if dy.dtype.kind not in "fiu":
        raise TypeError(f"{layer} vjp: dy must be a numeric array, got dtype {dy.dtype}")
    cast: np.ndarray = dy.astype(y.dtype, copy=False)
    return cast


def number_at_least(layer: str, arg: str, value: Any, minimum: float, *, strict: bool = False) -> float:
    """``value`` as a finite float ``>= minimum`` (``> minimum`` when ``strict``)."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{layer}: {arg} must be a number, got {value!r}")
    if not np.isfinite(value) or (value <= minimum if strict else value < minimum):
        raise ValueError(f"{layer}: {arg} must be {'>' if strict else '>='} {minimum} and finite, got {value}")
    return float(value)


def describe(value: Any) -> str:
    """What ``value`` is, for an error message about params or state: keys, shapes and types, never
    a printed (and truncated) array."""
    if isinstance(value, dict):
        return f"a dict with keys {list(value)}"
    if isinstance(value, np.ndarray):
        return f"an array of shape {value.shape} ({value.dtype})"
    if isinstance(value, (tuple, list)):
        return f"a {type(value).__name__} of {len(value)} entries"
    return f"{value!r:.60}"


def wrong_keys(layer: str, what: str, keys: list[str], value: Any) -> TypeError:
    """The error for a params or state ``value`` that is not a dict with exactly ``keys``: names the
    missing and unexpected keys of a dict, or says what ``value`` is."""
    found = describe(value)
    if isinstance(value, dict):
        missing, extra = [k for k in keys if k not in value], [k for k in value if k not in keys]
        found = ", ".join(f"{label} {names}" for label, names in (("missing", missing), ("unexpected", extra)) if names)
    return TypeError(f"{layer}: {what} must be a dict with keys {keys}, got {found}")


def no_params(layer: str, params: Any) -> None:
    """A layer without parameters takes params ``()``."""
    if not is_empty(params):
        raise TypeError(f"{layer}: takes no params, so params must be (), got {describe(params)}")


def no_state(layer: str, state: Any) -> None:
    """A layer that keeps no state takes state ``()``."""
    if not is_empty(state):
        raise TypeError(f"{layer}: keeps no state, so state must be (), got {describe(state)}")


def dict_params(layer: str, params: Any, keys: tuple[str, ...], what: str = "params") -> dict[str, np.ndarray]:
    """``params`` (or a state, with ``what``) as a dict with exactly ``keys``, each a float array."""
    if not isinstance(params, dict) or set(params) != set(keys):
        raise wrong_keys(layer, what, list(keys), params)
    return {key: float_array(layer, f"{what}['{key}']", params[key]) for key in keys}


def fraction(layer: str, arg: str, value: Any) -> float:
    """``value`` as a float in ``[0, 1)`` (a momentum, a drop probability)."""
    number = number_at_least(layer, arg, value, 0.0)
    if not number < 1:
        raise ValueError(f"{layer}: {arg} must be in [0, 1), got {number}")
    return number


def example_shape(layer: str, shape: Any, ndim: int | None, layout: str) -> tuple[int, ...]:
    """One example's input shape (no batch axis) as a tuple of ints >= 0; raises, naming ``layer``
    and the shape, unless it has ``ndim`` axes (any number for ``None``), laid out as ``layout``."""
    if not isinstance(shape, (tuple, list)) or not all(
        isinstance(d, (int, np.integer)) and not isinstance(d, bool) and d >= 0 for d in shape
    ):
        raise TypeError(f"{layer}: an input shape must be a tuple of sizes >= 0, got {shape!r}")
    if ndim is not None and len(shape) != ndim:
        raise ValueError(f"{layer}: the input shape (one example, no batch axis) must be {layout}, got {tuple(shape)}")
    return tuple(int(d) for d in shape)


def same_shape_as_input(layer: str) -> Callable[[tuple[int, ...]], tuple[int, ...]]:
    """The ``out_shape`` of a layer whose output has its input's shape, whatever it is."""
    return lambda shape: example_shape(layer, shape, None, "any shape")


def whole_number(owner: str, arg: str, value: Any) -> int:
    """``value``, a number or a 0-d array as read back from a file, as an int ``>= 0``; a float is accepted
    when it is whole (``2.0``), anything else is a ValueError naming ``arg``."""
    array = np.asarray(value)
    kind = array.dtype.kind
    whole = kind in "iu" or (kind == "f" and bool(np.isfinite(array).all()) and bool((array == np.round(array)).all()))
    if array.shape != () or not whole or array < 0:
        raise ValueError(f"{owner}: {arg} must be a whole number >= 0, got {array.tolist()!r}")
    return int(array)


def floating_dtype(owner: str, arg: str, dtype: Any) -> np.dtype:
    """``dtype`` as a NumPy floating dtype (any precision; a data set may be float16)."""
    try:
        dt: np.dtype = np.dtype(dtype)
    except TypeError:
        raise TypeError(f"{owner}: {arg} must be a floating dtype, got {dtype!r}") from None
    if dt.kind != "f":
        raise ValueError(f"{owner}: {arg} must be a floating type, got {dt}")
    return dt


def one_of(owner: str, arg: str, value: Any, choices: tuple[str, ...]) -> str:
    """``value`` if it is one of ``choices``."""
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"{owner}: {arg} must be one of {', '.join(map(repr, choices))}, got {value!r}")
    return value


def checked_input_shape(owner: str, shape: Any) -> tuple[int, ...]:
    """One example's shape (no batch axis) given to a tool such as ``summary``: a tuple (or list) of ints >= 1,
    or, for a layer taking a tuple input, a non-empty tuple of such shapes (one per entry)."""
    if isinstance(shape, (tuple, list)) and shape and all(isinstance(s, (tuple, list)) for s in shape):
        return tuple(checked_input_shape(owner, s) for s in shape)  # type: ignore[misc]
    if not isinstance(shape, (tuple, list)) or not all(
        isinstance(d, (int, np.integer)) and not isinstance(d, bool) and d >= 1 for d in shape
    ):
        raise ValueError(f"{owner}: input_shape must be a tuple of whole numbers >= 1, e.g. (1, 8, 8), got {shape!r}")
    return tuple(int(d) for d in shape)


def tuple_input(layer: str, x: Any, names: tuple[str, ...], what: str = "x") -> tuple[Any, ...]:
    """A layer's tuple input (or a vjp's tuple cotangent, with ``what``) as a tuple of ``len(names)``
    entries; anything else is an error naming the layer and the entries it expects."""
    if not isinstance(x, (tuple, list)) or len(x) != len(names):
        got = f"a {type(x).__name__} of {len(x)} entries" if isinstance(x, (tuple, list)) else describe(x)
        raise TypeError(f"{layer}: {what} must be a tuple ({', '.join(names)}), got {got}")
    return tuple(x)


def index_array(layer: str, arg: str, value: Any, size: int) -> np.ndarray:
    """``value`` as an integer array of indices in ``[0, size)`` (token indices, labels)."""
    array = np.asarray(value)
    if array.dtype.kind not in "iu":
        raise TypeError(
            f"{layer}: {arg} must be an integer array of indices, got dtype {array.dtype} (shape {array.shape})"
        )
    if array.size and (array.min() < 0 or array.max() >= size):
        raise ValueError(f"{layer}: {arg} must be in [0, {size}), got min {array.min()}, max {array.max()}")
    return array
