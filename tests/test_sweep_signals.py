"""funcnn sweep ends in one line when it is stopped from outside, with real processes: Ctrl-C twice (sent as
a terminal sends it, to the command and its workers at once) and a PostgreSQL server lost mid-sweep. Each
signal waits for an event the processes show (a line printed, a trial's state in the storage)."""

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

optuna = pytest.importorskip("optuna", reason="the sweep extra is not installed: pip install -e '.[sweep]'")

from postgres_server import ServerMissing, postgres_server, stop_server
from subprocesses import default_sigint

from funcnn.app.sweep_storage import close_storage, open_storage

TrialState = optuna.trial.TrialState
TINY = ["--filters", "2", "--hidden", "8", "--batch-size", "400", "--heartbeat", "1", "--pruner", "none"]
LONG = ["--workers", "2", "--epochs", "400"]  # trials that outlast the test's signals
DEADLINE = 1200  # seconds, for a hang only: minutes on a loaded machine
INTERRUPTED = "funcnn sweep: interrupted; rerun the same command to continue the sweep\n"


def _terminal_sweep(out: Path, *options: str) -> subprocess.Popen[str]:
    """``funcnn sweep`` in a process group of its own, as a terminal's foreground job: its workers join it."""
    command = [sys.executable, "-m", "funcnn", "sweep", "--trials", "3", "--out", str(out), *TINY, *options]
    return subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=default_sigint,
        start_new_session=True,
    )


def _ctrl_c(command: subprocess.Popen[str]) -> None:
    """What a terminal's Ctrl-C does: SIGINT to every process of the foreground group."""
    os.killpg(command.pid, signal.SIGINT)


@contextlib.contextmanager
def _study(where: str):
    storage = open_storage(where, 1)
    try:
        yield optuna.load_study(study_name="sweep", storage=storage)
    finally:
        close_storage(storage)


def _wait_for(test, what: str) -> None:
    deadline = time.monotonic() + DEADLINE
    while not test():
        assert time.monotonic() < deadline, f"never saw {what}"
        time.sleep(0.05)


def _until_running(command: subprocess.Popen[str]) -> None:
    """Read the progress lines until one shows a trial running."""
    for line in command.stdout:
        if "running" in line and "; 0 running" not in line:
            return
    raise AssertionError("the sweep ended before a trial ran")


def _ended_in_one_line(command: subprocess.Popen[str], line: str, status: int) -> None:
    _, err = command.communicate(timeout=DEADLINE)
    assert (err, command.returncode) == (line, status)
    # and no worker is left behind: the group is empty (killpg finds no process)
    with pytest.raises(ProcessLookupError):
        os.killpg(command.pid, 0)


def test_ctrl_c_twice_at_once_while_trials_run_ends_in_one_line(tmp_path):
    command = _terminal_sweep(tmp_path / "sweep", *LONG)
    _until_running(command)
    _ctrl_c(command)
    _ctrl_c(command)
    _ended_in_one_line(command, INTERRUPTED, 130)


def test_ctrl_c_again_while_the_workers_stop_ends_in_one_line(tmp_path):
    """The second Ctrl-C once a worker has failed its trial as interrupted (the first reached it): the
    command is then stopping its workers, or reporting."""
    out = tmp_path / "sweep"
    command = _terminal_sweep(out, *LONG)
    _until_running(command)
    _ctrl_c(command)
    with _study(str(out / "study.journal")) as study:
        _wait_for(lambda: study.get_trials(deepcopy=False, states=(TrialState.FAIL,)), "a trial failed")
    _ctrl_c(command)
    _ended_in_one_line(command, INTERRUPTED, 130)


def test_ctrl_c_twice_while_the_workers_start_ends_in_one_line(tmp_path):
    """Ctrl-C twice right after the header: the workers are still importing Optuna and Numba (a Ctrl-C then
    gave each a KeyboardInterrupt traceback)."""
    command = _terminal_sweep(tmp_path / "sweep", *LONG)
    assert "created" in command.stdout.readline()
    _ctrl_c(command)
    _ctrl_c(command)
    _ended_in_one_line(command, INTERRUPTED, 130)


def test_a_postgresql_server_lost_mid_sweep_is_one_line_naming_it(tmp_path):
    try:
        with postgres_server() as url:
            command = _terminal_sweep(tmp_path / "sweep", *LONG, "--storage", url)
            _until_running(command)
            stop_server(url)
            _, err = command.communicate(timeout=DEADLINE)
    except ServerMissing as missing:
        pytest.skip(str(missing))
    assert command.returncode == 1 and err.count("\n") == 1, err
    assert err.startswith(f"funcnn sweep: lost the storage {url} (") and "rerun the same command" in err


def test_each_failed_trial_is_one_line_in_a_real_sweep(tmp_path):
    """Workers print a failed trial's one line, not Optuna's warning with a traceback."""
    out = tmp_path / "sweep"
    first = _terminal_sweep(out, "--workers", "1", "--epochs", "1")
    _, err = first.communicate(timeout=DEADLINE)
    assert first.returncode == 0, err
    for number in range(3, 12):  # files where the next trials' folders go: each such trial fails at once
        (out / "sweep" / "trials" / str(number)).write_text("not a folder")
    command = [sys.executable, "-m", "funcnn", "sweep", "--trials", "5", "--out", str(out), *TINY]
    again = subprocess.run(
        [*command, "--workers", "1", "--epochs", "1"], capture_output=True, text=True, timeout=DEADLINE
    )
    lines = again.stderr.splitlines()
    assert again.returncode == 0 and len(lines) == 2, again.stderr  # failed by their own error: done, not retried
    assert all(
        line.startswith(("trial 3 failed: FileExistsError", "trial 4 failed: FileExistsError")) for line in lines
    )
