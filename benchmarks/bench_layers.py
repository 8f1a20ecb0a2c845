"""Time funcnn's conv, max-pool and affine layers against PyTorch (CPU) and JAX when they are
installed, and against a plain-NumPy im2col baseline (``im2col_baseline.py``) always, all in one
process; then start-up times and peak memory in fresh subprocesses.

    python benchmarks/bench_layers.py              # the full run (about 5 minutes on 2 cores)
    python benchmarks/bench_layers.py --quick      # fewer repeats
    python benchmarks/bench_layers.py --threads 1  # one thread for Numba, BLAS, torch and XLA
    python benchmarks/bench_layers.py --load       # a CPU-bound process on every core while it measures

The header prints the CPU's instruction set and the machine's own sgemm GFLOP/s, measured in this run
(under the same load); each conv row gives funcnn's GFLOP/s as a fraction of it and the spread of
funcnn's per-round medians (least-largest, ms).

Like ``fit``, it first calls ``funcnn.keep_freed_memory()`` (process-wide, so every peer runs under it;
``--malloc-as-is`` leaves malloc alone). Start-up and memory run in fresh subprocesses, as they are.

Every time is the median of ``rounds * repeats`` calls: each round runs every implementation in
turn (a pause, a warm-up forward and backward, then ``repeats`` timed forward-backward pairs), so
noise from other processes on the machine is spread over all of them. "fwd+bwd" is the sum of the
two medians.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

POOL_CASES = {"2x2s2": (2, 2, 2), "3x3s2": (3, 3, 2)}
POOL_X = (100, 3, 32, 32)
# The columns of the conv and max-pool tables.
PEER_HEADER = [
    "shape",
    "dtype",
    "op",
    "funcnn ms",
    "torch ms",
    "jax ms",
    "im2col ms",
    "GFLOP/s",
    "of sgemm",
    "funcnn rounds",
    "vs fastest",
    "im2col/funcnn",
]
AFFINE_SHAPES = [(100, 3072, 100), (512, 4096, 1024)]  # N, D, M


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="1 round of 3 repeats, and no cold-compile run")
    parser.add_argument(
        "--threads", type=int, default=os.cpu_count(), help="threads for every library (default: all cores)"
    )
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--sections", default="conv,pool,affine,startup,memory")
    parser.add_argument("--no-torch", action="store_true")
    parser.add_argument("--no-jax", action="store_true")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--load", action="store_true", help="run a CPU-bound process on every core while timing")
    parser.add_argument(
        "--malloc-as-is",
        action="store_true",
        help="do not call funcnn.keep_freed_memory() (fit and the funcnn command do; it is process-wide)",
    )
    args = parser.parse_args()
    args.rounds = args.rounds or (1 if args.quick else 3)
    args.repeats = args.repeats or (3 if args.quick else 5)
    args.sections = set(args.sections.split(","))
    return args


def set_thread_env(threads: int) -> None:
    """Before NumPy, Numba, torch or JAX are imported: their pools read these once."""
    for var in ("NUMBA_NUM_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(threads)
    if threads == 1:
        os.environ["XLA_FLAGS"] = (
            os.environ.get("XLA_FLAGS", "") + " --xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
        ).strip()


ARGS = parse_args()
set_thread_env(ARGS.threads)
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(HERE))

import im2col_baseline as base
import numpy as np
from machine import header_lines, maybe_loaded, sgemm_gflops, spread
from memory_probe import CONV_SHAPES

import funcnn as fn

try:
    import torch
    import torch.nn.functional as F
except ImportError:
    torch = None
try:
    import jax

    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp
except ImportError:
    jax = None
if ARGS.no_torch:
    torch = None
if ARGS.no_jax:
    jax = None
if torch is not None:
    torch.set_num_threads(ARGS.threads)

PEERS = ["torch", "jax", "im2col"]
IDLE = 0.3  # seconds: other libraries' idle threads spin for up to about 0.1 s
RESULTS: dict[str, list] = {}
ROUNDS: dict[tuple[str, str], list[float]] = {}  # (name, op) -> per-round medians of the last measure()
SGEMM: list[float] = []  # the machine's sgemm GFLOP/s, measured at the start of the run


class CPULoad:
    """CPU time that other processes used while a section ran, in cores (from /proc/stat)."""

    def __enter__(self):
        self.start = self._busy(), os.times(), time.perf_counter()
        return self

    def __exit__(self, *exc):
        busy0, own0, t0 = self.start
        busy1, own1, t1 = self._busy(), os.times(), time.perf_counter()
        own = sum(own1[:4]) - sum(own0[:4])  # this process and its finished subprocesses
        self.other = None if busy0 is None else max(0.0, (busy1 - busy0) - own) / (t1 - t0)

    @staticmethod
    def _busy():
        try:
            fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
        except OSError:
            return None
        values = [int(v) for v in fields]
        return (sum(values[:8]) - values[3] - values[4]) / os.sysconf("SC_CLK_TCK")


def measure(impls: dict) -> dict:
    """``impls``: name -> (forward, backward); returns (name, "fwd" | "bwd") -> median ms.

    Forward and backward calls alternate, as in training: a loop of forward calls alone would
    also time glibc handing the freed arrays back to the OS and faulting them in again."""
    samples = {(name, op): [] for name in impls for op in ("fwd", "bwd")}
    ROUNDS.clear()
    for _ in range(ARGS.rounds):
        for name, calls in impls.items():
            time.sleep(IDLE)  # lets the other libraries' idle threads stop spinning
            for call in calls:
                call()
            start_of_round = {key: len(v) for key, v in samples.items()}
            for _ in range(ARGS.repeats):
                for op, call in zip(("fwd", "bwd"), calls):
                    start = time.perf_counter()
                    call()
                    samples[(name, op)].append((time.perf_counter() - start) * 1e3)
            for op in ("fwd", "bwd"):
                this_round = samples[(name, op)][start_of_round[(name, op)] :]
                ROUNDS.setdefault((name, op), []).append(float(np.median(this_round)))
    return {key: float(np.median(v)) for key, v in samples.items()}


def round_spread(name: str, op: str) -> str:
    """The least and largest per-round median of ``op`` (fwd+bwd: of the per-round sums), ms."""
    if op == "fwd+bwd":
        return spread([f + b for f, b in zip(ROUNDS[(name, "fwd")], ROUNDS[(name, "bwd")])])
    return spread(ROUNDS[(name, op)])


def table(title: str, header: list[str], rows: list[list], note: str = "") -> None:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    print(f"\n{title}")
    print("  ".join(h.ljust(w) for h, w in zip(header, widths)))
    for row in rows:
        print("  ".join(str(c).ljust(w) for c, w in zip(row, widths)))
    if note:
        print(note)
    RESULTS[title] = [dict(zip(header, row)) for row in rows]


def ms(v) -> str:
    return "-" if v is None else (f"{v:.3f}" if v < 1 else f"{v:.2f}" if v < 100 else f"{v:.1f}")


def ratio(a, b) -> str:
    return "-" if a is None or b is None else f"{a / b:.2f}"


def check(name: str, got, want, dtype) -> None:
    tol = 2e-3 if dtype == np.float32 else 1e-8
    for g, w in zip(got, want):
        g = np.asarray(g)
        if not np.allclose(g, w, rtol=tol, atol=tol * max(1.0, float(np.abs(w).max()))):
            raise AssertionError(f"{name} disagrees with funcnn (max abs diff {np.abs(g - w).max():.3g})")


def block(tree):
    return jax.block_until_ready(tree)


# ---------------------------------------------------------------- conv


def conv_impls(xs, ws, stride, pad, dtype) -> dict:
    """name -> (forward, backward) callables, all on the same data; checked against funcnn first."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal(xs).astype(dtype)
    w = (rng.standard_normal(ws) / np.sqrt(np.prod(ws[1:]))).astype(dtype)
    b = rng.standard_normal(ws[0]).astype(dtype)
    layer, params = fn.conv(stride=stride, pad=pad), {"w": w, "b": b}
    y, vjp = layer(params, x)
    dy = rng.standard_normal(y.shape).astype(dtype)
    dparams, dx = vjp(dy)
    want = (y, dx, dparams["w"], dparams["b"])
    impls = {"funcnn": (lambda: layer(params, x), lambda: vjp(dy))}

    if torch is not None:
        tx, tw, tb = (torch.from_numpy(a).requires_grad_() for a in (x, w, b))
        ty = F.conv2d(tx, tw, tb, stride, pad)
        tdy = torch.from_numpy(dy)

        def torch_fwd():
            with torch.no_grad():
                return F.conv2d(tx, tw, tb, stride, pad)

        def torch_bwd():
            return torch.autograd.grad(ty, (tx, tw, tb), tdy, retain_graph=True)

        check("torch", [torch_fwd().numpy(), *(g.numpy() for g in torch_bwd())], want, dtype)
        impls["torch"] = (torch_fwd, torch_bwd)

    if jax is not None:

        def jconv(x, w, b):
            out = jax.lax.conv_general_dilated(
                x, w, (stride, stride), [(pad, pad)] * 2, dimension_numbers=("NCHW", "OIHW", "NCHW")
            )
            return out + b[None, :, None, None]

        jx, jw, jb, jdy = (jnp.asarray(a) for a in (x, w, b, dy))
        jfwd = jax.jit(jconv)
        jbwd = jax.jit(lambda x, w, b, dy: jax.vjp(jconv, x, w, b)[1](dy))
        jax_fwd, jax_bwd = (lambda: block(jfwd(jx, jw, jb))), (lambda: block(jbwd(jx, jw, jb, jdy)))
        check("jax", [np.asarray(jax_fwd()), *(np.asarray(g) for g in jax_bwd())], want, dtype)
        impls["jax"] = (jax_fwd, jax_bwd)

    cache = {}

    def im2col_fwd():
        out, cache["c"] = base.conv_forward(x, w, b, stride, pad)
        return out

    check("im2col", [im2col_fwd(), *base.conv_backward(dy, cache["c"])], want, dtype)
    impls["im2col"] = (im2col_fwd, lambda: base.conv_backward(dy, cache["c"]))
    return impls


