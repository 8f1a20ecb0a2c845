"""fit's checkpoints: what is saved after every epoch (params, best params, network and optimizer state,
history, configuration), and resuming from one with every entry checked before it is used."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from funcnn._checks import whole_number
from funcnn.optim import Optimizer, restore_state
from funcnn.training._checkpoint_files import SEP, load_checkpoint
from funcnn.training._history import FitResult, History
from funcnn.tree import PyTree, tree_leaves_with_path, tree_map


@dataclass(frozen=True)
class Checkpoint:
    """Where :func:`fit` saves, after every epoch, everything needed to resume (an ``.npz``), and how it
    resumes. ``resume``: continue after the epoch saved in ``path`` when the file exists. ``config``:
    JSON-able settings (such as the learning rate) stored with fit's own (optimizer and its
    hyperparameters, batch size, seed, reg, dtype, network); a resume whose configuration differs is
    refused, listing the differences, unless ``allow_config_change``. Without ``resume``, an existing file
    at ``path`` is refused unless ``overwrite`` (it may be another run's)."""

    path: str | Path
    resume: bool = False
    config: Mapping[str, Any] | None = None
    allow_config_change: bool = False
    overwrite: bool = False


def checkpoint_options(checkpoint: str | Path | Checkpoint | None) -> Checkpoint | None:
    """``checkpoint`` (a path, or the settings) as a :class:`Checkpoint`; None stays None."""
    return checkpoint if checkpoint is None or isinstance(checkpoint, Checkpoint) else Checkpoint(checkpoint)


def checkpoint_tree(epoch: int, result: FitResult, config: dict[str, Any]) -> dict[str, Any]:
    """What fit saves after epoch ``epoch``: ``result``'s trees, the history as arrays, the configuration as JSON,
    and the name of the callback that stopped the run ("" when none did)."""
    return {
        "epoch": np.asarray(epoch),
        "params": result.params,
        "best_params": result.best_params,
        "state": result.state,
        "best_state": result.best_state,
        "opt_state": result.opt_state,
        "history": result.history.as_arrays(),
        "config": np.asarray(json.dumps(config, sort_keys=True)),
        "stopped_by": np.asarray(result.stopped_by or ""),
    }


def _config_changes(saved: dict[str, Any], config: dict[str, Any]) -> list[str]:
    """``"key: saved -> now"`` for every setting that differs."""
    missing = "(not set)"
    return [
        f"{key}: {saved.get(key, missing)!r} -> {config.get(key, missing)!r}"
        for key in sorted(saved.keys() | config.keys())
        if saved.get(key, missing) != config.get(key, missing)
    ]


def non_finite(tree: PyTree) -> list[str]:
    """Key paths of the float leaves of ``tree`` that hold NaN or infinity."""
    return [
        SEP.join(map(str, path))
        for path, leaf in tree_leaves_with_path(tree)
        if np.asarray(leaf).dtype.kind == "f" and not np.isfinite(leaf).all()
    ]


def saved_config(checkpoint: str | Path) -> dict[str, Any]:
    """The configuration stored in ``checkpoint``, read before anything else it holds."""
    text = load_checkpoint(checkpoint, {"config": None}, strict=False)["config"]
    if text.shape != () or text.dtype.kind != "U":
        problem = f"an array of shape {text.shape}" if text.shape else f"a {text.dtype} array"
    else:
        try:
            config = json.loads(str(text))
        except ValueError as error:
            config, problem = None, str(error)
        else:
            problem = f"a JSON {type(config).__name__}"
        if isinstance(config, dict):
            return config
    raise ValueError(f"checkpoint {checkpoint}: 'config' is not a JSON object of settings ({problem})")


def _saved_history(checkpoint: str | Path, arrays: dict[str, np.ndarray]) -> History:
    for key, value in arrays.items():
        scalar = key in ("best_val_acc", "best_epoch")
        if key == "best_epoch":
            whole_number(f"checkpoint {checkpoint}", f"'history/{key}'", value)
        elif value.ndim != (0 if scalar else 1) or value.dtype.kind not in "biuf":
            what = "a number" if scalar else "a list of numbers"
            raise ValueError(
                f"checkpoint {checkpoint}: 'history/{key}' must be {what}, "
                f"got an array of {value.dtype} of shape {value.shape}"
            )
    return History.from_arrays(arrays)


def _saved_stopped_by(checkpoint: str | Path) -> str | None:
    """The name of the callback that stopped the run saved in ``checkpoint``, "" when none did, None when the
    checkpoint predates this entry."""
    try:
        text = load_checkpoint(checkpoint, {"stopped_by": None}, strict=False)["stopped_by"]
    except ValueError:  # no such entry (or a damaged file, which the full load then reports)
        return None
    if text.shape != () or text.dtype.kind != "U":
        raise ValueError(
            f"checkpoint {checkpoint}: 'stopped_by' must be a callback's name or '', "
            f"got an array of {text.dtype} of shape {text.shape}"
        )
    return str(text)


def resume_run(
    checkpoint: Checkpoint, result: FitResult, config: dict[str, Any], optimizer: Optimizer
) -> tuple[FitResult, int]:
    """The run saved in ``checkpoint`` (``stopped_by`` as saved) and its epoch, after checking its configuration
    (first: a changed network is reported as such, not as missing keys) and its values."""
    path = checkpoint.path
    changes = _config_changes(saved_config(path), config)
    if changes and not checkpoint.allow_config_change:
        raise ValueError(
            f"fit: checkpoint {path} was written with another configuration ({'; '.join(changes)}); "
            "resume with the same settings, or allow the change (Checkpoint(..., "
            "allow_config_change=True), --allow-config-change)"
        )
    like = checkpoint_tree(0, result, config)
    like["history"] = {k: None for k in like["history"]}
    like["config"] = like["epoch"] = None  # checked below, never cast
    stopped_by = _saved_stopped_by(path)
    if stopped_by is None:
        del like["stopped_by"]
    else:
        like["stopped_by"] = None
    like["opt_state"] = tree_map(lambda _: None, like["opt_state"])  # the optimizer checks its own state
    try:
        saved = load_checkpoint(path, like)
    except ValueError as error:
        if not changes:
            raise
        raise ValueError(
            f"{error}: the network changed with the configuration ({'; '.join(changes)}), and a run "
            "cannot continue in another network"
        ) from None
    epoch = whole_number(f"checkpoint {path}", "'epoch'", saved["epoch"])
    try:
        opt_state = restore_state(optimizer, saved["opt_state"], saved["params"])
    except ValueError as error:
        raise ValueError(f"checkpoint {path}: opt_state: {error}") from None
    history = _saved_history(path, saved["history"])
    trees = ("params", "best_params", "state", "best_state")
    bad = non_finite({**{k: saved[k] for k in trees}, "opt_state": opt_state})
    if bad:
        raise ValueError(
            f"fit: checkpoint {path} holds NaN or infinite values in {', '.join(bad[:5])}; refusing to resume from it"
        )
    params, best_params, state, best_state = (saved[k] for k in trees)
    return FitResult(params, best_params, opt_state, history, state, best_state, stopped_by or None), epoch
