"""A picture of a training run (needs the ``plot`` extra: matplotlib)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from funcnn.history import History

INSTALL_HINT = ('matplotlib is not installed, so no plot was written; install it with: pip install "funcnn[plot]" '
                '(from a clone: pip install -e ".[plot]")')


def plot_history(history: History, path: str | Path, title: str = "") -> Path | None:
    """Save the loss of every step and the train/validation accuracy of every epoch to a PNG at
    ``path``. Returns the path, or None when matplotlib is missing."""
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
