"""How a conv uses the cores: its batch split over funcnn's own threads, each product on one BLAS thread.

Why: OpenBLAS's threads spin and wait for each other at every product, so while other jobs hold the
cores (a user's laptop is rarely idle) a step on two BLAS threads collapses. Measured on a 2-core AVX-512
VM shared with other jobs (load average 12-13), course convnet step, float32, batch 50, interleaved in
one process (median ms, least-largest round), benchmarks/bench_step.py:

    policy                                    busy machine         + a CPU-bound process per core (--load)
    split over 2 threads, 1 BLAS thread each   115.6 [104-138]      251.8 [200-338]
    serial, 2 BLAS threads (before)            987.9 [726-2890]    6383.9 [4270-6860]
    serial, 1 BLAS thread                       97.4 [90-124]       354.5 [320-415]
    PyTorch 2.13, 2 threads                    498.8 [251-1020]    1759.9 [1200-2040]

Nearly quiet (load average 2.4): split 24.6 [18-28], serial on 2 BLAS threads 20.8 [20-26], 1 BLAS thread
26.2 [25-30], PyTorch 17.9. At load 2.7-3.1: 48.2 / 43.3, 273 / 302, 34.4 / 32.2, 262 / 132. No schedule
wins everywhere; the split's worst ratio to the best is 1.4 (one BLAS thread's 1.41, the old schedule's 25),
and it keeps the second core in use on a quiet machine.

Off: ``FUNCNN_SPLIT_THREADS=1`` in the environment (read at import) or ``set_split_threads(1)``; a conv is
then serial Python with BLAS's own threads in the products, as before. The split never changes a
result: chunks are the same whatever the thread count, every image's product is computed alone, and
the per-chunk parts of ``dw`` are summed in chunk order after the threads join.
"""

from __future__ import annotations

import bisect
import os
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any, TypeVar

import numpy as np

T = TypeVar("T")
# matmul_split cuts the larger of a product's M and N into blocks of at least MIN_BLOCK, at most MAX_BLOCKS
# of them (4: an even share for 1, 2 or 4 threads): each BLAS call costs its set-up and packs the whole of the
# other operand again, so few large blocks win (64-row blocks: 1.3-2.2x a bare product; benchmarks/README.md).
MIN_BLOCK = 128
MAX_BLOCKS = 4
# A conv's dw sums its images (or chunks) in this many runs, fixed whatever the thread count (so the result
# is too), holding one sum a run, not one product a chunk; 4 splits evenly over 1, 2 or 4 threads.
DW_RUNS = 4


def _default_threads() -> int:
    setting = os.environ.get("FUNCNN_SPLIT_THREADS", "").strip()
    if setting:
        return max(1, int(setting))
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


_THREADS = [_default_threads()]
_POOL: list[ThreadPoolExecutor] = []
_BLAS: list[Any] = []  # threadpoolctl's controllers of the BLAS libraries, found once
_LOCK = threading.Lock()
_DEPTH = [0]  # calls inside a one-BLAS-thread section (several user threads may run convs at once)
_SAVED: list[int] = []


def split_threads() -> int:
    """The number of threads convs and affines split their work over.

    Returns:
        The count set by ``set_split_threads`` or ``FUNCNN_SPLIT_THREADS`` (1: the split is off), else one a core.
    """
    return _THREADS[0]


def set_split_threads(count: int) -> None:
    """Split each conv's batch and each affine's rows over ``count`` threads, BLAS on one thread each.

    Args:
        count: threads, at least 1 (1 turns the split off: layers run serially on BLAS's own threads).
    """
    if count < 1:
        raise ValueError(f"set_split_threads: count must be >= 1, got {count}")
    _THREADS[0] = int(count)


def _blas_controllers() -> list[Any]:
    if not _BLAS:
        from threadpoolctl import ThreadpoolController  # type: ignore[import-untyped]

        _BLAS.append([lib for lib in ThreadpoolController().lib_controllers if lib.user_api == "blas"])
    return list(_BLAS[0])


@contextmanager
def one_blas_thread() -> Iterator[None]:
    """BLAS on one thread inside the block (process-wide: BLAS libraries have one setting); nested and
    concurrent blocks restore the count the outermost one found.

    Returns:
        A context manager (it yields None).
    """
    libs = _blas_controllers()
    with _LOCK:
        if _DEPTH[0] == 0:
            _SAVED[:] = [lib.num_threads for lib in libs]
            for lib in libs:
                lib.set_num_threads(1)
        _DEPTH[0] += 1
    try:
        yield
    finally:
        with _LOCK:
            _DEPTH[0] -= 1
            if _DEPTH[0] == 0:
                for lib, count in zip(libs, _SAVED):
                    lib.set_num_threads(count)


