"""One training step (forward, backward, Adam update) of the course's convnet and of a small VGG-style
net on CIFAR-shaped float32 data: funcnn against PyTorch (CPU), interleaved in one process.

    python benchmarks/bench_step.py                 # both nets, 2 threads, 5 rounds of 10 steps
    python benchmarks/bench_step.py --rounds 2 --steps 5 --nets course

Each round times ``steps`` steps of every implementation in turn (after a warm-up step), so noise from
the rest of the machine falls on all of them; the table shows the median step of all rounds.
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


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--nets", default="course,vgg")
    parser.add_argument("--no-memory", action="store_true")
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


IMPLS = {"funcnn": funcnn_step, "torch": torch_step}
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


def main() -> None:
    if not ARGS.malloc_as_is:
        fn.keep_freed_memory()  # as fit and the funcnn command do; process-wide, so PyTorch gets it too
    if ARGS.memory_of:
        measure_memory_here(ARGS.memory_of)
        return
    import torch

    torch.set_num_threads(ARGS.threads)
    print(
        f"threads {ARGS.threads}, numpy {np.__version__}, torch {torch.__version__}, {os.cpu_count()} cores; "
        f"median ms per step over {ARGS.rounds} rounds of {ARGS.steps} steps"
    )
    print("| net (float32) | batch | funcnn ms | torch ms | ratio | funcnn peak MiB | torch peak MiB |")
    print("|---|---|---|---|---|---|---|")
    for name in ARGS.nets.split(","):
        steps = {impl: make(name) for impl, make in IMPLS.items()}
        times: dict[str, list[float]] = {impl: [] for impl in steps}
        for _ in range(ARGS.rounds):
            for impl, step in steps.items():
                time.sleep(IDLE)
                step()
                for _ in range(ARGS.steps):
                    started = time.perf_counter()
                    step()
                    times[impl].append(time.perf_counter() - started)
        med = {impl: 1e3 * float(np.median(t)) for impl, t in times.items()}
        memory = {impl: "-" if ARGS.no_memory else f"{peak_memory(name, impl):.0f}" for impl in steps}
        print(
            f"| {name}: {NETS[name][1]} | {NETS[name][0]} | {med['funcnn']:.1f} | {med['torch']:.1f} | "
            f"{med['funcnn'] / med['torch']:.2f} | {memory['funcnn']} | {memory['torch']} |"
        )


if __name__ == "__main__":
    main()