def time_of(t: dict, name: str, op: str):
    if op == "fwd+bwd":
        return t[(name, "fwd")] + t[(name, "bwd")] if (name, "fwd") in t else None
    return t.get((name, op))


def bench_conv() -> None:
    rows = []
    for dtype in (np.float32, np.float64):
        for key, (xs, ws, stride, pad) in CONV_SHAPES.items():
            impls = conv_impls(xs, ws, stride, pad, dtype)
            t = measure(impls)
            n, f, k = xs[0], ws[0], int(np.prod(ws[1:]))
            out_h, out_w = (xs[2] + 2 * pad - ws[2]) // stride + 1, (xs[3] + 2 * pad - ws[3]) // stride + 1
            flops = 2 * n * f * k * out_h * out_w
            for op, mult in (("fwd", 1), ("bwd", 2), ("fwd+bwd", 3)):
                ours, peers = time_of(t, "funcnn", op), {p: time_of(t, p, op) for p in PEERS}
                fastest = min(v for v in peers.values() if v is not None)
                shape = f"({key}) x{xs} w{ws} s{stride} p{pad}"
                rows.append(
                    [
                        shape,
                        np.dtype(dtype).name,
                        op,
                        ms(ours),
                        *(ms(peers[p]) for p in PEERS),
                        f"{mult * flops / ours / 1e6:.0f}",
                        f"{mult * flops / ours / 1e6 / SGEMM[0]:.2f}",
                        round_spread("funcnn", op),
                        ratio(ours, fastest),
                        ratio(peers["im2col"], ours),
                    ]
                )
    note = (
        "GFLOP/s: funcnn's, counting 2*N*F*K*P per product (fwd one product, bwd two); of sgemm: that over the\n"
        "machine's sgemm rate in the header; funcnn rounds: least-largest per-round median, ms.\n"
        "vs fastest: funcnn / the fastest of torch, jax, im2col (<1 means funcnn is faster); "
        "im2col/funcnn: how many times faster funcnn is than the im2col baseline."
    )
    table("conv (median ms)", PEER_HEADER, rows, note)
    summary = []
    for dtype in ("float32", "float64", "both"):
        for op in ("fwd", "bwd", "fwd+bwd", "all"):
            sel = [r for r in RESULTS["conv (median ms)"] if op in (r["op"], "all") and dtype in (r["dtype"], "both")]
            ratios = [float(r["vs fastest"]) for r in sel]
            speedups = [float(r["im2col/funcnn"]) for r in sel]
            summary.append(
                [dtype, op, f"{np.exp(np.mean(np.log(ratios))):.2f}", f"{max(ratios):.2f}", f"{min(speedups):.2f}"]
            )
    table(
        "conv summary",
        ["dtype", "op", "geomean vs fastest", "worst vs fastest", "min im2col/funcnn"],
        summary,
        "targets: geomean <= 1.0, worst <= 1.3",
    )


