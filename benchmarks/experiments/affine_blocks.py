"""Interleaved: products of affine's shapes, bare 2-thread BLAS vs funcnn's row split vs variants."""

import os
import sys
import time

import numpy as np

import funcnn as fn
from funcnn.kernels import threads as th

fn.keep_freed_memory()


def split_dim(a, b, min_block, max_blocks):
    """Split the larger of M and N into blocks of >= min_block (boundaries from the shape only)."""
    m, n = a.shape[0], b.shape[1]
    out = np.empty((m, n), np.result_type(a, b))
    dim = m if m >= n else n
    count = max(1, min(max_blocks, dim // min_block))
    bounds = [round(i * dim / count) for i in range(count + 1)]
    blocks = [slice(bounds[i], bounds[i + 1]) for i in range(count)]
    if m >= n:

        def task(parts):
            for rows in parts:
                np.matmul(a[rows], b, out=out[rows])
            return []
    else:

        def task(parts):
            for cols in parts:
                np.matmul(a, b[:, cols], out=out[:, cols])
            return []

    th.map_groups(task, blocks)
    return out


def rows64(a, b):  # the old matmul_rows: 64-row blocks whatever the shape
    out = np.empty((a.shape[0], b.shape[1]), np.result_type(a, b))
    blocks = [slice(s, min(s + 64, a.shape[0])) for s in range(0, a.shape[0], 64)]

    def task(parts):
        for rows in parts:
            np.matmul(a[rows], b, out=out[rows])
        return []

    th.map_groups(task, blocks)
    return out


SHAPES = [  # (M, K, N) of the products
    ("fwd 100x3072x100", (100, 3072), (3072, 100)),
    ("dw 3072x100x100 (x.T@dy)", (3072, 100), (100, 100)),
    ("dx 100x100x3072", (100, 100), (100, 3072)),
    ("fwd 512x4096x1024", (512, 4096), (4096, 1024)),
    ("dw 4096x512x1024", (4096, 512), (512, 1024)),
    ("dx 512x1024x4096", (512, 1024), (1024, 4096)),
    ("course fwd 50x8192x100", (50, 8192), (8192, 100)),
    ("course dw 8192x50x100", (8192, 50), (50, 100)),
    ("course dx 50x100x8192", (50, 100), (100, 8192)),
]
dtype = np.dtype(sys.argv[1] if len(sys.argv) > 1 else "float32")
rng = np.random.default_rng(0)
variants = {
    "bare": lambda a, b: a @ b,
    "rows64": rows64,
    "new": th.matmul_split,
    "dim256x8": lambda a, b: split_dim(a, b, 256, 8),
    "dim512x4": lambda a, b: split_dim(a, b, 512, 4),
}
print(f"uptime {os.getloadavg()}, {dtype}")
for label, sa, sb in SHAPES:
    a, b = rng.standard_normal(sa).astype(dtype), rng.standard_normal(sb).astype(dtype)
    if label.startswith("dw"):
        a = np.ascontiguousarray(a.T).T  # x.T: a transposed view, as affine hands it
    want = a @ b
    times = {k: [] for k in variants}
    for _ in range(7):
        for k, f in variants.items():
            time.sleep(0.05)
            f(a, b)
            t0 = time.perf_counter()
            reps = 5
            for _ in range(reps):
                got = f(a, b)
            times[k].append((time.perf_counter() - t0) / reps * 1e3)
    assert np.allclose(got, want, rtol=1e-3, atol=1e-2)
    med = {k: np.median(v) for k, v in times.items()}
    print(f"{label:28s} " + "  ".join(f"{k} {med[k]:.3f} ({med[k] / med['bare']:.2f})" for k in variants))
print(f"uptime {os.getloadavg()}")
