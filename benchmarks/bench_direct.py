"""The conv forward pass on few input channels: funcnn's direct kernel against its im2col + BLAS path and
PyTorch (CPU), interleaved in one process; the measurements behind ``DIRECT_MAX_CHANNELS`` and
``DIRECT_MIN_TAPS`` in ``funcnn/layers/_conv.py``. With ``--dw``, the weight gradient alone (the
backward of a first layer, ``need_dx=False``): the trial kernel of ``benchmarks/direct_dw_trial.py``
against funcnn's im2col + BLAS dw and PyTorch's, with the trial's largest difference from funcnn's dw.

    python benchmarks/bench_direct.py                     # 2 threads, wall time, 8 rounds of 10 calls
    python benchmarks/bench_direct.py --threads 1 --cpu   # per-core cost: process CPU time, 1 thread
    python benchmarks/bench_direct.py --dw                # dw only

``--cpu`` times with ``time.process_time`` (all threads' CPU time): on a shared machine it moves less
than wall time, and at 1 thread it is the per-core cost. The table shows min and median ms per call.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
parser.add_argument("--threads", type=int, default=2)
parser.add_argument("--rounds", type=int, default=8)
parser.add_argument("--repeats", type=int, default=10)
parser.add_argument("--cpu", action="store_true", help="process CPU time instead of wall time")
parser.add_argument("--dw", action="store_true", help="time the weight gradient instead of the forward pass")
ARGS = parser.parse_args()
for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ[var] = str(ARGS.threads)
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import direct_dw_trial
import numpy as np

import funcnn.layers._conv as conv_module
from funcnn.kernels import direct

# name -> (x shape, w shape, stride, pad): bench_layers' few-channel shapes, then the VGG net's first conv
SHAPES = {
    "(a)": ((100, 3, 31, 31), (25, 3, 3, 3), 2, 1),
    "(d)": ((8, 3, 64, 64), (16, 3, 5, 5), 1, 2),
    "(e)": ((50, 3, 32, 32), (32, 3, 7, 7), 1, 3),
    "vgg first": ((64, 3, 32, 32), (64, 3, 3, 3), 1, 1),
}


def candidates(x: np.ndarray, w: np.ndarray, b: np.ndarray, stride: int, pad: int) -> dict:
    out_h, out_w = ((size + 2 * pad - k) // stride + 1 for size, k in zip(x.shape[2:], w.shape[2:]))

    def im2col() -> np.ndarray:
        chosen = conv_module.DIRECT_MAX_CHANNELS
        conv_module.DIRECT_MAX_CHANNELS = 0  # the rule then never picks the direct kernel
        try:
            return conv_module._fast_forward(x, w, b, stride, pad, out_h, out_w)[0]
        finally:
            conv_module.DIRECT_MAX_CHANNELS = chosen

    found = {"direct": lambda: direct.conv(x, w, b, stride, pad, out_h, out_w), "im2col": im2col}
    try:
        import torch

        torch.set_num_threads(ARGS.threads)
        tx, tw, tb = (torch.from_numpy(a) for a in (x, w, b))
        found["torch"] = lambda: torch.nn.functional.conv2d(tx, tw, tb, stride=stride, padding=pad)
    except ImportError:
        pass
    return found


def dw_candidates(x: np.ndarray, w: np.ndarray, b: np.ndarray, stride: int, pad: int) -> dict:
    out_h, out_w = ((size + 2 * pad - k) // stride + 1 for size, k in zip(x.shape[2:], w.shape[2:]))
    dy = np.random.default_rng(1).standard_normal((x.shape[0], w.shape[0], out_h, out_w)).astype(x.dtype)
    backward = conv_module._fast_forward(x, w, b, stride, pad, out_h, out_w)[1]
    found = {
        "direct": lambda: direct_dw_trial.conv_dw(x, dy, w.shape, stride, pad),
        "im2col": lambda: backward(dy, False)[1],
    }
    try:
        import torch

        torch.set_num_threads(ARGS.threads)
        tx, tdy = torch.from_numpy(x), torch.from_numpy(dy)
        found["torch"] = lambda: torch.nn.grad.conv2d_weight(tx, w.shape, tdy, stride=stride, padding=pad)
    except ImportError:
        pass
    return found


def main() -> None:
    clock = time.process_time if ARGS.cpu else time.perf_counter
    clock_name = "CPU" if ARGS.cpu else "wall"
    print(f"threads {ARGS.threads}, {clock_name} time, min / median ms of {ARGS.rounds} rounds x {ARGS.repeats}")
    last = "max abs(direct - im2col) / max abs(dw)" if ARGS.dw else "chosen"
    print(f"| shape | dtype | direct | im2col + BLAS | torch | direct / im2col (median) | {last} |")
    print("|---|---|---|---|---|---|---|")
    rng = np.random.default_rng(0)
    for dtype in (np.float32, np.float64):
        for name, (x_shape, w_shape, stride, pad) in SHAPES.items():
            x, w = rng.standard_normal(x_shape).astype(dtype), rng.standard_normal(w_shape).astype(dtype)
            b = rng.standard_normal(w_shape[0]).astype(dtype)
            impls = (dw_candidates if ARGS.dw else candidates)(x, w, b, stride, pad)
            times: dict[str, list[float]] = {impl: [] for impl in impls}
            for _ in range(ARGS.rounds):
                for impl, run in impls.items():
                    run()
                    for _ in range(ARGS.repeats):
                        started = clock()
                        run()
                        times[impl].append(clock() - started)
            cell = {impl: f"{1e3 * min(t):.2f} / {1e3 * np.median(t):.2f}" for impl, t in times.items()}
            ratio = np.median(times["direct"]) / np.median(times["im2col"])
            if ARGS.dw:
                reference = impls["im2col"]()
                last = f"{np.abs(impls['direct']() - reference).max() / np.abs(reference).max():.1e}"
            else:
                last = "direct" if conv_module._uses_direct(w) else "im2col"
            print(
                f"| {name} x{x_shape} w{w_shape} s{stride} p{pad} | {np.dtype(dtype).name} | {cell['direct']} | "
                f"{cell['im2col']} | {cell.get('torch', '-')} | {ratio:.2f} | {last} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
