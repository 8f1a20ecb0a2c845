"""How a sweep worker takes Ctrl-C, handler by handler: only inside a trial's training, not while Numba
compiles (then a moment later, by SIGALRM), once only; and a command's second Ctrl-C only counts."""

import signal
import sys

import pytest

pytest.importorskip("optuna", reason="the sweep extra is not installed: pip install -e '.[sweep]'")

from funcnn.app.sweep_signals import CtrlC, WorkerCtrlC, lost_storage


def _frame_of(module: str):
    """A frame whose code belongs to ``module`` (as Numba's compiler frames do)."""
    scope = {"__name__": module, "sys": sys}
    exec("frame = sys._getframe()", scope)
    return scope["frame"]


def test_a_worker_defers_ctrl_c_while_numba_compiles(monkeypatch):
    timers = []
    monkeypatch.setattr(signal, "setitimer", lambda which, seconds: timers.append((which, seconds)))
    ctrl_c = WorkerCtrlC()
    ctrl_c.armed = True
    ctrl_c._handle(signal.SIGINT, _frame_of("numba.core.dispatcher"))  # not raised in a compiler callback
    assert ctrl_c.pending and timers == [(signal.ITIMER_REAL, 0.05)]
    with pytest.raises(KeyboardInterrupt):  # the alarm, once out of the compiler
        ctrl_c._handle(signal.SIGALRM, sys._getframe())
    ctrl_c._handle(signal.SIGINT, sys._getframe())  # the terminal's second and the command's: ignored


def test_a_worker_keeps_ctrl_c_outside_a_trial_for_the_next_check():
    ctrl_c = WorkerCtrlC()
    ctrl_c._handle(signal.SIGINT, sys._getframe())  # in Optuna's bookkeeping: nothing raised there
    assert ctrl_c.pending
    with pytest.raises(KeyboardInterrupt):
        ctrl_c.check()
    with pytest.raises(KeyboardInterrupt):  # and a trial about to start does not start
        ctrl_c.interruptible(lambda trial: 1.0)(None)
    assert not ctrl_c.armed


def test_the_commands_second_ctrl_c_only_counts():
    ctrl_c = CtrlC()
    with ctrl_c.once():
        with pytest.raises(KeyboardInterrupt):
            ctrl_c._handle(signal.SIGINT, None)
        ctrl_c._handle(signal.SIGINT, None)
    assert ctrl_c.again


def test_a_storage_error_is_found_behind_optunas_teardown_error():
    """Optuna's ``finally`` raises UnboundLocalError while handling the lost database's error (its context)."""
    optuna = pytest.importorskip("optuna")
    try:
        try:
            raise optuna.exceptions.StorageInternalError("An exception is raised during the commit")
        except Exception:
            raise UnboundLocalError("cannot access local variable 'updated_state'")  # noqa: B904 (as Optuna does)
    except UnboundLocalError as teardown:
        assert isinstance(lost_storage(teardown), optuna.exceptions.StorageInternalError)
    assert lost_storage(UnboundLocalError("a bug of its own")) is None
