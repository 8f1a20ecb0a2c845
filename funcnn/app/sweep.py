"""``funcnn sweep``: a hyperparameter study on Optuna over the options of ``funcnn train``, run by local
worker processes and by any other machine that joins the same storage (``--storage``, ``--study``).

The study holds exactly ``--trials`` queued trials ("slots"); workers run queued trials only, so N trials
run once each however many workers share them. A worker killed mid-trial stops its heartbeat: another
worker (or a rerun) marks that trial failed and queues it again with the same values."""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import threading
import time
import uuid
import warnings
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import optuna
from optuna.trial import FrozenTrial, TrialState
from sqlalchemy.exc import SQLAlchemyError

from funcnn.app.datasets import load_named
from funcnn.app.files import write_atomically
from funcnn.app.options import Options, Parser, add_sweep_options, sweep_options, train_options
from funcnn.app.space import Range, search_space
from funcnn.app.sweep_report import (
    SLOT,
    finished_slots,
    plot_lr_reg,
    progress_line,
    slot_trials,
    top_table,
    write_results,
)
from funcnn.app.sweep_signals import (
    LOST_STORAGE,
    CtrlC,
    WorkerCtrlC,
    lost_storage,
    stop_workers,
    storage_reason,
)
from funcnn.app.sweep_storage import NoTrialLeft, close_storage, open_storage
from funcnn.app.sweep_trial import Duplicate, TrialError, make_objective

# What may differ between the commands that share a study: where and how they run, not what they search.
LOCAL_OPTIONS = (
    "command",
    "run",
    "trials",
    "workers",
    "out",
    "storage",
    "storage_shown",
    "heartbeat",
    "resume",
    "data_path",
    "overwrite",
)
THREAD_VARIABLES = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


def _sampler(name: str) -> optuna.samplers.BaseSampler:
    return optuna.samplers.TPESampler() if name == "tpe" else optuna.samplers.RandomSampler()


def _pruner(name: str) -> optuna.pruners.BasePruner:
    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=4, n_warmup_steps=1)
    if name == "halving":
        return optuna.pruners.SuccessiveHalvingPruner()
    return optuna.pruners.NopPruner()


def _config(args: argparse.Namespace, space: tuple[Range, ...]) -> dict[str, Any]:
    """What every command joining the study must agree on, as JSON reads it back."""
    config = {k: v for k, v in vars(args).items() if k not in LOCAL_OPTIONS + ("space", "space_file")}
    as_read: dict[str, Any] = json.loads(json.dumps({**config, "space": [asdict(r) for r in space]}))
    return as_read


def _queue_next(study: optuna.Study) -> bool:
    """Queue the study's next slot if it has fewer than its ``trials``; whether it did. Slots are queued as
    workers need them, so a large ``--trials`` starts at once; two workers queueing the same slot at once
    leave a copy that is never run (see sweep_trial)."""
    slots = 1 + max((t.user_attrs[SLOT] for t in study.get_trials(deepcopy=False)), default=-1)
    if slots >= study.user_attrs["trials"]:
        return False
    study.enqueue_trial({}, user_attrs={SLOT: slots})
    return True


def _reopen_interrupted(study: optuna.Study) -> int:
    """Queue again, with the same values, each slot whose last trial was interrupted (Ctrl-C) rather than
    failed by its own error, and that nothing else runs or waits to run; how many."""
    trials = slot_trials(study.get_trials(deepcopy=False))
    active = {t.user_attrs[SLOT] for t in trials if t.state in (TrialState.WAITING, TrialState.RUNNING)}
    ended = set(finished_slots(trials))
    last: dict[int, FrozenTrial] = {t.user_attrs[SLOT]: t for t in trials}
    reopened = [t for slot, t in last.items() if slot not in active | ended]
    for t in reopened:
        study.add_trial(
            optuna.create_trial(
                state=TrialState.WAITING,
                params=t.params,
                distributions=t.distributions,
                user_attrs={SLOT: t.user_attrs[SLOT]},
            )
        )
    return len(reopened)


