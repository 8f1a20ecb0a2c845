"""Finite-difference gradients, as in the course's ``gradient_check.py``, without mutating inputs."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np

from funcnn.gradcheck._probe import central_difference


def rel_error(a: np.ndarray, b: np.ndarray) -> float:
    """The course's relative error: ``max |a - b| / max(1e-8, |a| + |b|)``, elementwise.

    Args:
        a: an array.
        b: an array of the same shape.

    Returns:
        The course's ``max(|a - b| / max(1e-8, |a| + |b|))``.
    """
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(np.max(np.abs(a - b) / np.maximum(1e-8, np.abs(a) + np.abs(b)), initial=0.0))


def numerical_gradient(f: Callable[[np.ndarray], float], x: np.ndarray, h: float = 1e-5) -> np.ndarray:
    """Central-difference gradient of a scalar function ``f`` at ``x``; same shape as ``x``.

    Args:
        f: a scalar function of ``x``.
        x: the point (restored after each probe).
        h: the central difference's step.

    Returns:
        The gradient of ``f`` at ``x``, shaped like ``x``.
    """
    return numerical_gradient_array(lambda moved: np.asarray(float(f(moved))), x, np.ones(()), h)


def numerical_gradient_array(
    f: Callable[[np.ndarray], np.ndarray], x: np.ndarray, dy: np.ndarray, h: float = 1e-5
) -> np.ndarray:
    """Central-difference gradient of ``sum(f(x) * dy)`` at ``x``: the VJP of an array function
    ``f`` with upstream gradient ``dy`` (shape of ``f(x)``). Returns a float64 array shaped like ``x``;
    ``f`` gets copies of ``x``, never ``x`` itself.

    Args:
        f: an array function of ``x``.
        x: the point.
        dy: the cotangent, shaped like ``f(x)``.
        h: the central difference's step.

    Returns:
        The gradient of ``sum(f(x) * dy)``, shaped like ``x``.
    """
    dy = np.asarray(dy)
    grad = np.zeros(np.shape(x))
    for index, plus, minus in each_element_moved(f, x, h):
        grad[index] = central_difference(dy, plus.astype(np.float64), minus.astype(np.float64), h)
    return grad


def each_element_moved(
    f: Callable[[np.ndarray], np.ndarray], x: np.ndarray, h: float
) -> Iterator[tuple[tuple[int, ...], np.ndarray, np.ndarray]]:
    """For each element of x (in float64): its index, ``f`` with that element moved by ``+h``, and by ``-h``.

    Args:
        f: an array function of ``x``; it gets copies, never ``x`` itself.
        x: the point.
        h: the step.

    Returns:
        An iterator of ``(index, f(x + h e_index), f(x - h e_index))``.
    """
    x = np.array(x, dtype=np.float64)  # as the course: a float32 step of 1e-5 would be mostly rounding
    for index in np.ndindex(x.shape):
        old = x[index]
        x[index] = old + h
        plus = np.asarray(f(x.copy()))
        x[index] = old - h
        minus = np.asarray(f(x.copy()))
        x[index] = old
        yield index, plus, minus
