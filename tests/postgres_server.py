"""A throwaway PostgreSQL server for the sweep tests and benchmarks/bench_sweep.py."""

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

_SERVERS: dict[str, tuple[list[str], Path, Path]] = {}  # url -> (run as, binaries, data folder)


def stop_server(url: str) -> None:
    """Stop the server at ``url`` at once (``-m immediate``: as a machine or a network going away), returning
    when it no longer accepts connections."""
    as_user, binaries, data = _SERVERS[url]
    subprocess.run(
        [*as_user, binaries / "pg_ctl", "-D", data, "-m", "immediate", "-w", "-t", "600", "stop"],
        check=True,
        capture_output=True,
    )


class ServerMissing(RuntimeError):
    """No PostgreSQL server binaries here, or no user to run them as; the message says which."""


def server_binaries() -> Path | None:
    """The folder of initdb and pg_ctl: Debian's /usr/lib/postgresql/<version>/bin, or the PATH's."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    if found:
        return found[-1].parent
    initdb = shutil.which("initdb")
    return Path(initdb).resolve().parent if initdb and shutil.which("pg_ctl") else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def postgres_server() -> Iterator[str]:
    """Start a server in a temporary folder on a free loopback port (as the postgres user when root: initdb
    refuses root), yield its URL (user funcnn, database postgres, no password), stop it and remove its folder."""
    binaries = server_binaries()
    if binaries is None:
        raise ServerMissing(
            "no PostgreSQL server binaries (initdb, pg_ctl); .ci/run installs them: apt-get install postgresql"
        )
    as_user: list[str] = []
    if os.geteuid() == 0:
        if (
            shutil.which("runuser") is None
            or subprocess.run(["id", "postgres"], capture_output=True, check=False).returncode
        ):
            raise ServerMissing("running as root without a postgres user and runuser to start the server as")
        as_user = ["runuser", "-u", "postgres", "--"]
    folder = Path(tempfile.mkdtemp(prefix="funcnn-postgres-"))
    if as_user:
        shutil.chown(folder, "postgres")
    data, port = folder / "data", _free_port()
    try:
        subprocess.run(
            [*as_user, binaries / "initdb", "-D", data, "-A", "trust", "-U", "funcnn", "--no-sync"],
            check=True,
            capture_output=True,
        )
        options = f"-p {port} -k {folder} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200"
        # -w waits for the server to accept connections (an event), up to -t seconds: pg_ctl's default 60 s is
        # short for a server starting on a machine whose cores are all busy
        subprocess.run(
            [*as_user, binaries / "pg_ctl", "-D", data, "-l", folder / "server.log", "-o", options]
            + ["-w", "-t", "600", "start"],
            check=True,
            capture_output=True,
        )
        url = f"postgresql://funcnn@127.0.0.1:{port}/postgres"
        _SERVERS[url] = (as_user, binaries, data)
        yield url
    finally:
        if (data / "postmaster.pid").exists():
            subprocess.run(
                [*as_user, binaries / "pg_ctl", "-D", data, "-m", "immediate", "-w", "-t", "600", "stop"],
                check=False,
                capture_output=True,
            )
        shutil.rmtree(folder, ignore_errors=True)
