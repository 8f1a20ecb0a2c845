"""One training step (forward, backward, Adam update) of the course's convnet and of a small VGG-style
net on CIFAR-shaped float32 data: funcnn against PyTorch (CPU), interleaved in one process.

    python benchmarks/bench_step.py                 # both nets, 2 threads, 5 rounds of 10 steps
    python benchmarks/bench_step.py --rounds 2 --steps 5 --nets course
    python benchmarks/bench_step.py --load          # a CPU-bound process on every core while it measures

Each round times ``steps`` steps of every implementation in turn (after a warm-up step), so noise from
the rest of the machine falls on all of them; the table shows the median step of all rounds and the
spread of the per-round medians (least-largest). The header gives the CPU's instruction set and the
machine's sgemm rate measured in the same run (under the same load).
Like ``fit`` and the ``funcnn`` command, it first calls ``funcnn.keep_freed_memory()`` (process-wide,
so PyTorch runs under it too; ``--malloc-as-is`` measures without). Peak memory of a step is measured
afterwards in fresh subprocesses with malloc as it is (peak RSS growth over the process after set-up,
one implementation per process).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


# funcnn: as installed (its conv splits the batch over its own threads, funcnn/kernels/threads.py);
# funcnn-serial: that split off, BLAS's own threads in the products; funcnn-1blas: split off, BLAS on 1 thread;
# funcnn-split-1blas: split on, BLAS on 1 thread for the whole step; funcnn-in-order: ReLU before max-pool
# as written (funcnn.layers._combinators.POOL_BEFORE_RELU off); funcnn-columns: no register tiles, every conv
# on columns and BLAS as before them (funcnn.layers._conv_direct.set_tile_lanes(0)).
IMPL_NAMES = ("funcnn", "funcnn-serial", "funcnn-1blas", "funcnn-split-1blas", "funcnn-in-order", "funcnn-columns",
              "torch")  # fmt: skip


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--nets", default="course,vgg")
    parser.add_argument("--no-memory", action="store_true")
    parser.add_argument("--load", action="store_true", help="run a CPU-bound process on every core while timing")
    parser.add_argument("--impls", default="funcnn,torch", help="comma-separated, from: " + ", ".join(IMPL_NAMES))
    parser.add_argument(
        "--malloc-as-is",
        action="store_true",
        help="do not call funcnn.keep_freed_memory() (fit and the funcnn command do; it is process-wide)",
    )
    parser.add_argument("--memory-of", help=argparse.SUPPRESS)  # "<net>:<impl>", run in a subprocess
    return parser.parse_args()


ARGS = parse_args()
for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ[var] = str(ARGS.threads)
sys.path.insert(0, str(ROOT))

import numpy as np
from machine import header_lines, maybe_loaded, sgemm_gflops, spread
from step_nets import NETS, data, funcnn_net, status_kib, torch_model

import funcnn as fn


def funcnn_step(name: str):
    batch, _ = NETS[name]
    net = funcnn_net(name)
    _, params = fn.init_params(net, np.random.default_rng(0), (3, 32, 32), dtype=np.float32)
    opt = fn.optim.adam(1e-3)
    objective = fn.value_and_grad(net)
    x, y = data(batch)
    carry = [params, opt.init(params)]

    def step():
        value, grads = objective(carry[0], x, y)
        carry[0], carry[1] = opt.update(grads, carry[1], carry[0])
        return value

    return step


def torch_step(name: str):
    import torch

    batch, _ = NETS[name]
    torch.manual_seed(0)
    model = torch_model(name)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    x, y = (torch.from_numpy(a) for a in data(batch))

    def step():
        opt.zero_grad(set_to_none=True)
        loss = torch.nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        return loss.item()

    return step


def funcnn_variant(split: int | None, blas_threads: int | None, pool_before_relu: bool = True, tiles: bool = True):
    """A funcnn step run with the conv split over ``split`` threads (None: as installed), BLAS on
    ``blas_threads`` (None: as it is), ReLU-then-pool reordered or not (funcnn.layers._combinators) and
    the direct conv's register tiles on (as installed) or off."""
    from threadpoolctl import ThreadpoolController

    import funcnn.layers._combinators as combinators
    from funcnn.kernels.threads import set_split_threads, split_threads
    from funcnn.layers._conv_direct import set_tile_lanes

    def make(name: str):
        step, controller = funcnn_step(name), ThreadpoolController()

        def variant():
            saved = split_threads()
            set_split_threads(saved if split is None else split)
            combinators.POOL_BEFORE_RELU = pool_before_relu
            if not tiles:
                set_tile_lanes(0)
            try:
                if blas_threads is None:
                    return step()
                with controller.limit(limits=blas_threads, user_api="blas"):
                    return step()
            finally:
                set_split_threads(saved)
                combinators.POOL_BEFORE_RELU = True
                set_tile_lanes(None)

        return variant

    return make


