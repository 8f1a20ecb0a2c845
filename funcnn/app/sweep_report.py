"""What a sweep shows and writes: progress lines, the results table (CSV and the top trials), and the
course's picture of log learning rate against log reg, coloured by validation accuracy."""

from __future__ import annotations

import csv
import io
import math
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from optuna.trial import FrozenTrial, TrialState

from funcnn.app.files import write_atomically

SLOT = "slot"  # user attr: which of the sweep's N trials a trial runs (a retried trial keeps its slot)
DUPLICATE = "duplicate_of"  # user attr: a slot queued twice (two commands at once); this copy did not run


def slot_trials(trials: Sequence[FrozenTrial]) -> list[FrozenTrial]:
    """``trials`` without the copies of a slot queued twice, which never run."""
    return [t for t in trials if DUPLICATE not in t.user_attrs]


def finished_slots(trials: Sequence[FrozenTrial]) -> dict[int, FrozenTrial]:
    """The trial that ended each slot: complete, pruned, or failed by its own error (not by a lost worker)."""
    done = {}
    for t in slot_trials(trials):
        if t.state in (TrialState.COMPLETE, TrialState.PRUNED) or (
            t.state == TrialState.FAIL and "error" in t.user_attrs
        ):
            done[t.user_attrs[SLOT]] = t
    return done


def _clock(seconds: float) -> str:
    seconds = round(seconds)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def progress_line(trials: Sequence[FrozenTrial], total: int, done_before: int, seconds: float) -> str:
    """``trials 5/16 done (4 complete, 1 pruned, 0 failed; 2 running) best 0.967 (trial 3) 0:00:41 left``;
    the time left extrapolates the rate of the trials done since this command started (``done_before`` were done)."""
    trials = slot_trials(trials)
    ended = finished_slots(trials).values()
    states = Counter(t.state for t in ended)
    running = sum(t.state == TrialState.RUNNING for t in trials)
    lost = sum(t.state == TrialState.FAIL and "error" not in t.user_attrs for t in trials)
    best = max((t for t in ended if t.state == TrialState.COMPLETE), key=lambda t: t.value or 0.0, default=None)
    line = (
        f"trials {len(ended)}/{total} done ({states[TrialState.COMPLETE]} complete, {states[TrialState.PRUNED]} "
        f"pruned, {states[TrialState.FAIL]} failed; {running} running{f', {lost} retried' if lost else ''})"
    )
    if best is not None:
        line += f"  best val acc {best.value:.4f} (trial {best.number})"
    if len(ended) > done_before:
        line += f"  {_clock(seconds / (len(ended) - done_before) * (total - len(ended)))} left"
    return line


def _row(trial: FrozenTrial, names: Sequence[str]) -> dict[str, object]:
    attrs = trial.user_attrs
    seconds = (
        (trial.datetime_complete - trial.datetime_start).total_seconds()
        if trial.datetime_complete and trial.datetime_start
        else None
    )
    return {
        "trial": trial.number,
        "slot": attrs.get(SLOT),
        "state": trial.state.name.lower(),
        "val_acc": trial.value,
        "epochs": attrs.get("epochs"),
        "seconds": seconds and round(seconds, 2),
        **{n: trial.params.get(n) for n in names},
        "error": attrs.get("error", ""),
    }


def write_results(trials: Sequence[FrozenTrial], path: Path) -> list[dict[str, object]]:
    """Every trial (retried ones included) as a CSV row at ``path``: complete trials first, best validation
    accuracy first among them (a pruned trial's value is only its last report); the rows."""
    trials = slot_trials(trials)
    names = sorted({n for t in trials for n in t.params})
    ordered = sorted(
        trials, key=lambda t: (t.state != TrialState.COMPLETE, t.value is None, -(t.value or 0.0), t.number)
    )
    rows = [_row(t, names) for t in ordered]
    text = io.StringIO(newline="")
    writer = csv.DictWriter(
        text, fieldnames=["trial", "slot", "state", "val_acc", "epochs", "seconds", *names, "error"]
    )
    writer.writeheader()
    writer.writerows(rows)
    write_atomically(path, text.getvalue())
    return rows


def top_table(rows: Sequence[dict[str, object]], count: int = 5) -> str:
    """The first ``count`` rows of :func:`write_results` as aligned text."""
    names = [k for k in rows[0] if k not in ("slot", "error")] if rows else []
    cells = [[_cell(row[k]) for k in names] for row in rows[:count]]
    widths = [max(len(k), *(len(c[i]) for c in cells)) for i, k in enumerate(names)]
    return "\n".join("  ".join(c.rjust(w) for c, w in zip(line, widths)) for line in [names, *cells])


def _cell(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "" if value is None else str(value)


def plot_lr_reg(trials: Sequence[FrozenTrial], path: Path, title: str) -> Path | None:
    """The course's scatter of log10 learning rate against log10 reg, coloured by validation accuracy (pruned
    trials as crosses, at their last epoch's), over the trials that searched both; the path, or None without
    matplotlib or such trials."""
    shown = {TrialState.COMPLETE: "o", TrialState.PRUNED: "x"}
    points = [
        (t.params["lr"], t.params["reg"], t.value, shown[t.state])
        for t in trials
        if t.state in shown and t.value is not None and "lr" in t.params and t.params.get("reg", 0) > 0
    ]
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    if not points:
        return None
    fig, ax = plt.subplots(figsize=(6, 4.5), constrained_layout=True)
    low, high = min(p[2] for p in points), max(p[2] for p in points)
    for marker, label in (("o", "complete"), ("x", "pruned")):
        mine = [p for p in points if p[3] == marker]
        if mine:
            lr, reg, acc, _ = zip(*mine)
            dots = ax.scatter(
                [math.log10(v) for v in lr],
                [math.log10(v) for v in reg],
                c=acc,
                cmap="viridis",
                vmin=low,
                vmax=high,
                s=60,
                marker=marker,
                label=label,
            )
    fig.colorbar(dots, ax=ax, label="validation accuracy")
    ax.set(xlabel="log10 learning rate", ylabel="log10 reg", title=title)
    ax.legend(loc="best")
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    tmp.replace(path)
    return path
