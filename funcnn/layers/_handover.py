"""Handing an array over: a caller that puts ``dy`` in a one-item list and keeps no other reference
lets the vjp it calls free ``dy`` as soon as it is read, or write ``dx`` into it when nothing else can
see it (:func:`sole`). ``vjp(dy)`` stays the contract of every layer; this is the training step's path.

A vjp marked by :func:`takes_handover` also takes ``vjp([dy], need_dx, handed=True, last=...)``.
With ``last=True`` the caller promises never to call it again: a combination then drops each layer's
vjp as soon as it has run, so what it kept is freed during the backward pass (as PyTorch frees its
saved tensors).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import numpy as np

from funcnn.core import VJP, pull_back, skips_dx
from funcnn.tree import PyTree

__all__ = ["hand_over", "sole", "take", "takes_handover"]


def takes_handover(vjp: Callable[..., tuple[PyTree, Any]]) -> VJP:
    """Mark a vjp that also takes ``vjp([dy], need_dx, handed=True, last=...)`` (and ``need_dx=False``,
    see :func:`funcnn.core.skips_dx`)."""
    vjp.takes_handover = True  # type: ignore[attr-defined]
    return skips_dx(vjp)


def hand_over(vjp: VJP, box: list[np.ndarray], need_dx: bool, last: bool = False) -> tuple[PyTree, np.ndarray | None]:
    """``pull_back(vjp, box.pop(), need_dx)``, handing the list itself (and ``last``) to a vjp that takes it."""
    if getattr(vjp, "takes_handover", False):
        return vjp(box, need_dx=need_dx, handed=True, last=last)  # type: ignore[call-arg, arg-type]
    return pull_back(vjp, box.pop(), need_dx=need_dx)


def take(dy: Any, handed: bool) -> np.ndarray:
    """The cotangent a vjp got: the array itself, or popped from the list it was handed over in."""
    array: np.ndarray = dy.pop() if handed else dy
    return array


def _references(array: np.ndarray) -> tuple[int, int]:
    """References to ``array`` and to its base (0 without one), counted from a caller's local variable."""
    base = array.base
    return sys.getrefcount(array), (0 if base is None else sys.getrefcount(base))


def _counted(array: np.ndarray) -> tuple[int, int]:
    """:func:`_references` from one frame more, as :func:`sole` counts."""
    return _references(array)


def _calibrate() -> tuple[tuple[int, int], tuple[int, int]]:
    """What :func:`sole` counts for an array held by one local variable and nothing else, and for a view
    of an array nothing else holds: the interpreter's own counts, whatever its version."""
    owner = np.empty(2)
    viewed = np.empty(2)
    view = viewed.reshape(2)
    del viewed
    return _counted(owner), _counted(view)


ALONE, VIEW_ALONE = _calibrate()


def sole(array: np.ndarray) -> bool:
    """Whether nothing but the caller's one local variable can see ``array`` (nor any array sharing its
    memory), so that writing into it cannot change what another holder sees. Conservative: a view of a
    view, or anything else referring to the array or its base, gives False."""
    if not (isinstance(array, np.ndarray) and array.flags.writeable and array.flags.c_contiguous):
        return False
    if isinstance(array.base, np.ndarray) and array.base.base is not None:
        return False
    return _references(array) <= (ALONE if array.base is None else VIEW_ALONE)
