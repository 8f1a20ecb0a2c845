"""The main job's targets: the default ``funcnn train`` run (accuracy and wall time from a fresh
process), and funcnn's time per epoch against PyTorch on the same net, data, order and optimizer.

    python benchmarks/bench_train.py [--epochs 15] [--seeds 0 1 2]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np


def funcnn_run(seed: int, epochs: int) -> tuple[float, float, float]:
    """(wall seconds of a fresh ``python -m funcnn train``, test accuracy, seconds per epoch)."""
    with tempfile.TemporaryDirectory() as out:
        started = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "funcnn", "train", "--seed", str(seed), "--epochs", str(epochs), "--out", out],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        wall = time.perf_counter() - started
        summary = json.load(open(os.path.join(out, "history.json")))
    return wall, summary["test_acc"], float(np.median(summary["history"]["epoch_seconds"]))


def torch_run(
    seed: int, epochs: int, batch_size: int = 50, lr: float = 2e-3, decay: float = 0.9
) -> tuple[float, float, float]:
    """The same convnet in PyTorch: (seconds in all, test accuracy, seconds per epoch)."""
    import torch
    from torch import nn

    from funcnn.data import load_digits

    torch.manual_seed(seed)
    d = load_digits(np.float32)
    model = nn.Sequential(
        nn.Conv2d(1, 32, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(32 * 4 * 4, 100),
        nn.ReLU(),
        nn.Linear(100, 10),
    )
    for m in model:
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
            nn.init.zeros_(m.bias)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=decay)
    x, y = torch.from_numpy(d.train.x), torch.from_numpy(d.train.y)
    n, per_epoch, started = len(x), [], time.perf_counter()
    for epoch in range(1, epochs + 1):
        t0 = time.perf_counter()
        order = torch.from_numpy(np.random.default_rng([seed, epoch]).permutation(n))
        for i in range(0, n, batch_size):
            batch = order[i : i + batch_size]
            opt.zero_grad()
            nn.functional.cross_entropy(model(x[batch]), y[batch]).backward()
            opt.step()
        sched.step()
        with torch.no_grad():  # the same per-epoch evaluation funcnn's fit does
            model(x[:1000]).argmax(1)
            model(torch.from_numpy(d.val.x)).argmax(1)
        per_epoch.append(time.perf_counter() - t0)
    with torch.no_grad():
        test_acc = float((model(torch.from_numpy(d.test.x)).argmax(1).numpy() == d.test.y).mean())
    return time.perf_counter() - started, test_acc, float(np.median(per_epoch))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    args = parser.parse_args()
    try:
        import torch

        torch.set_num_threads(os.cpu_count() or 1)
        peer = f"PyTorch {torch.__version__} ({torch.get_num_threads()} threads)"
    except ImportError:
        torch = None
        peer = "PyTorch not installed"
    print(
        f"three-layer convnet (conv 32x3x3 - relu - pool - affine 100 - relu - affine 10) on the bundled digits, "
        f"adam 2e-3 x0.9/epoch, batch 50, {args.epochs} epochs; {os.cpu_count()} cores; peer: {peer}\n"
    )
    print(
        f"{'seed':>4}  {'funcnn wall s':>13}  {'funcnn test acc':>15}  {'funcnn s/epoch':>14}  "
        f"{'torch test acc':>14}  {'torch s/epoch':>13}  {'ratio':>6}"
    )
    for seed in args.seeds:
        wall, acc, per_epoch = funcnn_run(seed, args.epochs)
        row = f"{seed:>4}  {wall:13.1f}  {acc:15.4f}  {per_epoch:14.3f}"
        if torch is not None:
            _, t_acc, t_epoch = torch_run(seed, args.epochs)
            row += f"  {t_acc:14.4f}  {t_epoch:13.3f}  {per_epoch / t_epoch:6.2f}"
        print(row, flush=True)
    print("\nwall s: a fresh `python -m funcnn train` process, start to end (import, data, training, test, files).")
    print("ratio: funcnn seconds per epoch / PyTorch seconds per epoch (medians over epochs).")


if __name__ == "__main__":
    main()