def _open_study(
    args: argparse.Namespace, storage: optuna.storages.BaseStorage, config: dict[str, Any]
) -> tuple[optuna.Study, str]:
    """Create the study with its N queued slots, or join/continue it (its configuration must match,
    and a larger ``--trials`` queues more); the study and what happened, for the header."""
    if args.resume and args.study not in optuna.get_all_study_names(storage):
        raise ValueError(f"--resume: there is no study {args.study!r} in {args.storage_shown} to continue")
    try:
        study = optuna.create_study(storage=storage, study_name=args.study, direction="maximize")
    except optuna.exceptions.DuplicatedStudyError:
        study = optuna.load_study(study_name=args.study, storage=storage)
    else:
        study.set_user_attr("config", config)
        study.set_user_attr("uid", uuid.uuid4().hex)
        study.set_user_attr("trials", args.trials)
        return study, "created"
    for _ in range(300):  # a study just created elsewhere has its configuration within a moment
        if "trials" in study.user_attrs:
            break
        time.sleep(0.1)
    saved = study.user_attrs.get("config", {})
    changes = [
        f"{k}: {saved.get(k)!r} -> {config.get(k)!r}"
        for k in sorted(saved.keys() | config.keys())
        if saved.get(k) != config.get(k)
    ]
    if changes:
        raise ValueError(
            f"study {args.study!r} in {args.storage_shown} searches another configuration ({'; '.join(changes)}); "
            "use the same options, or another --study"
        )
    slots = study.user_attrs["trials"]
    if args.trials < slots:
        raise ValueError(
            f"--trials {args.trials}: study {args.study!r} already has {slots} trials; ask for at least that many"
        )
    while study.user_attrs["trials"] < args.trials:  # two commands growing it at once: the larger number stays
        study.set_user_attr("trials", args.trials)
    reopened = _reopen_interrupted(study)
    return study, f"joined ({slots} trials there{f', {reopened} interrupted ones queued again' if reopened else ''})"


def _checked_value(action: argparse.Action, value: Any) -> None:
    """Check ``value`` with the option's parser type, as if it were given on the command line."""
    if action.choices is not None and value is not None and value not in action.choices:
        choices = ", ".join(map(repr, action.choices))
        raise ValueError(f"{action.option_strings[0]}: must be one of {choices}, got {value!r}")
    if callable(action.type) and value is not None and not isinstance(value, bool):
        try:
            action.type(str(value))
        except (argparse.ArgumentTypeError, ValueError) as error:
            raise ValueError(f"{action.option_strings[0]}: {error}") from None


def _check(args: argparse.Namespace, train: Options) -> tuple[Range, ...]:
    """The search space, after checking every option (given in Python, the parser did not) and every
    range's ends with the parser's checks of ``funcnn train``."""
    for action in sweep_options().values():
        _checked_value(action, getattr(args, action.dest, None))
    if isinstance(args.space, str):
        raise TypeError(f"space must be a list of ranges such as ['lr=log:1e-4:1e-2'], got the string {args.space!r}")
    args.workers = len(os.sched_getaffinity(0)) if args.workers is None else args.workers
    space = search_space(args.space, args.space_file, train)
    load_named(args.dataset, args.data_path, np.dtype(args.dtype).type)  # a data set error: here, once, not per worker
    options = train
    for r in space:
        for value in r.bounds():
            try:
                _checked_value(options[r.option], value)
            except ValueError as error:
                raise ValueError(f"search space {r.option} ({r.kind} {list(r.bounds())}): {error}") from None
            _network_takes(args, r, value)
    return space


def _network_takes(args: argparse.Namespace, r: Range, value: Any) -> None:
    """Refuse a value of ``r`` that the network refuses (an even filter size), as every trial would fail."""
    from funcnn.app.recipe import course_net

    if r.option in ("filters", "filter_size", "hidden", "batch_norm", "dropout"):
        try:
            course_net({**vars(args), r.option: value})
        except ValueError as error:
            raise ValueError(f"search space {r.option} ({r.kind} {list(r.bounds())}): {error}") from None


