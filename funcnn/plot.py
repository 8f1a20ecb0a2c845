"""Pictures (need the ``plot`` extra: matplotlib): a training run's curves, a conv's filters, a
layer's activation maps and saliency maps, a learning-rate range test and schedules.
:func:`filter_grid` needs only NumPy."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from funcnn.core import LayerFn, State, run
from funcnn.optim import Schedule
from funcnn.training import History, LRFind
from funcnn.tree import PyTree

INSTALL_HINT = (
    'matplotlib is not installed, so no plot was written; install it with: pip install "funcnn[plot]" '
    '(from a clone: pip install -e ".[plot]")'
)


def plot_history(history: History, path: str | Path, title: str = "") -> Path | None:
    """Save the loss of every step and the train/validation accuracy of every epoch to a PNG at
    ``path``. Returns the path, or None when matplotlib is missing.

    Args:
        history: a :class:`funcnn.History`.
        path: the PNG to write.
        title: the figure's title.

    Returns:
        The path, or None without matplotlib.
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    fig, (ax_loss, ax_acc) = plt.subplots(2, 1, figsize=(7, 6), constrained_layout=True)
    steps_per_epoch = len(history.loss_history) / max(1, len(history.val_acc_history))
    ax_loss.plot(np.arange(1, len(history.loss_history) + 1) / steps_per_epoch, history.loss_history, lw=0.8)
    ax_loss.set(xlabel="epoch", ylabel="training loss", yscale="log", title=title or "training")
    epochs = np.arange(1, len(history.val_acc_history) + 1)
    ax_acc.plot(epochs, history.train_acc_history, "o-", label="train")
    ax_acc.plot(epochs, history.val_acc_history, "o-", label="validation")
    ax_acc.set(xlabel="epoch", ylabel="accuracy")
    ax_acc.legend()
    path = Path(path)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _pyplot() -> Any:
    """matplotlib.pyplot, or an ImportError that names the ``plot`` extra."""
    try:
        import matplotlib.pyplot as plt
    except ImportError:
        raise ImportError(INSTALL_HINT.replace("no plot was written", "funcnn.plot cannot draw")) from None
    return plt


