"""The two nets of the step benchmarks (bench_step.py, bench_memory.py), in funcnn and in PyTorch,
and their CIFAR-shaped float32 data."""

from __future__ import annotations

import numpy as np

import funcnn as fn

# name -> (batch size, what the net is)
NETS = {
    "course": (50, "conv 32 7x7 pad 3 - relu - pool 2x2 - affine 100 - relu - affine 10"),
    "vgg": (64, "conv 64 3x3 - relu - conv 64 3x3 - relu - pool - conv 128 3x3 - relu - pool - affine 10"),
}


def funcnn_net(name: str) -> fn.Layer:
    if name == "course":
        return fn.nets.three_layer_convnet(num_filters=32, filter_size=7, hidden_dim=100)
    return fn.chain(
        fn.conv_relu(stride=1, pad=1, filters=64, kernel_size=3),
        fn.conv_relu(stride=1, pad=1, filters=64, kernel_size=3),
        fn.max_pool(),
        fn.conv_relu(stride=1, pad=1, filters=128, kernel_size=3),
        fn.max_pool(),
        fn.dense(10),
    )


def torch_model(name: str):
    from torch import nn

    if name == "course":
        layers = [
            nn.Conv2d(3, 32, 7, padding=3),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(32 * 16 * 16, 100),
            nn.ReLU(),
            nn.Linear(100, 10),
        ]
    else:
        layers = [
            nn.Conv2d(3, 64, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(64, 64, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(64, 128, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(128 * 8 * 8, 10),
        ]
    return nn.Sequential(*layers)


def data(batch: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    return rng.standard_normal((batch, 3, 32, 32)).astype(np.float32), rng.integers(0, 10, batch)


def status_kib(field: str) -> int:
    """A field of /proc/self/status in KiB (VmRSS, VmHWM); Linux only."""
    with open("/proc/self/status") as status:
        line = next(line for line in status if line.startswith(field + ":"))
    return int(line.split()[1])