IMPLS = {
    "funcnn": funcnn_step,
    "funcnn-serial": funcnn_variant(1, None),
    "funcnn-1blas": funcnn_variant(1, 1),
    "funcnn-split-1blas": funcnn_variant(2, 1),
    "funcnn-in-order": funcnn_variant(None, None, pool_before_relu=False),
    "funcnn-columns": funcnn_variant(None, None, tiles=False),
    "torch": torch_step,
}
IDLE = 0.3  # seconds between implementations: idle OpenMP and BLAS threads spin for up to about 0.1 s


def peak_memory(name: str, impl: str) -> float:
    """MiB of peak RSS growth during 3 steps, in a fresh process."""
    # malloc as it is: with freed memory kept, the warm-up step's memory would be reused and not counted
    out = subprocess.run(
        [sys.executable, __file__, "--threads", str(ARGS.threads), "--malloc-as-is", "--memory-of", f"{name}:{impl}"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return float(out.split()[-1])


def measure_memory_here(spec: str) -> None:
    """Print the MiB that 3 steps add to the process at their peak (Linux: VmHWM reset by clear_refs)."""
    name, impl = spec.split(":")
    step = IMPLS[impl](name)
    step()  # compiled and warm: what remains is the step's own memory
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # resets the peak resident size to the current one
    before = status_kib("VmRSS")
    for _ in range(3):
        step()
    print((status_kib("VmHWM") - before) / 1024)


def time_steps(names: list[str]) -> dict[str, dict[str, list[float]]]:
    """net -> impl -> per-round median seconds, the implementations interleaved round by round."""
    result = {}
    for name in names:
        steps = {impl: IMPLS[impl](name) for impl in ARGS.impls.split(",")}
        rounds: dict[str, list[float]] = {impl: [] for impl in steps}
        for _ in range(ARGS.rounds):
            for impl, step in steps.items():
                time.sleep(IDLE)
                step()
                times = []
                for _ in range(ARGS.steps):
                    started = time.perf_counter()
                    step()
                    times.append(time.perf_counter() - started)
                rounds[impl].append(float(np.median(times)))
        result[name] = rounds
    return result


def main() -> None:
    if not ARGS.malloc_as_is:
        fn.keep_freed_memory()  # as fit and the funcnn command do; process-wide, so PyTorch gets it too
    if ARGS.memory_of:
        measure_memory_here(ARGS.memory_of)
        return
    import torch

    torch.set_num_threads(ARGS.threads)
    impls = ARGS.impls.split(",")
    print(
        f"threads {ARGS.threads}, numpy {np.__version__}, torch {torch.__version__}, {os.cpu_count()} cores; "
        f"median ms per step over {ARGS.rounds} rounds of {ARGS.steps} steps (implementations interleaved)"
    )
    names = ARGS.nets.split(",")
    sgemm, results = maybe_loaded(ARGS.load, lambda: (sgemm_gflops(), time_steps(names)))
    print("\n".join(header_lines(sgemm)))
    cols = [f"{impl} ms [rounds]" for impl in impls]
    ratios = [f"{impl} / {impls[-1]}" for impl in impls[:-1]]
    print(
        "| net (float32) | batch | "
        + " | ".join(cols + ratios)
        + " | "
        + " | ".join(f"{i} peak MiB" for i in impls)
        + " |"
    )
    print("|---" * (2 + len(cols) + len(ratios) + len(impls)) + "|")
    for name, rounds in results.items():
        med = {impl: 1e3 * float(np.median(r)) for impl, r in rounds.items()}
        cells = [f"{med[i]:.1f} [{spread([1e3 * v for v in rounds[i]])}]" for i in impls]
        cells += [f"{med[i] / med[impls[-1]]:.2f}" for i in impls[:-1]]
        cells += ["-" if ARGS.no_memory else f"{peak_memory(name, i):.0f}" for i in impls]
        print(f"| {name}: {NETS[name][1]} | {NETS[name][0]} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