def filter_grid(w: np.ndarray, ubound: float = 255.0, padding: int = 1) -> np.ndarray:
    """The course's ``visualize_grid`` for a conv's weights ``w`` ``(F, C, HH, WW)``: the F filters
    side by side in a square grid, ``padding`` pixels apart (0 between them), each scaled to
    ``[0, ubound]`` on its own (a constant filter is 0). Returns ``(rows, cols, C)`` with
    ``rows = ceil(sqrt(F)) * (HH + padding) - padding`` and the same for the columns.

    Args:
        w: conv weights ``(F, C, HH, WW)``.
        ubound: the top of the range each filter is scaled to.
        padding: pixels between filters.

    Returns:
        The grid ``(rows, columns, C)``.
    """
    w = np.asarray(w, dtype=np.float64)
    if w.ndim != 4:
        raise ValueError(f"filter_grid: w must be a conv's weights (F, C, HH, WW), got shape {w.shape}")
    count, channels, height, width = w.shape
    side = math.ceil(math.sqrt(count))
    grid = np.zeros((side * (height + padding) - padding, side * (width + padding) - padding, channels))
    for i, image in enumerate(w.transpose(0, 2, 3, 1)):
        top, left = (i // side) * (height + padding), (i % side) * (width + padding)
        low, high = image.min(), image.max()
        grid[top : top + height, left : left + width] = ubound * (image - low) / (high - low) if high > low else 0
    return grid


def plot_filters(w: np.ndarray, title: str = "") -> Any:
    """Draw :func:`filter_grid` of a conv's weights ``(F, C, HH, WW)``: grey for one channel, RGB
    for three (other counts: the first channel). Returns the matplotlib figure.

    Args:
        w: conv weights ``(F, C, HH, WW)``.
        title: the figure's title.

    Returns:
        The matplotlib figure.
    """
    plt = _pyplot()
    grid = filter_grid(w, ubound=1.0)
    fig, ax = plt.subplots(figsize=(4, 4))
    ax.imshow(grid if grid.shape[2] == 3 else grid[:, :, 0], cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    ax.set(title=title or f"{np.shape(w)[0]} filters {np.shape(w)[2]}x{np.shape(w)[3]}")
    ax.axis("off")
    return fig


def plot_activation_maps(layer: LayerFn, params: PyTree, image: np.ndarray, state: State = (), columns: int = 8) -> Any:
    """Run ``layer`` (evaluation mode, ``state`` if it keeps one) on one image ``(C, H, W)`` and draw
    each channel of its output ``(F, H', W')``, one panel per channel. Returns the figure.

    Args:
        layer: a layer.
        params: its params.
        image: one image ``(C, H, W)``.
        state: its state, if it has one.
        columns: panels per row.

    Returns:
        The matplotlib figure.
    """
    plt = _pyplot()
    maps, _, _ = run(layer, params, np.asarray(image)[None], state, train=False)
    if maps.ndim != 4:
        raise ValueError(f"plot_activation_maps: the layer must give maps (1, F, H', W'), got shape {maps.shape}")
    rows = math.ceil(maps.shape[1] / columns)
    fig, axes = plt.subplots(rows, columns, figsize=(columns, rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for channel, (ax, feature_map) in enumerate(zip(axes.flat, maps[0])):
        ax.imshow(feature_map, cmap="viridis", interpolation="nearest")
        ax.set_title(str(channel), fontsize=8)
    return fig


def plot_saliency(images: np.ndarray, maps: np.ndarray, titles: Sequence[str] = ()) -> Any:
    """Draw images ``(N, C, H, W)`` (one channel: grey; three: RGB in [0, 1]) above their saliency
    maps ``(N, H, W)`` (from :func:`funcnn.saliency`). Returns the figure.

    Args:
        images: ``(N, C, H, W)``.
        maps: their saliency maps ``(N, H, W)``.
        titles: one per image, or None.

    Returns:
        The matplotlib figure.
    """
    plt = _pyplot()
    images, maps = np.asarray(images), np.asarray(maps)
    if images.ndim != 4 or maps.shape != (images.shape[0], *images.shape[2:]):
        raise ValueError(
            f"plot_saliency: images must be (N, C, H, W) and maps (N, H, W), got {images.shape} and {maps.shape}"
        )
    fig, axes = plt.subplots(2, len(images), figsize=(1.2 * len(images), 2.6), squeeze=False)
    for i, (image, saliency_map) in enumerate(zip(images, maps)):
        shown = image[0] if image.shape[0] != 3 else image.transpose(1, 2, 0)
        axes[0, i].imshow(shown, cmap="gray_r" if image.shape[0] != 3 else None, interpolation="nearest")
        axes[1, i].imshow(saliency_map, cmap="hot", interpolation="nearest")
        axes[0, i].set_title(titles[i] if i < len(titles) else "", fontsize=8)
        axes[0, i].axis("off")
        axes[1, i].axis("off")
    return fig


def plot_lr_find(result: LRFind, title: str = "") -> Any:
    """The range test's curve (:func:`funcnn.lr_find`): raw and smoothed loss over the learning rate, log
    scale, with the suggestion and the steepest fall marked. Returns the matplotlib figure.

    Args:
        result: an :class:`funcnn.LRFind`.
        title: the figure's title.

    Returns:
        The matplotlib figure.
    """
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 3.5), constrained_layout=True)
    ax.plot(result.lrs, result.losses, lw=0.6, alpha=0.4, label="loss")
    ax.plot(result.lrs, result.smoothed, lw=1.5, label="smoothed")
    ax.axvline(result.suggestion, color="C2", ls="--", label=f"suggestion {result.suggestion:.1e}")
    ax.axvline(result.steepest, color="C3", ls=":", label=f"steepest {result.steepest:.1e}")
    ax.set(xscale="log", xlabel="learning rate", ylabel="training loss", title=title or "learning-rate range test")
    ax.legend(fontsize=8)
    return fig


def plot_schedules(schedules: dict[str, Schedule], steps: int, title: str = "") -> Any:
    """Learning-rate schedules (name -> ``step -> lr``) over ``steps`` steps, one curve each. Returns the
    matplotlib figure.

    Args:
        schedules: name -> schedule.
        steps: how many steps to draw.
        title: the figure's title.

    Returns:
        The matplotlib figure.
    """
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 3), constrained_layout=True)
    x = np.arange(steps)
    for name, schedule in schedules.items():
        ax.plot(x, [schedule(int(k)) for k in x], label=name)
    ax.set(xlabel="step", ylabel="learning rate", title=title or "schedules")
    ax.legend(fontsize=8)
    return fig
