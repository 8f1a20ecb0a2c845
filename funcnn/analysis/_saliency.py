"""Saliency maps (Simonyan et al. 2014, the course's ``compute_saliency_maps``): how much each pixel
moves the score of the correct class, from the network's own vjp."""

from __future__ import annotations

import numpy as np

from funcnn._checks import float_array
from funcnn.core import LayerFn, State, run
from funcnn.tree import PyTree

__all__ = ["class_score_gradient", "saliency"]


def class_score_gradient(net: LayerFn, params: PyTree, x: np.ndarray, y: np.ndarray, state: State = ()) -> np.ndarray:
    """The gradient of ``sum_n scores[n, y[n]]`` with respect to the images ``x`` (any ``(N, ...)``),
    the network run in evaluation mode (``state``: its running statistics, if it keeps any): one
    vjp with a one-hot cotangent. Same shape and dtype as ``x``; each example's gradient is its own.

    Args:
        net: a network ``(params, x) -> (scores, vjp)``, moded or not.
        params: its params.
        x: the images ``(N, ...)``.
        y: their classes ``(N,)``.
        state: its state, if it has one (evaluation mode).

    Returns:
        The gradient of each example's correct-class score with respect to it, shaped like ``x``.
    """
    x = float_array("saliency", "x", x)
    labels = np.asarray(y)
    scores, vjp, _ = run(net, params, x, state, train=False)
    if scores.ndim != 2:
        raise ValueError(f"saliency: the network must give class scores (N, C), got shape {scores.shape}")
    classes = scores.shape[1]
    if labels.shape != (len(x),) or labels.dtype.kind not in "iu" or not ((labels >= 0) & (labels < classes)).all():
        raise ValueError(f"saliency: y must be ({len(x)},) integer labels in [0, {classes}), got {labels!r}"[:300])
    one_hot = np.zeros_like(scores)
    one_hot[np.arange(len(x)), labels] = 1
    return np.asarray(vjp(one_hot)[1])


def saliency(net: LayerFn, params: PyTree, x: np.ndarray, y: np.ndarray, state: State = ()) -> np.ndarray:
    """Saliency maps of images ``x`` ``(N, C, H, W)`` for their labels ``y`` ``(N,)``: the largest
    absolute value over the channels of :func:`class_score_gradient`, shape ``(N, H, W)``.

    Args:
        net: a network ``(params, x) -> (scores, vjp)``, moded or not.
        params: its params.
        x: images ``(N, C, H, W)``.
        y: their classes ``(N,)``.
        state: its state, if it has one (evaluation mode).

    Returns:
        Saliency maps ``(N, H, W)``: the largest absolute gradient over the channels.
    """
    gradient = class_score_gradient(net, params, x, y, state)
    if gradient.ndim != 4:
        raise ValueError(f"saliency: x must be images (N, C, H, W), got shape {gradient.shape}")
    maps: np.ndarray = np.abs(gradient).max(axis=1)
    return maps
