"""Ctrl-C in a sweep, as a terminal sends it (to the command and its workers at once, once or twice): the
command stops its workers and says so in one line; a worker stops only inside its training, never inside
Optuna's bookkeeping (whose teardown, interrupted, adds an ``UnboundLocalError`` to the traceback)."""

from __future__ import annotations

import contextlib
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from types import FrameType

import optuna
from sqlalchemy.exc import SQLAlchemyError

LOST_STORAGE = 3  # a worker's exit status when its storage went away (the command says it in one line)


class CtrlC:
    """SIGINT while ``once()`` is active: the first raises KeyboardInterrupt (at the end of a ``starting()``
    block if it comes during one), later ones only set ``again``, so that a second Ctrl-C can escalate a
    stop already under way instead of breaking it."""

    def __init__(self) -> None:
        self.count = 0
        self._starting = False

    @property
    def again(self) -> bool:
        return self.count > 1

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.count += 1
        if self.count == 1 and not self._starting:
            raise KeyboardInterrupt

    @contextlib.contextmanager
    def once(self) -> Iterator[CtrlC]:
        if threading.current_thread() is not threading.main_thread():  # only the main thread gets signals
            yield self
            return
        previous = signal.signal(signal.SIGINT, self._handle)
        try:
            yield self
        finally:
            signal.signal(signal.SIGINT, previous)

    @contextlib.contextmanager
    def starting(self) -> Iterator[None]:
        """A block that starts processes and records them: a Ctrl-C meanwhile is raised once it has ended,
        so that no started process goes unrecorded. The processes inherit SIGINT blocked and unblock it in
        :meth:`WorkerCtrlC.install`, once they can stop cleanly (a Ctrl-C while one imports waits for that
        moment instead of printing a traceback)."""
        blocked = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
        self._starting = True
        try:
            yield
        finally:
            self._starting = False
            signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
        if self.count:
            raise KeyboardInterrupt


class WorkerCtrlC:
    """A worker's Ctrl-C: it raises KeyboardInterrupt only inside an ``interruptible`` objective (Optuna
    then fails the trial as interrupted), and not while Numba compiles (a KeyboardInterrupt raised in its
    ctypes callback is printed and lost): then a moment later, by SIGALRM. Elsewhere it is kept for the
    next ``interruptible`` objective or ``check()``. Once is enough: later ones (the terminal's and the
    command's) are ignored."""

    def __init__(self) -> None:
        self.pending = False
        self.armed = False

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if signum == signal.SIGINT:
            if self.pending:
                return
            self.pending = True
        if not self.armed:
            return
        if _compiling(frame):
            signal.setitimer(signal.ITIMER_REAL, 0.05)
            return
        raise KeyboardInterrupt

    def install(self) -> None:
        signal.signal(signal.SIGALRM, self._handle)
        signal.signal(signal.SIGINT, self._handle)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})  # a Ctrl-C held back arrives here

    def check(self) -> None:
        if self.pending:
            raise KeyboardInterrupt

    def interruptible(self, objective: Callable[[optuna.Trial], float]) -> Callable[[optuna.Trial], float]:
        """``objective`` run with Ctrl-C raising inside it."""

        def run(trial: optuna.Trial) -> float:
            self.armed = True
            try:
                self.check()
                return objective(trial)
            finally:
                self.armed = False

        return run


def _compiling(frame: FrameType | None) -> bool:
    """Whether Numba or llvmlite code is on the stack (a kernel compiling or loading from the cache)."""
    while frame is not None:
        if str(frame.f_globals.get("__name__", "")).startswith(("numba", "llvmlite")):
            return True
        frame = frame.f_back
    return False


def lost_storage(error: BaseException) -> BaseException | None:
    """The storage error behind ``error`` (itself, its cause or its context: Optuna's teardown raises its
    own error while handling a lost database's), else None."""
    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, (optuna.exceptions.StorageInternalError, SQLAlchemyError)):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def storage_reason(error: BaseException) -> str:
    """The first line of the deepest cause of a storage error (the driver's ``connection refused``, not
    Optuna's generic ``An exception is raised during the commit``)."""
    deepest = error
    while deepest.__cause__ is not None or getattr(deepest, "orig", None) is not None:
        deepest = getattr(deepest, "orig", None) or deepest.__cause__  # type: ignore[assignment]
    text = str(deepest).strip()
    return text.splitlines()[0] if text else type(deepest).__name__


def stop_workers(workers: list[subprocess.Popen[bytes]], ctrl_c: CtrlC | None, grace: float = 30.0) -> None:
    """Interrupt the workers (each fails its trial as interrupted, which a rerun queues again); one still
    there after ``grace`` seconds, or after another Ctrl-C (``ctrl_c.again``), is terminated, then killed."""
    for w in workers:
        if w.poll() is None:
            w.send_signal(signal.SIGINT)
    for ask in (None, signal.SIGTERM, signal.SIGKILL):
        if ask is not None:
            for w in workers:
                if w.poll() is None:
                    w.send_signal(ask)
        if _wait(workers, grace, ctrl_c, ask is None):
            return


def _wait(workers: list[subprocess.Popen[bytes]], grace: float, ctrl_c: CtrlC | None, first: bool) -> bool:
    """Wait up to ``grace`` seconds for the workers to exit; whether they did. A second Ctrl-C ends the
    first wait at once (the poll interval is how soon it is noticed)."""
    deadline = time.monotonic() + grace
    while any(w.poll() is None for w in workers):
        if time.monotonic() > deadline or (first and ctrl_c is not None and ctrl_c.again):
            return False
        time.sleep(0.05)
    return True
