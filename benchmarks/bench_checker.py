"""How long check_vjp takes on the course's whole-network checks, and what it checks there.

The course checks its ThreeLayerConvNet with tiny weights (scale 1e-3) on random input: many ReLU
inputs and pool windows then sit within a finite-difference step of a kink. Prints, per problem and
mode, the time, each leaf's status and how many elements were left out near a kink.

    python benchmarks/bench_checker.py
"""

from __future__ import annotations

import sys
import time
import warnings
from pathlib import Path

import numpy as np

import funcnn as fn
from funcnn.data import load_digits

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import instruction_set  # noqa: E402


def course_check(net: fn.Layer, shape: tuple[int, ...], weight_scale: float | str, x: np.ndarray | None = None):
    """The course's gradient check of a net: N = 2, random labels, reg 0, the loss as the last layer."""
    rng = np.random.default_rng(231)
    x = rng.standard_normal((2, *shape)) if x is None else x
    _, params = fn.init_params(net, rng, shape, np.float64, weight_scale)
    return fn.chain(net, fn.loss_layer(fn.softmax_loss, rng.integers(0, 10, 2))), (params, ()), x


def main() -> None:
    print(f"instruction set: {instruction_set()}; float64, check_vjp defaults")
    course = fn.nets.three_layer_convnet(num_filters=3, filter_size=3, hidden_dim=7)
    issue_net = fn.chain(fn.nets.three_layer_convnet(8, 3, 64).children[0], fn.dense_relu(64), fn.dense(10))
    digits = load_digits(np.float64).train.x[:2]
    problems = [
        *(
            (f"course ThreeLayerConvNet 3x16x16, scale {ws}", course, (3, 16, 16), ws, None)
            for ws in (1e-3, 1e-2, "he")
        ),
        *(
            (f"conv_relu_pool-dense_relu-dense, digits, scale {ws}", issue_net, (1, 8, 8), ws, digits)
            for ws in (1e-2, "he")
        ),
    ]
    warnings.simplefilter("ignore", fn.NonDifferentiableWarning)
    fn.check_vjp(*course_check(course, (3, 16, 16), 1e-3))  # compile the kernels first
    print("| problem | mode | seconds | leaves ok / checked | elements left out near a kink |")
    print("|---|---|---|---|---|")
    for title, net, shape, ws, x in problems:
        for mode in ("fast", "full"):
            start = time.perf_counter()
            report = fn.check_vjp(*course_check(net, shape, ws, x), mode=mode)
            seconds = time.perf_counter() - start
            ok = sum(leaf.status == "ok" for leaf in report.leaves)
            left = sum(leaf.n_left_out for leaf in report.leaves)
            print(f"| {title} | {mode} | {seconds:.2f} | {ok} / {len(report.leaves)} | {left} |")


if __name__ == "__main__":
    main()
