"""Where a sweep's study lives: an Optuna journal file (default) or a database, both with a heartbeat (a
killed worker's trial is failed and retried) and a fixed number of trials (workers run the queued trials
and never start one of their own, so N trials are run exactly once however many workers share them)."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time
import uuid
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna
from optuna.storages import BaseStorage, JournalStorage, RDBStorage, RetryHeartbeatStaleTrialCallback
from optuna.storages._heartbeat import BaseHeartbeat
from optuna.storages.journal import JournalFileBackend, JournalFileSymlinkLock
from optuna.storages.journal._storage import JournalOperation, JournalStorageReplayResult
from optuna.trial import FrozenTrial, TrialState
from sqlalchemy.exc import SQLAlchemyError
from typing_extensions import override

StaleCallback = Callable[[optuna.Study, FrozenTrial], None]


class NoTrialLeft(Exception):
    """A worker asked for a new trial while none is queued: the sweep's trials are all taken."""


def _queued_only(template_trial: FrozenTrial | None) -> None:
    if template_trial is None:  # Optuna's ask() when no trial waits; enqueue_trial and retries give a template
        raise NoTrialLeft


class QueuedRDBStorage(RDBStorage):
    """Optuna's RDBStorage (heartbeat included) that creates trials only from a template (queued or retried)."""

    @override
    def _create_new_trial(self, study_id: int, template_trial: FrozenTrial | None = None) -> FrozenTrial:
        # Optuna's cache in front of an RDBStorage calls this one, not create_new_trial.
        _queued_only(template_trial)
        return super()._create_new_trial(study_id, template_trial)


def _dead(holder: str) -> bool:
    """Whether the lock holder ``host:pid`` is a process of this host that no longer runs."""
    host, _, pid = holder.rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, another user's
        pass
    return False


class HolderLock(JournalFileSymlinkLock):
    """The journal's lock, a symbolic link naming its holder (``host:pid``), whatever the journal's path: a
    lock whose holder on this host is dead is broken at once, any other after ``grace_period`` seconds
    unchanged (a holder killed on another machine)."""

    @override
    def acquire(self) -> bool:
        me, seen, since, pause = f"{socket.gethostname()}:{os.getpid()}", None, time.monotonic(), 0.001
        while True:
            try:
                os.symlink(me, self._lock_file)
                return True
            except FileExistsError:
                pass
            try:
                holder = os.readlink(self._lock_file)
                held = (holder, os.lstat(self._lock_file).st_mtime_ns)
            except OSError:  # released meanwhile
                continue
            if held != seen:
                seen, since = held, time.monotonic()
            if _dead(holder) or time.monotonic() - since > (self.grace_period or 30):
                try:
                    self.release()
                except RuntimeError:  # another process broke it first
                    pass
                continue
            time.sleep(pause)
            pause = min(2 * pause, 0.1)

    @override
    def release(self) -> None:
        """Remove the lock (renamed first, so that two releasers cannot both succeed). Optuna's own release
        tidies up after an interruption by unlinking the renamed file even when the rename never happened:
        a Ctrl-C at that moment became a trial failed with FileNotFoundError. Here an interruption stays one."""
        renamed = f"{self._lock_file}{uuid.uuid4()}.rename"
        try:
            os.rename(self._lock_file, renamed)
        except OSError:
            raise RuntimeError("did not possess the lock") from None
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(renamed)


def check_journal(path: Path) -> None:
    """Refuse (ValueError naming ``path`` and the line) a journal that Optuna cannot read, before anything
    is appended to it: each record is read and applied as Optuna replays it; the file is left as it is. A
    last line without its newline (a writer killed while appending) is Optuna's to skip."""
    if not path.exists():
        return
    replay = JournalStorageReplayResult("check-")
    with open(path, "rb") as f:
        for number, line in enumerate(f, start=1):
            if not line.endswith(b"\n"):
                return
            reason = _unreadable(line, replay)
            if reason:
                raise ValueError(
                    f"--storage {path}: the journal is damaged at line {number} ({reason[:80]}); it was left as it "
                    "is: repair it, or move it away to start a new study"
                )


def _unreadable(line: bytes, replay: JournalStorageReplayResult) -> str:
    """Why Optuna cannot apply the journal line ``line`` after the lines ``replay`` holds, or ``""``."""
    try:
        record = json.loads(line)
    except ValueError as error:  # JSON or UTF-8
        return str(error)
    if not (isinstance(record, dict) and record.get("op_code") in set(JournalOperation)):
        return "not an Optuna journal record"
    try:
        replay.apply_logs([record])
    except Exception as error:  # a field missing or of the wrong type: Optuna's KeyError, TypeError ...
        return f"a record Optuna cannot apply: {type(error).__name__} {error}"
    return ""


