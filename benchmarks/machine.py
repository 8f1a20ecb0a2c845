"""What the speed benchmarks (bench_layers.py, bench_step.py) print about the machine they ran on,
and their ``--load`` option.

- ``instruction_set()``: the widest x86 vector set the CPU has (AVX-512, AVX2, ...), from /proc/cpuinfo.
- ``sgemm_gflops(rounds)``: the machine's own float32 BLAS rate, a 2048 x 2048 product through NumPy,
  measured in the same run (and so under the same load) as the rows that are compared with it.
- ``header_lines(sgemm)``: those two, and the variables that pin a library's kernels to an older
  instruction set when they are set (``ISA_PINS``: an emulation of an older CPU on this one).
- ``spread(samples)``: the round-to-round spread a table prints next to each median.
- ``BusyCores()``: a CPU-bound process on every core while the benchmark measures. It returns once every
  process has written a byte from inside its busy loop (an observable event, not a sleep) and stops
  them (by their own process ids) when it exits.
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import numpy as np

SGEMM_SIZE = 2048
# What pins each library's kernels to an older instruction set (benchmarks/README.md, "AVX2 emulated").
ISA_PINS = (
    "OPENBLAS_CORETYPE",
    "NUMBA_CPU_NAME",
    "ATEN_CPU_CAPABILITY",
    "ONEDNN_MAX_CPU_ISA",
    "MKL_ENABLE_INSTRUCTIONS",
)
T = TypeVar("T")


def instruction_set() -> str:
    """``"AVX-512"``, ``"AVX2"``, ``"AVX"``, ``"SSE"`` or the machine's name when not x86 (Linux flags)."""
    try:
        flags = next(
            (line.split(":", 1)[1].split() for line in Path("/proc/cpuinfo").read_text().splitlines()
             if line.startswith("flags")),
            [],
        )  # fmt: skip
    except OSError:
        flags = []
    for flag, name in (("avx512f", "AVX-512"), ("avx2", "AVX2"), ("avx", "AVX"), ("sse2", "SSE")):
        if flag in flags:
            return name
    return platform.machine()


def spread(samples: list[float]) -> str:
    """``"lo-hi"``: the least and largest of the per-round medians."""
    return f"{min(samples):.3g}-{max(samples):.3g}"


def sgemm_gflops(rounds: int = 5, size: int = SGEMM_SIZE) -> tuple[float, list[float]]:
    """Median GFLOP/s of ``rounds`` float32 ``(size, size) @ (size, size)`` products, and each round's."""
    rng = np.random.default_rng(0)
    a, b = (rng.standard_normal((size, size)).astype(np.float32) for _ in range(2))
    out = np.empty_like(a)
    np.matmul(a, b, out=out)  # warm-up: BLAS's threads started, pages faulted in
    rates = []
    for _ in range(rounds):
        start = time.perf_counter()
        np.matmul(a, b, out=out)
        rates.append(2 * size**3 / (time.perf_counter() - start) / 1e9)
    return float(np.median(rates)), rates


BUSY_LOOP = "import sys\nsys.stdout.write('r')\nsys.stdout.flush()\nwhile True:\n    pass\n"


class BusyCores:
    """A context manager: ``count`` (default: every core) CPU-bound processes run while it is open."""

    def __init__(self, count: int | None = None) -> None:
        self.count = count or os.cpu_count() or 1
        self.procs: list[subprocess.Popen[bytes]] = []

    def __enter__(self) -> BusyCores:
        for _ in range(self.count):
            self.procs.append(subprocess.Popen([sys.executable, "-c", BUSY_LOOP], stdout=subprocess.PIPE))
        for proc in self.procs:
            assert proc.stdout is not None
            if proc.stdout.read(1) != b"r":  # written just before the loop starts
                self.__exit__()
                raise RuntimeError(f"load process {proc.pid} exited before its busy loop")
        return self

    def __exit__(self, *exc: object) -> None:
        for proc in self.procs:
            proc.kill()
        for proc in self.procs:
            proc.wait()
        self.procs = []

    def describe(self) -> str:
        return f"{self.count} CPU-bound processes running (pids {', '.join(str(p.pid) for p in self.procs)})"


def header_lines(sgemm: tuple[float, list[float]]) -> list[str]:
    """The lines a benchmark prints about the CPU and its measured sgemm rate."""
    median, rates = sgemm
    pinned = [f"{var}={os.environ[var]}" for var in ISA_PINS if os.environ.get(var)]
    return [
        f"instruction set: {instruction_set()}; sgemm {SGEMM_SIZE}x{SGEMM_SIZE} float32 (NumPy's BLAS, this run): "
        f"{median:.0f} GFLOP/s, rounds {spread(rates)}",
        *(["kernels pinned below the CPU's (an emulation): " + ", ".join(pinned)] if pinned else []),
    ]


def maybe_loaded(load: bool, run: Callable[[], T]) -> T:
    """``run()``, inside ``BusyCores()`` when ``load`` (saying so first)."""
    if not load:
        return run()
    with BusyCores() as cores:
        print(f"load: {cores.describe()} while it measures")
        return run()