# ---------------------------------------------------------------- max-pool


def pool_impls(ph, pw, stride, dtype) -> dict:
    rng = np.random.default_rng(0)
    x = rng.standard_normal(POOL_X).astype(dtype)
    layer = fn.max_pool(pool_height=ph, pool_width=pw, stride=stride)
    y, vjp = layer((), x)
    dy = rng.standard_normal(y.shape).astype(dtype)
    want = (y, vjp(dy)[1])
    impls = {"funcnn": (lambda: layer((), x), lambda: vjp(dy))}
    if torch is not None:
        tx = torch.from_numpy(x).requires_grad_()
        ty, tdy = F.max_pool2d(tx, (ph, pw), stride), torch.from_numpy(dy)

        def torch_fwd():
            with torch.no_grad():
                return F.max_pool2d(tx, (ph, pw), stride)

        def torch_bwd():
            return torch.autograd.grad(ty, tx, tdy, retain_graph=True)[0]

        check("torch", [torch_fwd().numpy(), torch_bwd().numpy()], want, dtype)
        impls["torch"] = (torch_fwd, torch_bwd)
    if jax is not None:

        def jpool(x):
            return jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, (1, 1, ph, pw), (1, 1, stride, stride), "VALID")

        jx, jdy = jnp.asarray(x), jnp.asarray(dy)
        jfwd, jbwd = jax.jit(jpool), jax.jit(lambda x, dy: jax.vjp(jpool, x)[1](dy)[0])
        jax_fwd, jax_bwd = (lambda: block(jfwd(jx))), (lambda: block(jbwd(jx, jdy)))
        check("jax", [np.asarray(jax_fwd()), np.asarray(jax_bwd())], want, dtype)
        impls["jax"] = (jax_fwd, jax_bwd)
    cache = {}

    def im2col_fwd():
        out, cache["c"] = base.max_pool_forward(x, ph, pw, stride)
        return out

    check("im2col", [im2col_fwd(), base.max_pool_backward(dy, cache["c"])], want, dtype)
    impls["im2col"] = (im2col_fwd, lambda: base.max_pool_backward(dy, cache["c"]))
    return impls