class HeartbeatJournalStorage(JournalStorage, BaseHeartbeat):
    """Optuna's JournalStorage with the heartbeat of RDBStorage: each running trial touches a file in
    ``<journal>.heartbeats/`` every ``interval`` seconds; a running trial whose file (or start, before its
    first beat) is older than ``grace`` seconds is stale. On a shared filesystem the file times come from
    the file server, so the machines' clocks need not agree."""

    def __init__(self, path: Path, interval: int, grace: int, stale_callback: StaleCallback | None) -> None:
        check_journal(path)
        super().__init__(JournalFileBackend(str(path), lock_obj=HolderLock(str(path))))
        self._beats = path.with_name(path.name + ".heartbeats")
        self._beats.mkdir(exist_ok=True)
        self._interval, self._grace, self._stale_callback = interval, grace, stale_callback

    @override
    def create_new_trial(self, study_id: int, template_trial: FrozenTrial | None = None) -> int:
        _queued_only(template_trial)
        return super().create_new_trial(study_id, template_trial)

    @override
    def record_heartbeat(self, trial_id: int) -> None:
        (self._beats / str(trial_id)).touch()

    def _last_beat(self, trial: FrozenTrial) -> float:
        try:
            return (self._beats / str(trial._trial_id)).stat().st_mtime
        except FileNotFoundError:
            return trial.datetime_start.timestamp() if trial.datetime_start else time.time()

    @override
    def _get_stale_trial_ids(self, study_id: int) -> list[int]:
        # Compare with the time the file server puts on a file touched now, not with this machine's clock.
        probe = self._beats / f".now.{os.getpid()}"
        probe.touch()
        now = probe.stat().st_mtime
        probe.unlink()
        running = self.get_all_trials(study_id, deepcopy=False, states=(TrialState.RUNNING,))
        return [t._trial_id for t in running if now - self._last_beat(t) > self._grace]

    @override
    def get_heartbeat_interval(self) -> int:
        return self._interval

    @override
    def get_heartbeat_stale_trial_callback(self) -> StaleCallback | None:
        return self._stale_callback


def close_storage(storage: BaseStorage) -> None:
    """Close a database storage's connections (a journal file holds none open)."""
    if isinstance(storage, RDBStorage):
        storage.remove_session()
        storage.engine.dispose()


def _safe_url(url: str) -> str:
    """``url`` with its password hidden, for messages."""
    scheme, sep, rest = url.partition("://")
    credentials, at, host = rest.rpartition("@")
    if not at or ":" not in credentials:
        return url
    return f"{scheme}{sep}{credentials.split(':', 1)[0]}:***@{host}"


def _driver_url(url: str) -> str:
    """A PostgreSQL URL without a driver gets psycopg (3), the driver the ``sweep`` extra installs."""
    for plain in ("postgresql://", "postgres://"):
        if url.startswith(plain):
            return "postgresql+psycopg://" + url.removeprefix(plain)
    return url


def open_storage(where: str, heartbeat: int) -> BaseStorage:
    """The study storage at ``where``: a database URL (``postgresql://user@host:port/db``, any SQLAlchemy
    URL) or the path of a journal file (created if missing; its folder must exist). A worker silent for
    ``2 * heartbeat`` seconds has its trial failed and queued again with the same values (twice at most; then
    a rerun queues it again). ValueError
    naming ``where`` when it cannot be reached."""
    with warnings.catch_warnings():  # Optuna calls its heartbeat and retry experimental
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return _open(where, heartbeat, RetryHeartbeatStaleTrialCallback(max_retry=2))


def _open(where: str, heartbeat: int, retry: StaleCallback) -> BaseStorage:
    if "://" not in where:
        path = Path(where)
        if not path.parent.is_dir():
            raise ValueError(f"--storage {where}: the folder {path.parent} does not exist")
        try:
            return HeartbeatJournalStorage(path, heartbeat, 2 * heartbeat, retry)
        except OSError as error:
            raise ValueError(f"--storage {where}: cannot open the journal file ({error.strerror})") from None
    kwargs: dict[str, Any] = {"pool_pre_ping": True}
    if where.startswith(("postgres", "mysql")):
        kwargs["connect_args"] = {"connect_timeout": 10}
    try:
        return QueuedRDBStorage(
            _driver_url(where),
            engine_kwargs=kwargs,
            heartbeat_interval=heartbeat,
            grace_period=2 * heartbeat,
            heartbeat_stale_trial_callback=retry,
        )
    except ImportError as error:
        raise ValueError(f"--storage {_safe_url(where)}: its database driver is missing ({error})") from None
    except SQLAlchemyError as error:  # a bad URL or an unreachable server
        reason = str(getattr(error, "orig", None) or error).strip().splitlines()[0]
        raise ValueError(f"--storage {_safe_url(where)}: cannot connect ({type(error).__name__}: {reason})") from None
