"""Processes and BLAS threads: the guide (docs/benchmarks.md) says how to start workers, and its spawn recipe runs
funcnn while BLAS threads are busy (fork can hang there: a child inherits OpenBLAS's locks mid-use)."""

import multiprocessing
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

import funcnn

ROOT = Path(funcnn.__file__).parent


@pytest.mark.parametrize("interrupted", ["funcnn.nets", "funcnn.app.cli"])
def test_ctrl_c_while_the_command_loads_prints_one_line(tmp_path, interrupted):
    """A KeyboardInterrupt raised by the import of a module, as Ctrl-C does while Numba loads."""
    (tmp_path / "sitecustomize.py").write_text(
        "import sys\n"
        "class Interrupt:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        f"        if name == {interrupted!r}:\n"
        "            raise KeyboardInterrupt\n"
        "sys.meta_path.insert(0, Interrupt())\n"
    )
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    result = subprocess.run(
        [sys.executable, "-m", "funcnn", "check"], capture_output=True, text=True, env=env, timeout=300, check=False
    )
    assert result.stderr == "funcnn: interrupted while starting\n" and result.returncode in (130, -signal.SIGINT)


def test_the_threads_section_says_to_spawn_not_fork():
    page = (ROOT.parent / "docs" / "benchmarks.md").read_text()
    section = page.split("## Numba and threads", 1)[1].split("\n## ", 1)[0]
    assert "fork" in section and 'get_context("spawn")' in section and "hang" in section


def test_a_spawned_worker_runs_funcnn_while_blas_threads_are_busy():
    a = np.random.default_rng(0).standard_normal((300, 300))
    stop = threading.Event()

    def busy():
        while not stop.is_set():
            a @ a

    thread = threading.Thread(target=busy)
    thread.start()
    try:
        with multiprocessing.get_context("spawn").Pool(1) as pool:
            errors = pool.starmap(funcnn.rel_error, [(a, a + 1e-9), (a, a)], chunksize=1)
    finally:
        stop.set()
        thread.join()
    assert errors == [funcnn.rel_error(a, a + 1e-9), 0.0]  # the same answer as in this process