def bench_pool() -> None:
    rows = []
    for dtype in (np.float32, np.float64):
        for key, (ph, pw, stride) in POOL_CASES.items():
            impls = pool_impls(ph, pw, stride, dtype)
            t = measure(impls)
            for op in ("fwd", "bwd"):
                ours = t[("funcnn", op)]
                peers = {p: t.get((p, op)) for p in PEERS}
                fastest = min(v for k, v in peers.items() if v is not None and k != "im2col")
                rows.append(
                    [
                        f"x{POOL_X} {key}",
                        np.dtype(dtype).name,
                        op,
                        ms(ours),
                        *(ms(peers[p]) for p in PEERS),
                        "-",
                        "-",
                        round_spread("funcnn", op),
                        ratio(ours, fastest),
                        ratio(peers["im2col"], ours),
                    ]
                )
    table("max-pool (median ms)", PEER_HEADER, rows, "vs fastest: funcnn / the fastest of torch and jax (target <= 1)")


# ---------------------------------------------------------------- affine


def affine_impls(n, d, m, dtype) -> dict:
    rng = np.random.default_rng(0)
    x, w = rng.standard_normal((n, d)).astype(dtype), rng.standard_normal((d, m)).astype(dtype)
    params, dy = {"w": w, "b": np.zeros(m, dtype)}, rng.standard_normal((n, m)).astype(dtype)
    _, vjp = fn.affine(params, x)
    return {
        "affine": (lambda: fn.affine(params, x), lambda: vjp(dy)),
        "matmul": (lambda: x @ w, lambda: (x.T @ dy, dy @ w.T)),
    }


