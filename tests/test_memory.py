"""keep_freed_memory: a loop that makes the same large arrays every step stops page-faulting them in."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LOOP = """
import resource, sys
import numpy as np
import funcnn as fn
kept = fn.keep_freed_memory() if sys.argv[1] == "keep" else False
def step():  # like a training step: several multi-megabyte arrays alive at once, then all freed
    arrays = [np.ones(800_000) for _ in range(8)]
    return sum(a[0] for a in arrays)
for _ in range(3):
    step()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(20):
    step()
print(kept, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _faults(mode: str, **env: str) -> tuple[str, int]:
    out = subprocess.run(
        [sys.executable, "-c", LOOP, mode],
        env={**os.environ, "PYTHONPATH": str(ROOT), **env},
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    return out[0], int(out[1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc only")
def test_kept_memory_is_reused_without_page_faults():
    kept, faults_kept = _faults("keep")
    _, faults_as_is = _faults("as-is")
    assert kept == "True"
    assert faults_as_is > 20 * 1000  # 51 MB a step: up to 12,500 pages each time
    assert faults_kept < faults_as_is / 10


def test_the_environment_can_turn_it_off():
    kept, _ = _faults("keep", FUNCNN_KEEP_FREED_MEMORY="0")
    assert kept == "False"
