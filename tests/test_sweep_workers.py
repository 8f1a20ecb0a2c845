"""funcnn sweep with real worker processes: two on one journal file, and two commands joining one study
(journal file or a PostgreSQL server started here) while one worker is killed with SIGKILL mid-trial."""

import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from pathlib import Path

import pytest

optuna = pytest.importorskip("optuna", reason="the sweep extra is not installed: pip install -e '.[sweep]'")

from postgres_server import ServerMissing, postgres_server
from subprocesses import default_sigint

from funcnn.app.sweep_report import finished_slots, slot_trials
from funcnn.app.sweep_storage import close_storage, open_storage

TrialState = optuna.trial.TrialState
TINY = ["--filters", "2", "--hidden", "8", "--batch-size", "400", "--heartbeat", "1", "--pruner", "none"]


@pytest.fixture(scope="module")
def postgres_url():
    """A PostgreSQL server of its own, in a temporary folder on a free loopback port, stopped after."""
    try:
        with postgres_server() as url:
            yield url
    except ServerMissing as missing:
        pytest.skip(str(missing))


@contextlib.contextmanager
def _study(name: str, where: str):
    storage = open_storage(where, 1)
    try:
        yield optuna.load_study(study_name=name, storage=storage)
    finally:
        close_storage(storage)


def _sweep(trials: int, out: Path, *options: str) -> subprocess.Popen[str]:
    command = [sys.executable, "-m", "funcnn", "sweep", "--trials", str(trials), "--out", str(out), *TINY, *options]
    return subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=default_sigint
    )


def _finish(process: subprocess.Popen[str], status: int = 0) -> tuple[str, str]:
    out, err = process.communicate(timeout=1200)  # a deadline for a hang only: minutes on a loaded machine
    assert process.returncode == status, err
    return out, err


