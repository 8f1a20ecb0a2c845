"""LSTM and GRU forward + backward, float32, funcnn against torch.nn.LSTM / nn.GRU on CPU, in one process.

    python benchmarks/bench_rnn.py                  # N=32, T=64, D=64, H=256 (the issue's sizes)
    python benchmarks/bench_rnn.py --threads 1      # one BLAS / torch thread (default: all cores)

Checks first that both give the same h and dwh, then times rounds of (warm-up, ``repeats`` timed
forward-backward pairs) per implementation, alternating between them, and prints medians and the
ratio funcnn / torch (the goal: <= 1.0), and for the LSTM the time of its matrix products alone (the
floor BLAS sets), on the clock and in CPU time (``time.process_time``, of all
the process's threads: with one thread, what a busy machine's other processes change least).
Unset OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE for this command only when they are set:
``env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/bench_rnn.py``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    defaults = (("n", 32), ("t", 64), ("d", 64), ("hidden", 256), ("rounds", 3), ("repeats", 5))
    for name, default in (*defaults, ("threads", os.cpu_count() or 1)):
        parser.add_argument(f"--{name}", type=int, default=default)
    return parser.parse_args()


ARGS = parse_args()
for variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ[variable] = str(ARGS.threads)  # before NumPy and torch read them

import numpy as np
from cpu_info import isa

import funcnn as fn


def torch_pair(torch, kind: str, p: dict, x: np.ndarray, h0: np.ndarray):
    """A torch module holding funcnn's weights (torch's LSTM gate order i, f, g, o), and its step."""
    n, t, d = x.shape
    h = h0.shape[1]
    module = (torch.nn.LSTM if kind == "lstm" else torch.nn.GRU)(d, h, batch_first=True)
    with torch.no_grad():
        if kind == "lstm":
            order = np.r_[0 : 2 * h, 3 * h : 4 * h, 2 * h : 3 * h]  # course i, f, o, g -> torch i, f, g, o
            module.weight_ih_l0.copy_(torch.from_numpy(p["wx"][:, order].T.copy()))
            module.weight_hh_l0.copy_(torch.from_numpy(p["wh"][:, order].T.copy()))
            module.bias_ih_l0.copy_(torch.from_numpy(p["b"][order]))
            module.bias_hh_l0.zero_()
        else:
            module.weight_ih_l0.copy_(torch.from_numpy(p["wx"].T.copy()))
            module.weight_hh_l0.copy_(torch.from_numpy(p["wh"].T.copy()))
            module.bias_ih_l0.copy_(torch.from_numpy(p["bx"]))
            module.bias_hh_l0.copy_(torch.from_numpy(p["bh"]))
    tx, th0 = torch.from_numpy(x).requires_grad_(), torch.from_numpy(h0[None].copy()).requires_grad_()
    state = (th0, torch.zeros_like(th0)) if kind == "lstm" else th0

    def step(dh: np.ndarray):
        module.zero_grad()
        out = module(tx, state)[0]
        out.backward(torch.from_numpy(dh))
        return out.detach().numpy(), module.weight_hh_l0.grad.numpy()

    return step


def lstm_products(p: dict, x: np.ndarray, h0: np.ndarray):
    """A step doing only the matrix products of funcnn's LSTM forward + backward, in the orders and layouts it
    uses (per step ``wh.T @ h.T`` and ``wh @ da.T``, then ``dwh``, the input projection, ``[x | 1].T @ da``
    and ``dx``) on stand-in values: the floor that BLAS sets under the whole layer."""
    n, t, d = x.shape
    wh, wx = p["wh"], p["wx"]
    hidden = wh.shape[0]
    rows = np.ascontiguousarray(x.transpose(1, 0, 2)).reshape(t * n, d)
    ones = np.concatenate([rows, np.ones((t * n, 1), x.dtype)], axis=1)
    wb = np.vstack([wx, p["b"]])
    hs = np.tile(h0, (t, 1))
    da = np.ones((t * n, 4 * hidden), x.dtype)

    def step(dh: np.ndarray):
        wh_t = np.ascontiguousarray(wh.T)
        projected = ones @ wb
        for s in range(t):
            np.matmul(wh_t, hs[s * n : (s + 1) * n].T)
        for s in range(t):
            np.matmul(wh, da[s * n : (s + 1) * n].T)
        return projected, hs.T @ da, ones.T @ da, da @ wx.T

    return step


def main() -> None:
    args = ARGS
    import torch

    torch.set_num_threads(args.threads)

    print(f"CPU: {isa()}; load average {os.getloadavg()[0]:.1f} (other processes share the cores)")
    print(f"torch {torch.__version__} (CPU capability {torch.backends.cpu.get_cpu_capability()}, "
          f"{torch.get_num_threads()} threads); numpy {np.__version__}; os.cpu_count() {os.cpu_count()}")  # fmt: skip
    print(f"float32, N={args.n}, T={args.t}, D={args.d}, H={args.hidden}; median of {args.rounds}x{args.repeats}")
    rng = np.random.default_rng(0)
    x = rng.standard_normal((args.n, args.t, args.d)).astype(np.float32)
    h0 = rng.standard_normal((args.n, args.hidden)).astype(np.float32)
    dh = rng.standard_normal((args.n, args.t, args.hidden)).astype(np.float32)
    for kind, sized, layer in (("lstm", fn.lstm_layer, fn.lstm), ("gru", fn.gru_layer, fn.gru)):
        _, p = fn.init_params(sized(args.hidden), rng, ((args.t, args.d), (args.hidden,)), np.float32)
        p = {k: v + 0.1 * rng.standard_normal(v.shape).astype(np.float32) for k, v in p.items()}

        def funcnn_step(dh: np.ndarray, p=p, layer=layer):
            h, vjp = layer(p, (x, h0))
            return h, vjp(dh)[0]["wh"]

        torch_step = torch_pair(torch, kind, p, x, h0)
        h, dwh = funcnn_step(dh)
        th, tdwh = torch_step(dh)
        if kind == "lstm":
            hid = args.hidden
            tdwh = tdwh.T[:, np.r_[0 : 2 * hid, 3 * hid : 4 * hid, 2 * hid : 3 * hid]]
        else:
            tdwh = tdwh.T
        print(f"{kind}: max |h - torch h| {np.abs(h - th).max():.2g}, "
              f"max |dwh - torch| / max |dwh| {np.abs(dwh - tdwh).max() / np.abs(tdwh).max():.2g}")  # fmt: skip
        steps = {"funcnn": funcnn_step, "torch": torch_step}
        if kind == "lstm":
            steps["products alone"] = lstm_products(p, x, h0)
        times: dict[str, list[float]] = {name: [] for name in steps}
        cpu: dict[str, list[float]] = {name: [] for name in steps}
        for _ in range(args.rounds):
            for name, step in steps.items():
                step(dh)  # warm-up
                for _ in range(args.repeats):
                    start, start_cpu = time.perf_counter(), time.process_time()
                    step(dh)
                    times[name].append((time.perf_counter() - start) * 1e3)
                    cpu[name].append((time.process_time() - start_cpu) * 1e3)
        ours, theirs = statistics.median(times["funcnn"]), statistics.median(times["torch"])
        ours_cpu, theirs_cpu = statistics.median(cpu["funcnn"]), statistics.median(cpu["torch"])
        print(f"{kind}: funcnn {ours:.1f} ms, torch {theirs:.1f} ms, funcnn/torch {ours / theirs:.2f}; CPU time "
              f"funcnn {ours_cpu:.1f} ms, torch {theirs_cpu:.1f} ms, "
              f"funcnn/torch {ours_cpu / theirs_cpu:.2f}")  # fmt: skip
        if kind == "lstm":
            alone, alone_cpu = statistics.median(times["products alone"]), statistics.median(cpu["products alone"])
            print(f"{kind}: its BLAS products alone {alone:.1f} ms, /torch {alone / theirs:.2f}; CPU time "
                  f"{alone_cpu:.1f} ms, /torch {alone_cpu / theirs_cpu:.2f}")  # fmt: skip


if __name__ == "__main__":
    main()
