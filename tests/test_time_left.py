"""The time left after fit's first epoch does not count the run's first step as a typical one: that step
also compiles Numba's kernels (seconds the first time) and the epochs after it do not repeat it. A fake
clock, moved only by the network, makes the first step 100 s long and every forward pass 1 s."""

import re
import time

import numpy as np

import funcnn as fn


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_the_first_epochs_time_left_leaves_out_the_first_steps_compilation(monkeypatch):
    clock, compiled = Clock(), []
    monkeypatch.setattr(time, "perf_counter", clock)  # fit and its progress read time.perf_counter()

    def compiling(params, x):
        clock.now += 1.0
        if len(x) == 2 and not compiled:  # the first training step (batches of 2; evaluation sees 1 or 8 at once)
            compiled.append(True)
            clock.now += 100.0
        return x, lambda dy: ((), dy)

    net = fn.chain(fn.layer(compiling, out_shape=lambda shape: shape), fn.dense(3))
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((8, 4)).astype(np.float32), rng.integers(0, 3, 8)
    _, params = fn.init_params(net, rng, (4,))
    lines: list[str] = []
    result = fn.fit(net, params, (x, y), (x[:3], y[:3]), fn.optim.sgd(1e-2), epochs=3, batch_size=2, log=lines.append)
    first = result.history.epoch_seconds[0]
    assert first > 100  # as measured: the epoch's own time keeps its compilation
    # 4 steps: the first 101 s, the others 1 s each; counted as 1 s, the epoch would have taken first - 100
    ends = [line for line in lines if " left " in line]  # the epochs' lines, after the steps' (every 10 s)
    left = re.search(r"^epoch 1/3 .* left (\d+):(\d\d)$", ends[0])
    assert left is not None and tuple(map(int, left.groups())) == divmod(round(2 * (first - 100)), 60), ends[0]