def bench_affine() -> None:
    rows = []
    for dtype in (np.float32, np.float64):
        for n, d, m in AFFINE_SHAPES:
            got = measure(affine_impls(n, d, m, dtype))
            t = {op: got[("affine", op)] for op in ("fwd", "bwd")} | {
                "mm " + op: got[("matmul", op)] for op in ("fwd", "bwd")
            }
            flops = 2 * n * d * m
            for op, mult in (("fwd", 1), ("bwd", 2)):
                rows.append(
                    [
                        f"x({n}, {d}) w({d}, {m})",
                        np.dtype(dtype).name,
                        op,
                        ms(t[op]),
                        ms(t["mm " + op]),
                        f"{mult * flops / t[op] / 1e6:.0f}",
                        ratio(t[op], t["mm " + op]),
                    ]
                )
    table(
        "affine vs bare matmul (median ms)",
        ["shape", "dtype", "op", "affine ms", "matmul ms", "GFLOP/s", "affine/matmul"],
        rows,
        "matmul: x @ w forward; x.T @ dy and dy @ w.T backward (target affine/matmul <= 1.1)",
    )


# ---------------------------------------------------------------- start-up and memory, in subprocesses

FIRST_CALL = """
import time, sys
start = time.perf_counter()
import numpy as np, funcnn as fn
imported = time.perf_counter()
x = np.ones((2, 3, 8, 8), np.float32); p = {"w": np.ones((4, 3, 3, 3), np.float32), "b": np.zeros(4, np.float32)}
dtypes = [np.float32, np.float64] if sys.argv[1] == "both" else [np.float32]
for dtype in dtypes:
    y, vjp = fn.conv(stride=1, pad=1)({k: v.astype(dtype) for k, v in p.items()}, x.astype(dtype)); vjp(y)
    if dtype is dtypes[0]:
        conv_done = time.perf_counter()
    y, vjp = fn.max_pool()((), x.astype(dtype)); vjp(y)
done = time.perf_counter()
print(imported - start, conv_done - imported, done - imported)
"""


def run_python(code: str, *args: str, env: dict | None = None) -> str:
    full_env = {**os.environ, **(env or {}), "PYTHONPATH": os.pathsep.join([str(ROOT), str(HERE)])}
    return subprocess.run(
        [sys.executable, "-c", code, *args], env=full_env, capture_output=True, text=True, check=True
    ).stdout


def bench_startup() -> None:
    rows = []
    imports = [
        float(run_python("import time; t = time.perf_counter(); import funcnn; print(time.perf_counter() - t)"))
        for _ in range(5)
    ]
    rows.append(["import funcnn", f"{np.median(imports) * 1e3:.0f}", "fresh process, median of 5; target < 500 ms"])
    run_python(FIRST_CALL, "both")  # fills Numba's cache if it is empty
    warm = np.median([[float(v) for v in run_python(FIRST_CALL, "one").split()] for _ in range(3)], axis=0)
    rows.append(
        [
            "first conv fwd+bwd, warm cache",
            f"{warm[1] * 1e3:.0f}",
            "after import, float32, Numba's cache warm; target < 1000 ms",
        ]
    )
    rows.append(["first conv + pool fwd+bwd, warm cache", f"{warm[2] * 1e3:.0f}", "float32"])
    if not ARGS.quick:
        with tempfile.TemporaryDirectory() as cache_dir:
            cold = [float(v) for v in run_python(FIRST_CALL, "both", env={"NUMBA_CACHE_DIR": cache_dir}).split()]
        rows.append(
            [
                "cold compile, all kernels",
                f"{cold[2] * 1e3:.0f}",
                "empty NUMBA_CACHE_DIR: conv and pool, fwd and bwd, float32 and float64",
            ]
        )
    table("start-up (ms)", ["what", "ms", "how"], rows)


MEMORY = """
import sys, tracemalloc, numpy as np
import memory_probe as m
impl, key, dtype = sys.argv[1], sys.argv[2], np.dtype(sys.argv[3])
fwd_bwd = m.setup(impl, key, dtype)
before = m.rss_mib(reset_peak=True)
tracemalloc.start()
base = tracemalloc.get_traced_memory()[0]
held = fwd_bwd()
peak = tracemalloc.get_traced_memory()[1] - base
print(m.rss_mib(peak=True) - before, peak / 2**20, held / 2**20)
"""


