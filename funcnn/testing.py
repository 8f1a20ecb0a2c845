"""Hypothesis strategies that generate valid layer problems, to test your own layers like funcnn's.

Shapes, strides, paddings and window sizes are drawn by hypothesis; values come from a NumPy
generator seeded by hypothesis, so they look like real activations (no accidental exact zeros).
Needs the ``test`` extra (hypothesis).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from hypothesis import strategies as st

__all__ = [
    "AffineProblem",
    "ClassificationProblem",
    "ConvProblem",
    "NormProblem",
    "PoolProblem",
    "affine_problems",
    "classification_problems",
    "conv_problems",
    "float_dtypes",
    "group_norm_problems",
    "layer_norm_problems",
    "pool_problems",
]

float_dtypes = st.sampled_from([np.float32, np.float64])
"""float32 or float64."""


@dataclass(frozen=True)
class ConvProblem:
    """``conv(stride=stride, pad=pad)(params, x)`` is valid: x ``(N, C, H, W)``,
    params ``{"w": (F, C, HH, WW), "b": (F,)}``."""

    x: np.ndarray
    params: dict[str, np.ndarray]
    stride: int
    pad: int

    @property
    def conv_param(self) -> dict[str, int]:
        return {"stride": self.stride, "pad": self.pad}


@dataclass(frozen=True)
class PoolProblem:
    """``max_pool(**pool_param)((), x)`` is valid: x ``(N, C, H, W)``."""

    x: np.ndarray
    pool_height: int
    pool_width: int
    stride: int

    @property
    def pool_param(self) -> dict[str, int]:
        return {"pool_height": self.pool_height, "pool_width": self.pool_width, "stride": self.stride}


@dataclass(frozen=True)
class AffineProblem:
    """``affine(params, x)`` is valid: x ``(N, d1, ..., dk)``, params ``{"w": (D, M), "b": (M,)}``."""

    x: np.ndarray
    params: dict[str, np.ndarray]


@dataclass(frozen=True)
class NormProblem:
    """``layer_norm()(params, x)`` (``groups`` None) or ``group_norm(groups)(params, x)`` is valid:
    params ``{"gamma", "beta"}`` of shape ``x.shape[1:]`` (layer norm) or ``(C,)`` (group norm)."""

    x: np.ndarray
    params: dict[str, np.ndarray]
    groups: int | None


@dataclass(frozen=True)
class ClassificationProblem:
    """``softmax_loss(scores, y)`` is valid: scores ``(N, C)``, y ``(N,)`` ints in ``[0, C)``."""

    scores: np.ndarray
    y: np.ndarray


def _rng(draw: Any) -> np.random.Generator:
    return np.random.default_rng(draw(st.integers(0, 2**32 - 1)))


@st.composite
def conv_problems(draw: Any, dtype: Any = None, max_batch: int = 3, max_channels: int = 3, max_size: int = 9) -> ConvProblem:
    """Conv problems with non-square kernels, strides 1-3 and paddings 0-2, always with an output
    of at least 1x1. ``dtype`` None draws float32 or float64."""
    dtype = draw(float_dtypes) if dtype is None else dtype
    n, c, f = draw(st.integers(1, max_batch)), draw(st.integers(1, max_channels)), draw(st.integers(1, max_channels))
    hh, ww = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    stride, pad = draw(st.integers(1, 3)), draw(st.integers(0, 2))
    height = draw(st.integers(max(1, hh - 2 * pad), max(max_size, hh)))
    width = draw(st.integers(max(1, ww - 2 * pad), max(max_size, ww)))
    rng = _rng(draw)
    x = rng.standard_normal((n, c, height, width)).astype(dtype)
    params = {"w": rng.standard_normal((f, c, hh, ww)).astype(dtype), "b": rng.standard_normal(f).astype(dtype)}
    return ConvProblem(x, params, stride, pad)


@st.composite
def pool_problems(draw: Any, dtype: Any = None, ties: bool = False, max_batch: int = 3, max_size: int = 9) -> PoolProblem:
    """Max-pool problems with non-square windows, strides smaller than (overlapping), equal to and
    larger than the window. Tie-free inputs hold distinct values at least 1e-2 apart (safe for
    finite differences); with ``ties=True`` values come from {-1, 0, 1}, so most windows tie."""
    dtype = draw(float_dtypes) if dtype is None else dtype
    ph, pw, stride = draw(st.integers(1, 3)), draw(st.integers(1, 3)), draw(st.integers(1, 3))
    n, c = draw(st.integers(1, max_batch)), draw(st.integers(1, 3))
    height, width = draw(st.integers(ph, max(max_size, ph))), draw(st.integers(pw, max(max_size, pw)))
    rng = _rng(draw)
    shape = (n, c, height, width)
    if ties:
        x = rng.integers(-1, 2, size=shape).astype(dtype)
    else:
        x = (rng.permutation(int(np.prod(shape))).reshape(shape) * 1e-2 - 0.5).astype(dtype)
    return PoolProblem(x, ph, pw, stride)


@st.composite
def affine_problems(draw: Any, dtype: Any = None, max_batch: int = 4) -> AffineProblem:
    """Affine problems whose x has 1 to 3 trailing axes, flattened to D."""
    dtype = draw(float_dtypes) if dtype is None else dtype
    n = draw(st.integers(1, max_batch))
    trailing = tuple(draw(st.lists(st.integers(1, 4), min_size=1, max_size=3)))
    m = draw(st.integers(1, 5))
    rng = _rng(draw)
    x = rng.standard_normal((n, *trailing)).astype(dtype)
    d = int(np.prod(trailing))
    params = {"w": rng.standard_normal((d, m)).astype(dtype), "b": rng.standard_normal(m).astype(dtype)}
    return AffineProblem(x, params)


def _gamma_beta(rng: np.random.Generator, shape: tuple[int, ...], dtype: Any) -> dict[str, np.ndarray]:
    return {"gamma": rng.standard_normal(shape).astype(dtype), "beta": rng.standard_normal(shape).astype(dtype)}


@st.composite
def layer_norm_problems(draw: Any, dtype: Any = None, max_batch: int = 3) -> NormProblem:
    """Layer-norm problems: x ``(N, d1, ..., dk)`` with 1 to 3 non-batch axes, random gamma and beta."""
    dtype = draw(float_dtypes) if dtype is None else dtype
    n = draw(st.integers(1, max_batch))
    trailing = tuple(draw(st.lists(st.integers(1, 4), min_size=1, max_size=3)))
    rng = _rng(draw)
    return NormProblem(rng.standard_normal((n, *trailing)).astype(dtype), _gamma_beta(rng, trailing, dtype), None)


@st.composite
def group_norm_problems(draw: Any, dtype: Any = None, max_batch: int = 3, max_size: int = 4) -> NormProblem:
    """Group-norm problems: x ``(N, C, H, W)`` with 1 to 3 groups of 1 to 3 channels, random gamma and beta."""
    dtype = draw(float_dtypes) if dtype is None else dtype
    groups = draw(st.integers(1, 3))
    n, c = draw(st.integers(1, max_batch)), groups * draw(st.integers(1, 3))
    height, width = draw(st.integers(1, max_size)), draw(st.integers(1, max_size))
    rng = _rng(draw)
    return NormProblem(rng.standard_normal((n, c, height, width)).astype(dtype), _gamma_beta(rng, (c,), dtype), groups)


@st.composite
def classification_problems(draw: Any, dtype: Any = None, max_batch: int = 8, max_classes: int = 10) -> ClassificationProblem:
    """Scores and labels for the losses; at least two classes."""
    dtype = draw(float_dtypes) if dtype is None else dtype
    n, c = draw(st.integers(1, max_batch)), draw(st.integers(2, max_classes))
    rng = _rng(draw)
    return ClassificationProblem(rng.standard_normal((n, c)).astype(dtype), rng.integers(0, c, size=n))
