"""funcnn sweep with real processes, waiting only for what they show: a lock left by a dead process is
broken whatever the path, a stuck worker is terminated, a huge --trials starts at once, and two commands
growing --trials at the same instant run each slot once."""

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

optuna = pytest.importorskip("optuna", reason="the sweep extra is not installed: pip install -e '.[sweep]'")

from subprocesses import default_sigint

from funcnn.app.sweep_report import finished_slots, slot_trials
from funcnn.app.sweep_signals import stop_workers
from funcnn.app.sweep_storage import close_storage, open_storage

TrialState = optuna.trial.TrialState
TINY = ["--filters", "2", "--hidden", "8", "--batch-size", "400", "--heartbeat", "1", "--pruner", "none"]
DEADLINE = 1200  # seconds, for a hang only: minutes on a loaded machine


def _sweep(trials, out, *options, cwd=None):
    command = [sys.executable, "-m", "funcnn", "sweep", "--trials", str(trials), "--out", str(out), *TINY, *options]
    return subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=cwd, preexec_fn=default_sigint
    )


def _trials(journal: Path):
    storage = open_storage(str(journal), 1)
    try:
        return optuna.load_study(study_name="sweep", storage=storage).trials
    finally:
        close_storage(storage)


def _dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_a_lock_left_by_a_dead_process_is_broken_with_a_relative_out(tmp_path):
    (tmp_path / "sweep").mkdir()
    os.symlink(f"{socket.gethostname()}:{_dead_pid()}", tmp_path / "sweep" / "study.journal.lock")
    command = _sweep(1, "sweep", "--workers", "1", cwd=tmp_path)  # relative, as in docs/sweeps.md
    out, err = command.communicate(timeout=DEADLINE)
    assert command.returncode == 0, err
    assert "trials 1/1 done (1 complete" in out and not (tmp_path / "sweep" / "study.journal.lock").exists()


def test_a_worker_that_ignores_ctrl_c_is_terminated():
    stuck = (
        "import signal, time; signal.signal(signal.SIGINT, signal.SIG_IGN); print('ready', flush=True); time.sleep(1e6)"
    )
    worker = subprocess.Popen([sys.executable, "-c", stuck], stdout=subprocess.PIPE, text=True)
    assert worker.stdout.readline() == "ready\n"
    stop_workers([worker], None, grace=1.0)
    assert worker.returncode == -signal.SIGTERM
    worker.stdout.close()


def test_a_huge_number_of_trials_starts_at_once(tmp_path):
    out = tmp_path / "sweep"
    command = _sweep(1_000_000, out, "--workers", "1", "--epochs", "400")
    assert "created; 1000000 trials" in command.stdout.readline()
    deadline = time.monotonic() + DEADLINE
    while not [t for t in _trials(out / "study.journal") if t.state == TrialState.RUNNING]:
        assert time.monotonic() < deadline, "no trial started"
        time.sleep(0.1)
    command.send_signal(signal.SIGINT)
    _, err = command.communicate(timeout=DEADLINE)
    assert command.returncode == 130, err
    # slots are queued as workers take them, not a million first; how many a worker took before the interrupt
    # (copies of a slot fail at once and are replaced) depends on the load, so the bound is far from both
    assert len(_trials(out / "study.journal")) < 100


def test_two_commands_growing_trials_at_the_same_instant_run_each_slot_once(tmp_path):
    out = tmp_path / "sweep"
    first = _sweep(2, out, "--workers", "1")
    _, err = first.communicate(timeout=DEADLINE)
    assert first.returncode == 0, err
    both = [_sweep(8, out, "--workers", "2") for _ in range(2)]
    for command in both:
        _, err = command.communicate(timeout=DEADLINE)
        assert command.returncode == 0, err
    trials = _trials(out / "study.journal")
    ran = slot_trials(trials)
    assert sorted(t.user_attrs["slot"] for t in ran) == list(range(8)) and set(finished_slots(trials)) == set(range(8))
    assert {t.state for t in ran} == {TrialState.COMPLETE}
    copies = [t for t in trials if t not in ran]
    assert all("worker" not in t.user_attrs for t in copies)  # a copy of a slot never trained
    assert sorted(int(p.name) for p in (out / "sweep" / "trials").iterdir()) == sorted(t.number for t in ran)


def test_two_reruns_after_ctrl_c_at_the_same_instant_run_the_interrupted_slot_once(tmp_path):
    """Both reruns queue the interrupted slot again at once: one copy runs, the other never trains."""
    out, epochs = tmp_path / "sweep", 40
    command = _sweep(2, out, "--workers", "1", "--epochs", str(epochs))
    assert "created" in command.stdout.readline()
    deadline = time.monotonic() + DEADLINE
    while not [t for t in _trials(out / "study.journal") if t.state == TrialState.RUNNING and t.intermediate_values]:
        assert time.monotonic() < deadline, "no trial was seen running"
        time.sleep(0.05)
    command.send_signal(signal.SIGINT)
    _, err = command.communicate(timeout=DEADLINE)
    assert command.returncode == 130, err
    interrupted = [t for t in _trials(out / "study.journal") if t.state == TrialState.FAIL]
    assert len(interrupted) == 1
    both = [_sweep(2, out, "--workers", "1", "--epochs", str(epochs)) for _ in range(2)]
    for rerun in both:
        _, err = rerun.communicate(timeout=DEADLINE)
        assert rerun.returncode == 0, err
    trials = _trials(out / "study.journal")
    ran = slot_trials(trials)
    assert set(finished_slots(trials)) == {0, 1}
    again = [t for t in ran if t.user_attrs["slot"] == interrupted[0].user_attrs["slot"] and t.state != TrialState.FAIL]
    assert len(again) == 1 and again[0].params == interrupted[0].params
    assert all("worker" not in t.user_attrs for t in trials if t not in ran)  # a copy of a slot never trained