def map_groups(task: Callable[[Sequence[slice]], list[T]], chunks: Sequence[slice]) -> list[T]:
    """``task`` on contiguous groups of ``chunks``, one group a thread (the calling thread takes the
    first), BLAS on one thread meanwhile.

    Args:
        task: maps a group of chunks to one result per chunk.
        chunks: the chunks (slices of the batch), in order.

    Returns:
        The results of every chunk, in chunk order.
    """
    count = min(split_threads(), len(chunks))
    if split_threads() == 1:  # off: serial, BLAS's threads as the user set them
        return task(chunks)
    if count <= 1:
        with one_blas_thread():
            return task(chunks)
    bounds = [round(i * len(chunks) / count) for i in range(count + 1)]
    groups = [chunks[bounds[i] : bounds[i + 1]] for i in range(count)]
    if not _POOL or _POOL[0]._max_workers < count - 1:
        _POOL[:] = [ThreadPoolExecutor(max_workers=count - 1, thread_name_prefix="funcnn-conv")]
    with one_blas_thread():
        futures = [_POOL[0].submit(task, group) for group in groups[1:]]
        results = task(groups[0])
        for future in futures:
            results.extend(future.result())
    return results


class ReadsFirst:
    """The order for an output written chunk by chunk of images over the memory of the input it is computed
    from (a conv's ``dx`` in a handed-over ``dy``), when threads run the chunks: chunk ``p`` of the output is
    written only once every chunk of the input its memory overlaps has been read for the last time. Serial
    runs read chunk ``p`` before writing it and nothing waits; a split without this would let one thread
    write over input another has not read yet.

    Args:
        chunks: the chunks (slices of images) that both arrays are run in, in order.
        in_image: elements of one image of the input.
        out_image: elements of one image of the output, at most ``in_image``; both arrays start at the
            same address. 0: the output has memory of its own, and nothing waits.
    """

    def __init__(self, chunks: Sequence[slice], in_image: int, out_image: int) -> None:
        starts = [part.start for part in chunks]
        self._index = {start: p for p, start in enumerate(starts)}
        self._read = [threading.Event() for _ in chunks]
        # the first input chunk that output chunk p overlaps: the one holding element start * out_image
        self._first = [p if not out_image else bisect.bisect_right(starts, start * out_image // in_image) - 1
                       for p, start in enumerate(starts)]  # fmt: skip

    def read(self, part: slice) -> None:
        """Mark chunk ``part`` of the input as read for the last time.

        Args:
            part: one of the chunks.
        """
        self._read[self._index[part.start]].set()

    def wait(self, part: slice) -> None:
        """Block until chunk ``part`` of the output may be written.

        Args:
            part: one of the chunks.
        """
        p = self._index[part.start]
        for q in range(self._first[p], p):
            self._read[q].wait()

    @contextmanager
    def released_on_error(self) -> Iterator[None]:
        """Inside, an exception lets every waiting chunk go (the call raises; its output is not used).

        Returns:
            A context manager (it yields None).
        """
        try:
            yield
        except BaseException:
            for event in self._read:
                event.set()
            raise


def matmul_split(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a @ b`` by one BLAS call per block of rows of ``a`` (when ``M >= N``) or of columns of ``b``, the
    blocks split over the threads.

    The blocks follow from the shapes alone, never from the thread count (BLAS picks its kernel by the
    product's size, so a result could change with the split otherwise): the larger of M and N in
    ``clip(size // MIN_BLOCK, 1, MAX_BLOCKS)`` near-equal blocks. With the split off, BLAS runs each block
    on its own threads, which may sum in another order.

    Args:
        a: ``(M, K)``.
        b: ``(K, N)``.

    Returns:
        ``(M, N)`` in ``a`` and ``b``'s result dtype.
    """
    (m, _), n = a.shape, b.shape[1]
    out = np.empty((m, n), np.result_type(a, b))
    size = max(m, n)
    count = min(MAX_BLOCKS, max(1, size // MIN_BLOCK))
    bounds = [size * i // count for i in range(count + 1)]
    blocks = [slice(bounds[i], bounds[i + 1]) for i in range(count)]

    def task(parts: Sequence[slice]) -> list[None]:
        for part in parts:
            if m >= n:
                np.matmul(a[part], b, out=out[part])
            else:
                np.matmul(a, b[:, part], out=out[:, part])
        return []

    map_groups(task, blocks)
    return out
