"""The float32 conv rows of bench_layers.py with funcnn's register tiles (16 lanes, 8 lanes) and without
(columns and BLAS, Winograd), and PyTorch, interleaved call by call in one process so that a shared
machine's load falls on all of them alike: median ms of the per-round medians, [least-largest].

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/bench_conv_tiles.py --rounds 7
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from machine import header_lines, sgemm_gflops, spread
from memory_probe import CONV_SHAPES

import funcnn as fn
from funcnn.layers._conv_direct import set_tile_lanes

MODES = {"tiles-16": 16, "tiles-8": 8, "columns": 0}


def _funcnn_calls(layer, params, x, dy, lanes):  # noqa: ANN001, ANN202
    def forward() -> object:
        set_tile_lanes(lanes)
        return layer(params, x)

    def backward() -> object:
        set_tile_lanes(lanes)
        return layer(params, x)[1](dy)

    return forward, backward


def _torch_calls(torch, F, x, w, dy, stride, pad):  # noqa: ANN001, ANN202, N803
    tx, tw, tdy = torch.from_numpy(x).requires_grad_(), torch.from_numpy(w).requires_grad_(), torch.from_numpy(dy)

    def forward() -> object:
        with torch.no_grad():
            return F.conv2d(tx, tw, None, stride, pad)

    def backward() -> object:
        return torch.autograd.grad(F.conv2d(tx, tw, None, stride, pad), (tx, tw), tdy)

    return forward, backward


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--no-torch", action="store_true")
    args = parser.parse_args()
    torch = None
    if not args.no_torch:
        try:
            import torch
            import torch.nn.functional as F  # noqa: N812
        except ImportError:
            torch = None
    print("\n".join(header_lines(sgemm_gflops())))
    print("| shape | op | " + " | ".join(list(MODES) + (["torch"] if torch else [])) + " | tiles-16 / columns |")
    print("|---" * (4 + len(MODES) + bool(torch)) + "|")
    for key, (xs, ws, stride, pad) in CONV_SHAPES.items():
        rng = np.random.default_rng(0)
        x = rng.standard_normal(xs).astype(np.float32)
        w = (rng.standard_normal(ws) / np.sqrt(np.prod(ws[1:]))).astype(np.float32)
        params, layer = {"w": w, "b": np.zeros(ws[0], np.float32)}, fn.conv(stride=stride, pad=pad)
        y, _ = layer(params, x)
        dy = rng.standard_normal(y.shape).astype(np.float32)
        calls = {mode: _funcnn_calls(layer, params, x, dy, lanes) for mode, lanes in MODES.items()}
        if torch is not None:
            calls["torch"] = _torch_calls(torch, F, x, w, dy, stride, pad)
        rounds: dict[tuple[str, str], list[float]] = {}
        for _ in range(args.rounds):
            for name, (forward, backward) in calls.items():
                for op, call in (("fwd", forward), ("fwd+bwd", backward)):
                    call()
                    times = []
                    for _ in range(args.repeats):
                        start = time.perf_counter()
                        call()
                        times.append(time.perf_counter() - start)
                    rounds.setdefault((name, op), []).append(float(np.median(times)) * 1e3)
        set_tile_lanes(None)
        for op in ("fwd", "fwd+bwd"):
            cells = [f"{np.median(rounds[(name, op)]):.2f} [{spread(rounds[(name, op)])}]" for name in calls]
            ratio = np.median(rounds[("tiles-16", op)]) / np.median(rounds[("columns", op)])
            print(f"| ({key}) x{xs} w{ws} s{stride} p{pad} | {op} | " + " | ".join(cells) + f" | {ratio:.2f} |")


if __name__ == "__main__":
    main()
