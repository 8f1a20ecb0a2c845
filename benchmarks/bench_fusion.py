"""ReLU then 2x2 max-pool on the course convnet's conv output (50, 32, 32, 32): in the written order
against max-pool then ReLU (``funcnn.layers._combinators.POOL_BEFORE_RELU``), forward + backward, interleaved
in one process; median ms and the spread of the per-round medians.

    python benchmarks/bench_fusion.py [--rounds 9] [--repeats 20] [--dtype float32] [--load]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np
from machine import instruction_set, maybe_loaded, spread

import funcnn as fn
import funcnn.layers._combinators as combinators


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--load", action="store_true", help="run a CPU-bound process on every core while timing")
    args = parser.parse_args()
    fn.keep_freed_memory()
    x = np.random.default_rng(0).standard_normal((50, 32, 32, 32)).astype(args.dtype)
    net = fn.chain(fn.relu, fn.max_pool())
    dy = np.ones((50, 32, 16, 16), args.dtype)
    rounds: dict[bool, list[float]] = {True: [], False: []}

    def run() -> None:
        for _ in range(args.rounds):
            for flag in rounds:
                combinators.POOL_BEFORE_RELU = flag
                net(((), ()), x)[1](dy)  # warm-up
                times = []
                for _ in range(args.repeats):
                    start = time.perf_counter()
                    net(((), ()), x)[1](dy)
                    times.append(1e3 * (time.perf_counter() - start))
                rounds[flag].append(float(np.median(times)))
        combinators.POOL_BEFORE_RELU = True

    maybe_loaded(args.load, run)
    print(f"instruction set: {instruction_set()}; {args.dtype} x{x.shape}, {args.rounds} rounds of {args.repeats}")
    for flag, label in ((False, "relu then pool (written order)"), (True, "pool then relu")):
        print(f"{label}: {np.median(rounds[flag]):.3f} ms fwd+bwd [rounds {spread(rounds[flag])}]")
    print(f"ratio: {np.median(rounds[True]) / np.median(rounds[False]):.2f}")


if __name__ == "__main__":
    main()