def _each_slot_once(trials: list, n: int) -> None:
    """Slots 0..n-1 each ended by exactly one trial, and only retries (of a lost worker's trial) beside them."""
    ended = [t for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    assert sorted(t.user_attrs["slot"] for t in ended) == list(range(n))
    assert set(finished_slots(trials)) == set(range(n))
    assert not [t for t in trials if t.state in (TrialState.WAITING, TrialState.RUNNING)]


def test_two_workers_on_one_journal_run_exactly_n_trials(tmp_path):
    out = tmp_path / "sweep"
    stdout, _ = _finish(_sweep(6, out, "--workers", "2", "--epochs", "40"))  # trials long enough for both
    with _study("sweep", str(out / "study.journal")) as study:
        every = study.trials
    trials = slot_trials(every)  # without the copies of a slot both workers queued at once, which never ran
    assert all("worker" not in t.user_attrs for t in every if t not in trials)
    assert len(trials) == 6 and {t.state for t in trials} == {TrialState.COMPLETE}
    _each_slot_once(trials, 6)
    # two workers were started; how many trials each got depends on the load (one may start after the other ended)
    assert "2 workers here" in stdout and 1 <= len({t.user_attrs["worker"] for t in trials}) <= 2
    cores = len(os.sched_getaffinity(0))
    if "OPENBLAS_NUM_THREADS" not in os.environ:  # the cores' BLAS threads divided between the workers
        assert {t.user_attrs["blas_threads"] for t in trials} == {str(max(1, cores // 2))}
    folder = out / "sweep"  # the study's folder
    numbers = sorted(t.number for t in trials)
    assert sorted(int(p.name) for p in (folder / "trials").iterdir()) == numbers
    assert all(
        (folder / "trials" / str(n) / name).exists() for n in numbers for name in ("checkpoint.npz", "history.json")
    )
    assert "trials 6/6 done (6 complete, 0 pruned, 0 failed; 0 running)" in stdout and "best trial" in stdout
    assert (folder / "results.csv").read_text().count("\n") == 7 and (folder / "lr_reg.png").stat().st_size > 0


def _running_trial(study: optuna.Study, epochs: int, timeout: float = 600) -> optuna.trial.FrozenTrial:
    """A trial in the middle of its training: some epochs reported, enough left to kill it before it ends."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for t in study.get_trials(states=(TrialState.RUNNING,)):
            if 1 <= len(t.intermediate_values) <= epochs // 4:
                return t
        time.sleep(0.02)
    raise AssertionError("no trial was seen running")


@pytest.mark.parametrize("backend", ["journal", "postgresql"])
def test_a_worker_killed_mid_trial_leaves_a_failed_then_retried_trial(tmp_path, request, backend):
    """Two commands join one study through --storage (as two machines do); one's worker is SIGKILLed in the
    middle of a trial. The other fails that trial once its heartbeat is stale, runs it again with the same
    values, and the study ends with each of the N trials done once, readable by a new process."""
    storage = str(tmp_path / "shared.journal") if backend == "journal" else request.getfixturevalue("postgres_url")
    name, epochs = f"kill-{uuid.uuid4().hex[:8]}", 400
    shared = ["--workers", "1", "--storage", storage, "--study", name, "--epochs", str(epochs)]
    first = _sweep(4, tmp_path / "first", *shared)
    assert "created" in first.stdout.readline()  # the header, printed once the study and its trials exist
    second = _sweep(4, tmp_path / "second", *shared)
    with _study(name, storage) as study:
        victim = _running_trial(study, epochs)
    os.kill(int(victim.user_attrs["worker"].rsplit(":", 1)[1]), signal.SIGKILL)  # host:pid of its worker
    outputs = [process.communicate(timeout=1200) for process in (first, second)]  # a deadline for a hang only
    # the command whose worker was killed says so and exits 1; the other ran the rest
    assert sorted(process.returncode for process in (first, second)) == [0, 1]
    with _study(name, storage) as study:
        trials = slot_trials(study.trials)  # a copy of a slot queued twice never runs
    failed = [t for t in trials if t.state == TrialState.FAIL]
    assert [t.number for t in failed] == [victim.number] and "error" not in failed[0].user_attrs
    retry = [t for t in trials if t.system_attrs.get("failed_trial") == victim.number]
    assert len(retry) == 1 and retry[0].state == TrialState.COMPLETE and retry[0].params == victim.params
    assert (
        retry[0].user_attrs["slot"] == victim.user_attrs["slot"]
        and retry[0].user_attrs["worker"] != victim.user_attrs["worker"]
    )
    assert len(trials) == 5
    _each_slot_once(trials, 4)
    assert Counter("ended abnormally (exit status -9)" in err for _, err in outputs)[True] == 1


def test_ctrl_c_stops_the_workers_and_a_rerun_runs_the_interrupted_trial_again(tmp_path):
    out, epochs = tmp_path / "sweep", 400
    command = _sweep(3, out, "--workers", "1", "--epochs", str(epochs))
    assert "created" in command.stdout.readline()
    with _study("sweep", str(out / "study.journal")) as study:
        victim = _running_trial(study, epochs)
    command.send_signal(signal.SIGINT)  # to the command only: it passes the interrupt on to its workers
    _, err = command.communicate(timeout=600)
    assert command.returncode == 130 and err.endswith(
        "funcnn sweep: interrupted; rerun the same command to continue the sweep\n"
    )
    stdout, _ = _finish(_sweep(3, out, "--workers", "1", "--epochs", str(epochs)))
    assert "1 interrupted ones queued again" in stdout
    with _study("sweep", str(out / "study.journal")) as study:
        trials = slot_trials(study.trials)  # a copy of a slot queued twice never runs
    interrupted = [t for t in trials if t.state == TrialState.FAIL]
    assert [t.number for t in interrupted] == [victim.number] and "error" not in interrupted[0].user_attrs
    again = [t for t in trials if t.user_attrs["slot"] == victim.user_attrs["slot"] and t.state == TrialState.COMPLETE]
    assert len(again) == 1 and again[0].params == victim.params
    _each_slot_once(trials, 3)
