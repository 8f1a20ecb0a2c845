"""funcnn sweep: wall time of a 16-trial sweep on the digits with 1 and 2 workers (the speedup), and how many
trials a second the journal-file and PostgreSQL storages sustain with many idle workers (objective: nothing).

    python benchmarks/bench_sweep.py                      # both parts, about 3 minutes on 2 cores
    python benchmarks/bench_sweep.py --part storage --idle-workers 4 16

The PostgreSQL rows need the server binaries (apt-get install postgresql); without them they are skipped.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import optuna

optuna.logging.set_verbosity(optuna.logging.WARNING)

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from postgres_server import ServerMissing, postgres_server

from funcnn.app.sweep import THREAD_VARIABLES
from funcnn.app.sweep_report import SLOT
from funcnn.app.sweep_storage import NoTrialLeft, close_storage, open_storage


def sweep_wall_time(workers: int, trials: int, epochs: int, blas_threads: int | None = None) -> float:
    """Seconds of ``funcnn sweep`` (the whole command) with ``workers`` local worker processes (BLAS threads:
    the cores divided between them, or ``blas_threads``)."""
    env = dict(os.environ)
    for name in THREAD_VARIABLES:
        env.pop(name, None)
        if blas_threads:
            env[name] = str(blas_threads)
    with tempfile.TemporaryDirectory() as folder:
        command = [
            sys.executable,
            "-m",
            "funcnn",
            "sweep",
            "--trials",
            str(trials),
            "--workers",
            str(workers),
            "--epochs",
            str(epochs),
            "--pruner",
            "none",
            "--out",
            f"{folder}/sweep",
        ]
        started = time.perf_counter()
        subprocess.run(command, check=True, capture_output=True, env=env)
        return time.perf_counter() - started


def _idle_worker(where: str, study_name: str) -> None:
    """Run queued trials whose objective only draws lr and reg, until none is left."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = open_storage(where, 10)
    study = optuna.load_study(study_name=study_name, storage=storage, sampler=optuna.samplers.RandomSampler())
    try:
        study.optimize(
            lambda t: t.suggest_float("lr", 1e-4, 1e-2, log=True) * t.suggest_float("reg", 1e-5, 1e-1, log=True)
        )
    except NoTrialLeft:
        pass
    close_storage(storage)


def storage_rate(where: str, workers: int, trials: int) -> float:
    """Trials a second that ``workers`` idle processes finish on the storage at ``where``, from the first
    trial's start to the last one's end (process start-up excluded)."""
    name = f"bench-{workers}-{time.monotonic_ns()}"
    storage = open_storage(where, 10)
    study = optuna.create_study(storage=storage, study_name=name, direction="maximize")
    for slot in range(trials):
        study.enqueue_trial({}, user_attrs={SLOT: slot})
    processes = [
        multiprocessing.get_context("spawn").Process(target=_idle_worker, args=(where, name)) for _ in range(workers)
    ]
    for p in processes:
        p.start()
    for p in processes:
        p.join()
    done = [t for t in study.get_trials(deepcopy=False) if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(done) == trials, f"{len(done)} of {trials} trials done"
    first = min(t.datetime_start for t in done if t.datetime_start)
    last = max(t.datetime_complete for t in done if t.datetime_complete)
    close_storage(storage)
    return trials / (last - first).total_seconds()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--part", choices=["all", "speedup", "storage"], default="all")
    parser.add_argument("--epochs", type=int, default=15, help="epochs per trial of the digits sweep (default: 15)")
    parser.add_argument("--idle-workers", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--storage-trials", type=int, default=300)
    args = parser.parse_args()
    if args.part in ("all", "speedup"):
        two, one, one_thread = (
            sweep_wall_time(2, 16, args.epochs),
            sweep_wall_time(1, 16, args.epochs),
            sweep_wall_time(1, 16, args.epochs, blas_threads=1),
        )
        print(
            f"16-trial sweep on the digits ({args.epochs} epochs each, default network, {os.cpu_count()} cores): "
            f"1 worker {one:.1f} s ({one_thread:.1f} s with 1 BLAS thread), 2 workers {two:.1f} s; "
            f"speedup {one / two:.2f} ({one_thread / two:.2f} over 1 worker on 1 BLAS thread)"
        )
    if args.part in ("all", "storage"):
        with tempfile.TemporaryDirectory() as folder:
            for workers in args.idle_workers:
                rate = storage_rate(f"{folder}/bench-{workers}.journal", workers, args.storage_trials)
                print(f"journal file, {workers:>2} idle workers: {rate:7.1f} trials/s")
        try:
            with postgres_server() as url:
                for workers in args.idle_workers:
                    print(
                        f"PostgreSQL,   {workers:>2} idle workers: "
                        f"{storage_rate(url, workers, args.storage_trials):7.1f} trials/s"
                    )
        except ServerMissing as missing:
            print(f"PostgreSQL: skipped ({missing})")


if __name__ == "__main__":
    main()
