"""The layer type: a pure function ``(params, x) -> (y, vjp)`` with a name and its parameter keys."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from funcnn.tree import PyTree

__all__ = ["VJP", "Apply", "Init", "Layer", "Shape", "WeightScale", "layer"]

VJP = Callable[[np.ndarray], tuple[PyTree, np.ndarray]]
Apply = Callable[[PyTree, np.ndarray], tuple[np.ndarray, VJP]]
Shape = tuple[int, ...]
WeightScale = float | str
# init(rng, input_shape, dtype, weight_scale) -> (output_shape, params); shapes are per example (no N).
Init = Callable[[np.random.Generator, Shape, np.dtype, WeightScale], tuple[Shape, PyTree]]


@dataclass(frozen=True, eq=False)
class Layer:
    """A named pure layer. Calling it is calling ``apply``: ``layer(params, x) -> (y, vjp)``.

    ``param_keys`` says what params the layer takes: ``()`` for none (params ``()``), a tuple of
    names for a flat dict with exactly those keys, or ``None`` for any other tree (a chain's tuple).
    ``sandwich`` uses it to merge its layers' dicts. ``init``, when the layer knows its sizes,
    makes its params from an input shape (see :func:`funcnn.init_params`).
    """

    apply: Apply
    name: str
    param_keys: tuple[str, ...] | None = ()
    init: Init | None = None

    def __post_init__(self) -> None:
        # help(layer) shows what the wrapped function documents.
        object.__setattr__(self, "__doc__", self.apply.__doc__ or type(self).__doc__)

    def __call__(self, params: PyTree, x: np.ndarray) -> tuple[np.ndarray, VJP]:
        return self.apply(params, x)

    def __repr__(self) -> str:
        return self.name


def layer(apply: Apply, name: str | None = None, param_keys: tuple[str, ...] | None = (), init: Init | None = None) -> Layer:
    """Wrap a user function ``apply(params, x) -> (y, vjp)`` as a :class:`Layer`.

    Needed only to put a function with a dict of params inside ``sandwich``, which must know its
    keys, or to give it an ``init`` for :func:`funcnn.init_params`.
    """
    return Layer(apply, name or getattr(apply, "__name__", "layer"), param_keys, init)


def layer_name(f: Any) -> str:
    """A readable name for a layer or a plain function, for messages."""
    return f.name if isinstance(f, Layer) else getattr(f, "__name__", repr(f))
