"""Peak memory of one float32 training step (forward, backward, Adam update) of the course's convnet
and of the VGG-style net, each in fresh processes: funcnn, funcnn with ``fn.remat`` on every conv
block, and PyTorch (CPU); then the step time of funcnn with and without remat.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/bench_memory.py
    python benchmarks/bench_memory.py --processes 3 --rounds 5 --steps 10 --nets course,vgg
    python benchmarks/bench_memory.py --no-memory --rounds 15          # only the step times

Method (Linux): every measurement runs in a process of its own, started with glibc's mmap threshold
lowered to 64 KiB (``MALLOC_MMAP_THRESHOLD_=65536``) so that every array of a step is mapped on its
own and unmapped when freed: the resident size then follows the live arrays. Two warm-up steps
compile the kernels, load the libraries and make the optimizer's state; then the peak resident size
(VmHWM) is reset to the current one through ``/proc/self/clear_refs`` and one step runs. The figure
is VmHWM after the step minus VmRSS before it: what the step itself adds at its peak. The table
gives the least of ``--processes`` processes and the largest in brackets. Step times: funcnn with and
without remat interleaved in one process (rounds of ``--steps`` steps each, after a warm-up step),
median and the 10th-90th percentiles (and the median of the process's CPU time a step, all threads), with
``funcnn.keep_freed_memory()`` as ``fit`` calls it.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

IMPLS = ("funcnn", "funcnn+remat", "torch")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--processes", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--nets", default="course,vgg")
    parser.add_argument("--no-memory", action="store_true", help="only the step times")
    parser.add_argument("--memory-of", help=argparse.SUPPRESS)  # "<net>:<impl>", run in a subprocess
    return parser.parse_args()


ARGS = parse_args()
for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ[var] = str(ARGS.threads)

import numpy as np
from step_nets import NETS, data, funcnn_net, status_kib, torch_model

import funcnn as fn


def _has_conv(layer: fn.Layer) -> bool:
    return layer.op == "conv" or any(_has_conv(child) for child in layer.children)


def remat_every_conv_block(net: fn.Layer) -> fn.Layer:
    """``net`` (a chain) with each child that holds a conv wrapped in ``fn.remat``: same params."""
    return fn.chain(*(fn.remat(child) if _has_conv(child) else child for child in net.children))


def funcnn_step(name: str, remat: bool):
    batch, _ = NETS[name]
    net = funcnn_net(name)
    net = remat_every_conv_block(net) if remat else net
    _, params = fn.init_params(net, np.random.default_rng(0), (3, 32, 32), dtype=np.float32)
    opt = fn.optim.adam(1e-3)
    objective = fn.value_and_grad(net)
    x, y = data(batch)
    carry = [params, opt.init(params)]

    def step() -> float:
        value, grads = objective(carry[0], x, y)
        carry[0], carry[1] = opt.update(grads, carry[1], carry[0])
        return float(value)

    return step


def torch_step(name: str):
    import torch

    torch.set_num_threads(ARGS.threads)
    batch, _ = NETS[name]
    torch.manual_seed(0)
    model = torch_model(name)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    x, y = (torch.from_numpy(a) for a in data(batch))

    def step() -> float:
        opt.zero_grad(set_to_none=True)
        loss = torch.nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        return float(loss.item())

    return step


def make_step(name: str, impl: str):
    return torch_step(name) if impl == "torch" else funcnn_step(name, impl == "funcnn+remat")


def measure_here(spec: str) -> None:
    """Print the MiB one step adds to the process at its peak, after two warm-up steps."""
    name, impl = spec.split(":")
    step = make_step(name, impl)
    step()
    step()
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # resets VmHWM to the current VmRSS
    before = status_kib("VmRSS")
    step()
    print((status_kib("VmHWM") - before) / 1024)


def peak_mib(name: str, impl: str) -> float:
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536"}
    command = [sys.executable, __file__, "--threads", str(ARGS.threads), "--memory-of", f"{name}:{impl}"]
    out = subprocess.run(command, check=True, capture_output=True, text=True, env=env).stdout
    return float(out.split()[-1])


def step_times(name: str) -> dict[str, tuple[list[float], list[float]]]:
    """Milliseconds per step (wall clock, and the process's CPU time over all its threads) of funcnn with
    and without remat, interleaved round by round."""
    steps = {impl: make_step(name, impl) for impl in IMPLS[:2]}
    times: dict[str, tuple[list[float], list[float]]] = {impl: ([], []) for impl in steps}
    for _ in range(ARGS.rounds):
        for impl, step in steps.items():
            time.sleep(0.3)  # idle BLAS threads spin for up to about 0.1 s
            step()
            for _ in range(ARGS.steps):
                started, cpu = time.perf_counter(), time.process_time()
                step()
                times[impl][0].append(1e3 * (time.perf_counter() - started))
                times[impl][1].append(1e3 * (time.process_time() - cpu))
    return times


def main() -> None:
    if ARGS.memory_of:
        measure_here(ARGS.memory_of)
        return
    import torch

    print(
        f"threads {ARGS.threads}, numpy {np.__version__}, torch {torch.__version__}, {os.cpu_count()} cores; "
        f"peak MiB a step adds: least of {ARGS.processes} fresh processes [largest]"
    )
    print("| net (float32) | batch | funcnn | funcnn + remat | torch | funcnn / torch | remat / torch |")
    print("|---|---|---|---|---|---|---|")
    for name in [] if ARGS.no_memory else ARGS.nets.split(","):
        peaks = {impl: [peak_mib(name, impl) for _ in range(ARGS.processes)] for impl in IMPLS}
        low = {impl: min(p) for impl, p in peaks.items()}
        cells = " | ".join(f"{low[impl]:.1f} [{max(peaks[impl]):.1f}]" for impl in IMPLS)
        print(
            f"| {name} | {NETS[name][0]} | {cells} | {low['funcnn'] / low['torch']:.2f} | "
            f"{low['funcnn+remat'] / low['torch']:.2f} |"
        )
    fn.keep_freed_memory()  # as fit does, for the step times
    print(f"\nms per step, {ARGS.rounds} rounds of {ARGS.steps} steps: median [10th-90th percentile]; CPU: the "
          "process's CPU time (all threads), steadier than the wall clock on a shared machine")  # fmt: skip
    print("| net | funcnn | funcnn + remat | ratio of medians | CPU funcnn | CPU remat | CPU ratio |")
    print("|---|---|---|---|---|---|---|")
    for name in ARGS.nets.split(","):
        times = step_times(name)
        cells = " | ".join(
            f"{np.median(t):.1f} [{np.percentile(t, 10):.1f}-{np.percentile(t, 90):.1f}]" for t, _ in times.values()
        )
        ratio = np.median(times["funcnn+remat"][0]) / np.median(times["funcnn"][0])
        cpu = [np.median(c) for _, c in times.values()]
        print(f"| {name} | {cells} | {ratio:.2f} | {cpu[0]:.1f} | {cpu[1]:.1f} | {cpu[1] / cpu[0]:.2f} |")


if __name__ == "__main__":
    main()
