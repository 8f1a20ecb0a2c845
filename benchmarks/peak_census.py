"""What a training step's peak consists of: the arrays alive when NumPy's traced memory is at its highest.

    python benchmarks/peak_census.py --net vgg --remat          # funcnn + remat on every conv block
    python benchmarks/peak_census.py --net course --top 12

Method: after two warm-up steps (bench_memory.py's nets, data and Adam), ``tracemalloc`` traces one step;
a profile hook in every thread (Python calls and returns, C calls included) takes a snapshot each time the
traced total passes the highest seen so far by 1 MiB. The last snapshot is the peak's: its arrays are
grouped by where they were allocated (the innermost funcnn frames) and printed largest first, with the
peak itself and ``tracemalloc``'s own peak (which also sees moments between two hook calls). tracemalloc
sees NumPy's arrays and those Numba's kernels make, not BLAS's own buffers; the counts are of allocated
bytes, where VmHWM (bench_memory.py) counts pages touched. The hooks make the step many times slower.
"""

from __future__ import annotations

import argparse
import sys
import threading
import tracemalloc
from collections import defaultdict
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

MIB = 1 << 20
STEP = 1 << 20
# Allocations from this size on are counted as arrays: NumPy's (traced in domain 389047) and those Numba's
# kernels make (through PyMem_RawMalloc, in domain 0 with Python's objects).
ARRAY_BYTES = 64 << 10


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--net", default="vgg")
    parser.add_argument("--remat", action="store_true", help="fn.remat on every conv block")
    parser.add_argument("--top", type=int, default=10, help="allocation sites to print")
    parser.add_argument("--frames", type=int, default=3, help="funcnn frames to name each site by")
    return parser.parse_args()


class PeakSnapshots:
    """A profile hook (``sys.setprofile``'s signature) that snapshots the traces at each new high."""

    def __init__(self) -> None:
        self.on, self.high, self.snapshot, self.where = False, 0, None, ""
        self.lock = threading.Lock()

    def __call__(self, frame, event, arg):  # noqa: ANN001, ANN204 - sys.setprofile's hook
        if not self.on:
            return
        current = tracemalloc.get_traced_memory()[0]
        if current > self.high + STEP and self.lock.acquire(blocking=False):
            try:
                self.high = current
                self.snapshot = tracemalloc.take_snapshot()
                self.where = f"{threading.current_thread().name}: {_funcnn_frames(frame)}"
            finally:
                self.lock.release()


def _funcnn_frames(frame, count: int = 4) -> str:
    names = []
    while frame is not None and len(names) < count:
        if "funcnn" in frame.f_code.co_filename:
            names.append(f"{Path(frame.f_code.co_filename).name}:{frame.f_lineno} {frame.f_code.co_name}")
        frame = frame.f_back
    return " < ".join(names)


def census(snapshot, frames: int) -> list[tuple[int, int, str]]:
    """(bytes, arrays, site) of the arrays (allocations of ``ARRAY_BYTES`` or more) of every allocation site,
    largest first; a site is named by its innermost funcnn frames."""
    sites: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for trace in snapshot.traces:
        if trace.size < ARRAY_BYTES:
            continue
        ours = [f for f in reversed(trace.traceback) if "funcnn" in f.filename or "benchmarks" in f.filename]
        site = " < ".join(f"{Path(f.filename).name}:{f.lineno}" for f in ours[:frames]) or "(outside funcnn)"
        sites[site][0] += trace.size
        sites[site][1] += 1
    return sorted(((size, count, site) for site, (size, count) in sites.items()), reverse=True)


def main() -> None:
    args = parse_args()
    sys.argv[1:] = []  # bench_memory parses its own (default) arguments and sets the thread counts
    from bench_memory import funcnn_step

    hook = PeakSnapshots()
    threading.setprofile(hook)  # threads started from here on: the conv pool starts in the first step
    sys.setprofile(hook)
    step = funcnn_step(args.net, args.remat)
    tracemalloc.start(16)
    step()
    step()
    resting = tracemalloc.get_traced_memory()[0]
    tracemalloc.reset_peak()
    hook.high, hook.on = resting, True
    step()
    hook.on = False
    sys.setprofile(None)
    _, traced_peak = tracemalloc.get_traced_memory()
    hooked, traced = (hook.high - resting) / MIB, (traced_peak - resting) / MIB
    print(f"{args.net}{' + remat' if args.remat else ''}: traced at rest {resting / MIB:.1f} MiB; "
          f"peak above rest: hooked {hooked:.1f}, tracemalloc {traced:.1f}")  # fmt: skip
    print(f"peak reached in {hook.where}")
    assert hook.snapshot is not None
    rows = census(hook.snapshot, args.frames)
    for size, count, site in rows[: args.top]:
        print(f"{size / MIB:7.2f} MiB  {count:4d} arrays  {site}")
    by_domain: dict[int, int] = defaultdict(int)
    for trace in hook.snapshot.traces:
        by_domain[trace.domain] += trace.size
    print("traced at the peak, MiB by tracemalloc domain (389047: NumPy's array data, 0: Python's objects): "
          + ", ".join(f"{domain}: {size / MIB:.2f}" for domain, size in sorted(by_domain.items())))  # fmt: skip
    rest = sum(size for size, _, _ in rows[args.top :])
    print(f"{rest / MIB:7.2f} MiB  in {max(0, len(rows) - args.top)} other sites; "
          f"all arrays {sum(size for size, _, _ in rows) / MIB:.2f} MiB")  # fmt: skip


if __name__ == "__main__":
    main()