def bench_memory() -> None:
    impls = ["funcnn", "keep-cols", "im2col"] + [p for p, mod in (("torch", torch), ("jax", jax)) if mod is not None]
    rows = []
    for key in ("b", "c"):
        for dtype in ("float32", "float64"):
            xs = CONV_SHAPES[key][0]
            x_mb = np.prod(xs) * np.dtype(dtype).itemsize / 2**20
            for impl in impls:
                rss, peak, held = (float(v) for v in run_python(MEMORY, impl, key, dtype).split())
                numpy_only = impl in ("funcnn", "keep-cols", "im2col")
                rows.append(
                    [
                        f"({key})",
                        dtype,
                        impl,
                        f"{rss:.0f}",
                        f"{peak:.0f}" if numpy_only else "-",
                        f"{held:.1f}" if numpy_only else "-",
                        f"{x_mb:.0f}",
                    ]
                )
    table(
        "conv fwd+bwd peak memory (MiB)",
        ["shape", "dtype", "impl", "RSS growth", "tracemalloc peak", "held by vjp", "x size"],
        rows,
        "RSS growth: peak resident memory (VmHWM, reset before) during one fwd+bwd minus the resident memory\n"
        "before it, "
        "in a fresh process warmed up on a tiny conv; it counts every allocator (torch's and XLA's too).\n"
        "tracemalloc peak: NumPy's allocations during fwd+bwd (outputs included). held by vjp: what the closure keeps\n"
        "besides y and the inputs. keep-cols: funcnn's kernels, but keeping the full columns "
        "(no recompute in backward).",
    )


# ---------------------------------------------------------------- header and main


def machine() -> None:
    cpu = (
        next(
            (
                line.split(":", 1)[1].strip()
                for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")
            ),
            platform.processor(),
        )
        if Path("/proc/cpuinfo").exists()
        else platform.processor()
    )
    flags = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    import numba

    print(f"machine: {cpu}, {os.cpu_count()} cores{', AVX-512' if 'avx512f' in flags else ''}; {platform.platform()}")
    versions = f"python {platform.python_version()}, numpy {np.__version__}, numba {numba.__version__}"
    versions += f", torch {torch.__version__}" if torch is not None else ", torch not installed"
    versions += f", jax {jax.__version__}" if jax is not None else ", jax not installed"
    print(versions)
    fn.conv()({"w": np.ones((1, 1, 1, 1)), "b": np.zeros(1)}, np.ones((1, 1, 1, 1)))  # starts Numba's threads
    try:
        from threadpoolctl import threadpool_info

        blas = "; ".join(
            f"{p['internal_api']} {p.get('version') or ''} {p.get('architecture') or ''} "
            f"{p['num_threads']} threads ({Path(p['filepath']).name})"
            for p in threadpool_info()
        )
    except ImportError:
        blas = "unknown (threadpoolctl not installed)"
    print(f"threads: numba {numba.get_num_threads()} ({numba.threading_layer()} layer); native pools: {blas}")
    print(
        f"         torch {torch.get_num_threads() if torch is not None else '-'}; jax: XLA's own pool"
        f"{' (1 thread)' if ARGS.threads == 1 else ' (all cores)'}"
    )
    shown = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "OMP_WAIT_POLICY", "NUMBA_THREADING_LAYER")
    print("env: " + ", ".join(f"{v}={os.environ.get(v, '(unset)')}" for v in shown))
    print(f"schedule: {ARGS.rounds} rounds x (1 warm-up + {ARGS.repeats} timed) per implementation and op; medians")


def main() -> None:
    if not ARGS.malloc_as_is:
        fn.keep_freed_memory()  # as fit and the funcnn command do; process-wide, so every peer runs under it
    maybe_loaded(ARGS.load, run_sections)


def run_sections() -> None:
    machine()
    sgemm = sgemm_gflops()
    SGEMM.append(sgemm[0])
    print("\n".join(header_lines(sgemm)))
    RESULTS["machine"] = [{"sgemm GFLOP/s": sgemm[0], "sgemm rounds": sgemm[1]}]
    sections = [
        ("conv", bench_conv),
        ("pool", bench_pool),
        ("affine", bench_affine),
        ("startup", bench_startup),
        ("memory", bench_memory),
    ]
    for name, run in sections:
        if name in ARGS.sections:
            with CPULoad() as load:
                run()
            if load.other is not None:
                print(f"(other processes used {load.other:.2f} cores on average during this section)")
    if ARGS.json:
        ARGS.json.write_text(json.dumps(RESULTS, indent=1))


if __name__ == "__main__":
    main()