def _start_workers(settings: dict[str, Any], count: int, into: list[subprocess.Popen[bytes]], ctrl_c: CtrlC) -> None:
    """Start ``count`` worker processes into ``into``, the cores' BLAS threads divided between them (unless set
    by the user); a Ctrl-C meanwhile arrives once all are recorded."""
    cores = len(os.sched_getaffinity(0))
    env = dict(os.environ)
    for name in THREAD_VARIABLES:
        env.setdefault(name, str(max(1, cores // count)))
    command = [sys.executable, "-m", "funcnn.app.sweep", json.dumps(settings)]
    with ctrl_c.starting():
        into += [subprocess.Popen(command, env=env) for _ in range(count)]


def _without_time_left(line: str) -> str:
    return line.rsplit("  ", 1)[0] if line.endswith(" left") else line


def _watch(study: optuna.Study, workers: list[subprocess.Popen[bytes]], total: int) -> None:
    """Print a progress line whenever the counts change, until every worker has exited."""
    started, shown = time.perf_counter(), ""
    done_before = len(finished_slots(study.get_trials(deepcopy=False)))
    while True:
        running = any(w.poll() is None for w in workers)
        line = progress_line(study.get_trials(deepcopy=False), total, done_before, time.perf_counter() - started)
        if _without_time_left(line) != _without_time_left(shown):
            print(line, flush=True)
            shown = line
        if not running:
            return
        time.sleep(1.0)


def _report(study: optuna.Study, out: Path, title: str) -> list[dict[str, object]]:
    trials = study.get_trials(deepcopy=False)
    rows = write_results(trials, out / "results.csv")
    print(f"\ntop trials (all in {out / 'results.csv'}):\n{top_table(rows)}")
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    if complete:
        best = max(complete, key=lambda t: t.value or 0.0)
        values = ", ".join(f"{k} {v:.3g}" if isinstance(v, float) else f"{k} {v}" for k, v in best.params.items())
        print(
            f"best trial {best.number}: val acc {best.value:.4f}, "
            f"test acc {best.user_attrs.get('test_acc', float('nan')):.4f} ({values})"
        )
    plot = plot_lr_reg(trials, out / "lr_reg.png", title)
    if plot is not None:
        print(f"wrote {plot}")
    elif importlib.util.find_spec("matplotlib") is None:
        from funcnn.plot import INSTALL_HINT

        print(INSTALL_HINT)
    return rows


def sweep(args: argparse.Namespace, train: Options) -> list[dict[str, object]]:
    """Run ``funcnn sweep`` with parsed ``args`` (``train``: the train subcommand's parser, which defines the
    searchable options); the results table's rows, best first. ValueError on bad options, before anything is written."""
    space = _check(args, train)
    optuna.logging.set_verbosity(optuna.logging.ERROR)  # the progress lines say what Optuna's would
    out = Path(args.out or f"sweeps/{args.dataset}")
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} is a file, expected a folder")
    args.storage_shown = args.storage or str(out / "study.journal")
    storage = (
        open_storage(args.storage, args.heartbeat) if args.storage else None
    )  # a URL is tried before --out is made
    created = not out.exists()
    try:
        out.mkdir(parents=True, exist_ok=True)
        storage = storage or open_storage(str(out / "study.journal"), args.heartbeat)
        folder = _study_folder(out, args, storage)
        study, what = _open_study(args, storage, _config(args, space))
        _claim(folder, args, study)
    except BaseException:
        if storage is not None:
            close_storage(storage)
        if created:
            shutil.rmtree(out, ignore_errors=True)
        raise
    processes: list[subprocess.Popen[bytes]] = []
    ctrl_c = CtrlC()
    try:
        with ctrl_c.once():
            try:
                settings = _header(args, space, what, folder)
                _start_workers(settings, args.workers, processes, ctrl_c)
                _watch(study, processes, args.trials)
                rows = _report(study, folder, f"{args.dataset}: validation accuracy of {args.trials} trials")
                undone = args.trials - len(finished_slots(study.get_trials(deepcopy=False)))
            except KeyboardInterrupt:  # a second Ctrl-C while the workers stop escalates the stop (see stop_workers)
                stop_workers(processes, ctrl_c)
                raise KeyboardInterrupt("interrupted; rerun the same command to continue the sweep") from None
            except (optuna.exceptions.StorageInternalError, SQLAlchemyError) as error:  # a database lost mid-sweep
                stop_workers(processes, ctrl_c)
                raise SweepUnfinished(
                    f"lost the storage {args.storage_shown} ({storage_reason(error)}); rerun the same command "
                    "once it is back"
                ) from None
    finally:
        close_storage(storage)
    lost = [w.returncode for w in processes if w.returncode]
    if lost or undone:
        statuses = ", ".join(f"{c} (lost the storage)" if c == LOST_STORAGE else str(c) for c in lost)
        ended = f"{len(lost)} of {args.workers} workers ended abnormally (exit status {statuses}); "
        raise SweepUnfinished(
            f"{ended if lost else ''}{undone} of {args.trials} trials not done; rerun the same command to run them"
        )
    return rows


def _header(args: argparse.Namespace, space: tuple[Range, ...], what: str, folder: Path) -> dict[str, Any]:
    """Print the sweep's first line; the workers' settings."""
    print(
        f"funcnn sweep: study {args.study!r} in {args.storage_shown} {what}; "
        f"{args.trials} trials of {args.epochs} epochs "
        f"on {args.dataset}, {args.sampler} sampler, {args.pruner} pruner, {args.workers} workers here; searching "
        + ", ".join(f"{r.option} {r.kind} {list(r.bounds())}" for r in space),
        flush=True,
    )
    return {
        "args": {k: v for k, v in vars(args).items() if k not in ("run",)},
        "space": [asdict(r) for r in space],
        "out": str(folder),
        "storage": args.storage_shown,
    }


class SweepUnfinished(RuntimeError):
    """A sweep that ended with trials left undone (their workers were lost): a rerun runs them."""


def _study_folder(out: Path, args: argparse.Namespace, storage: optuna.storages.BaseStorage) -> Path:
    """``out/<study>``, where the study's trials, results.csv and lr_reg.png go, after checking that it holds
    no other study's files (another storage's study of that name, or one whose journal was emptied)."""
    if not args.study or "/" in args.study or args.study.startswith("."):
        raise ValueError(f"--study {args.study!r}: a study's name must be a file name (it names its folder in --out)")
    folder = out / str(args.study)
    mark = folder / "study.json"
    if not mark.exists():
        if (folder / "trials").exists():
            raise ValueError(f"--out {out}: {folder} holds trials of an unknown study; choose another --out or --study")
        return folder
    try:
        uid = json.loads(mark.read_text())["uid"]
    except (ValueError, KeyError, TypeError):
        raise ValueError(f"--out {out}: {mark} is damaged; choose another --out or --study") from None
    names = optuna.get_all_study_names(storage)
    theirs = (
        optuna.load_study(study_name=args.study, storage=storage).user_attrs.get("uid") if args.study in names else None
    )
    if theirs != uid:
        raise ValueError(
            f"--out {out}: {folder} holds the files of another study {args.study!r} than the one in "
            f"{args.storage_shown} (its journal emptied, or another storage); choose another --out or --study"
        )
    return folder


def _claim(folder: Path, args: argparse.Namespace, study: optuna.Study) -> None:
    """Record in ``folder`` which study its files belong to."""
    mark = folder / "study.json"
    if not mark.exists():
        folder.mkdir(exist_ok=True)
        record = {"study": args.study, "storage": args.storage_shown, "uid": study.user_attrs.get("uid")}
        write_atomically(mark, json.dumps(record))


def run(trials: int, out: str | Path, **options: Any) -> list[dict[str, object]]:
    """Python entry of ``funcnn sweep``: ``trials`` trials into ``out``; ``options`` are the command's by their
    Python names (``workers=2, space=["lr=log:1e-4:1e-2"], epochs=5, storage=URL, study=NAME``). Returns the
    rows of results.csv (dicts), best validation accuracy first."""
    if isinstance(trials, bool) or not isinstance(trials, int) or trials < 1:
        raise ValueError(f"sweep: trials must be an int >= 1, got {trials!r}")
    parser = Parser(prog="funcnn sweep")
    add_sweep_options(parser)
    args = parser.parse_args(["--trials", str(trials), "--out", str(out)])
    unknown = sorted(set(options) - set(vars(args)) - {"command", "run"})
    if unknown:
        raise ValueError(f"sweep: unknown options {', '.join(unknown)}; see funcnn sweep --help")
    vars(args).update(options)
    return sweep(args, train_options())


def _work(settings: dict[str, Any]) -> None:
    """A worker process: run queued trials until none is left and none runs elsewhere (a running trial may
    be a killed worker's, to be retried here once its heartbeat is stale)."""
    ctrl_c = WorkerCtrlC()
    ctrl_c.install()
    optuna.logging.set_verbosity(optuna.logging.ERROR)  # a failed trial: our one line, not Optuna's traceback
    threading.excepthook = _quiet_if_storage_lost
    args = argparse.Namespace(**settings["args"])
    storage = open_storage(settings["storage"], args.heartbeat)
    study = optuna.load_study(
        study_name=args.study, storage=storage, sampler=_sampler(args.sampler), pruner=_pruner(args.pruner)
    )
    objective = make_objective(
        args, [Range(**{**r, "choices": tuple(r["choices"])}) for r in settings["space"]], Path(settings["out"])
    )
    while True:
        ctrl_c.check()
        try:
            study.optimize(ctrl_c.interruptible(objective), catch=(TrialError, Duplicate))
        except NoTrialLeft:
            pass
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            optuna.storages.fail_stale_trials(study)
        states = {t.state for t in study.get_trials(deepcopy=False, states=(TrialState.WAITING, TrialState.RUNNING))}
        if TrialState.WAITING in states or _queue_next(study):
            continue
        if not states:
            return
        time.sleep(1.0)  # soon after the last trial ends, or its heartbeat goes stale, this worker sees it


def _quiet_if_storage_lost(hook: threading.ExceptHookArgs) -> None:
    """A heartbeat thread that lost the storage ends quietly: the worker then exits with LOST_STORAGE."""
    if hook.exc_value is None or lost_storage(hook.exc_value) is None:
        threading.__excepthook__(hook)


if __name__ == "__main__":
    try:
        _work(json.loads(sys.argv[1]))
    except KeyboardInterrupt:
        raise SystemExit(130) from None
    except Exception as error:  # a storage lost: the sweep command says it in one line
        if lost_storage(error) is None:
            raise
        raise SystemExit(LOST_STORAGE) from None
