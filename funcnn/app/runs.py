"""What every training job of ``funcnn train`` shares: its output folder, the header printed once fit has
accepted a checkpoint, the checkpoint of its fit, and the history and plot it leaves behind."""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any, TypeVar

from funcnn.app.files import write_atomically
from funcnn.training import Checkpoint, FitResult

T = TypeVar("T")
Log = Callable[[str], None]

RUN_FILES = ("checkpoint.npz", "history.json", "training.png")
# Options that a resumed run may change: where things are, how long to train (and when to stop), and the init
# (a resume does not use it).
CONFIG_EXEMPT = (
    "command",
    "run",
    "epochs",
    "out",
    "resume",
    "overwrite",
    "allow_config_change",
    "weight_scale",
    "patience",
)


def out_folder(args: argparse.Namespace) -> tuple[Path, bool]:
    """The run's folder, created, and whether it was created now; an existing run in it is replaced
    only with --overwrite (its files removed first) and continued only with --resume and a checkpoint."""
    out = Path(args.out or f"runs/{args.dataset}")
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} is a file, expected a folder")
    previous = [name for name in RUN_FILES if (out / name).exists()]
    if previous and not (args.resume or args.overwrite):
        raise ValueError(
            f"--out {out} already holds a run ({', '.join(previous)}); continue it with --resume, "
            "replace it with --overwrite, or choose another --out"
        )
    if args.resume and previous and "checkpoint.npz" not in previous:
        raise ValueError(
            f"--out {out} holds {', '.join(previous)} but no checkpoint.npz to resume from; "
            "replace that run with --overwrite, or choose another --out"
        )
    created = not out.exists()
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ValueError(f"--out {out}: cannot create the folder ({error.strerror})") from None
    if not os.access(out, os.W_OK | os.X_OK):
        raise ValueError(f"--out {out}: the folder is not writable")
    if args.overwrite:  # no file of the old run may be left beside the new one
        for name in previous:
            (out / name).unlink()
    return out, created


def fit_in_folder(args: argparse.Namespace, header: str, run: Callable[[Checkpoint, Log], T]) -> tuple[T, Path]:
    """``run(checkpoint, log)`` (a fit) as ``funcnn train`` runs it, into the folder of ``--out``: ``header``
    printed first (when resuming, once fit has accepted the checkpoint, so that a refusal comes first and
    alone), the options kept as the checkpoint's configuration. A failed start leaves no folder behind.
    Returns what ``run`` returned and the folder."""
    out, created = out_folder(args)  # after every option was checked: a failed start leaves no folder behind
    checkpoint = out / "checkpoint.npz"
    pending = [header]

    def log(line: str) -> None:
        print(*pending, line, sep="\n")
        pending.clear()

    if not (args.resume and checkpoint.exists()):
        print(pending.pop())
    config = {k: v for k, v in vars(args).items() if k not in CONFIG_EXEMPT}
    config["data_path"] = args.data_path and str(Path(args.data_path).resolve())
    try:
        return run(Checkpoint(checkpoint, args.resume, config, args.allow_config_change), log), out
    except BaseException:
        if created and not any(out.iterdir()):
            out.rmdir()
        raise


def write_history(out: Path, summary: dict[str, Any], result: FitResult, title: str) -> Path | None:
    """``history.json`` (``summary``, the stopping callback and the history) and ``training.png`` (when
    matplotlib is there) into ``out``; the plot's path, or None."""
    from funcnn.plot import plot_history

    summary = {**summary, "stopped_by": result.stopped_by, "history": asdict(result.history)}
    write_atomically(out / "history.json", json.dumps(summary, indent=1))
    return plot_history(result.history, out / "training.png", title)
