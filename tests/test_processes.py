"""Processes and BLAS threads: funcnn never forks, and the spawn recipe the README gives works while
BLAS threads are busy (fork can hang there: a child inherits OpenBLAS's locks mid-use)."""

import multiprocessing
import re
import threading
from pathlib import Path

import numpy as np

import funcnn

ROOT = Path(funcnn.__file__).parent


def test_funcnn_starts_processes_only_with_spawn():
    for path in ROOT.rglob("*.py"):
        text = path.read_text()
        if re.search(r"\bmultiprocessing\b|os\.fork|ProcessPoolExecutor", text):
            assert "spawn" in text, f"{path} starts processes without the spawn start method"


def test_readme_threads_section_says_to_spawn_not_fork():
    section = (ROOT.parent / "README.md").read_text().split("## Numba and threads", 1)[1].split("\n## ", 1)[0]
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
