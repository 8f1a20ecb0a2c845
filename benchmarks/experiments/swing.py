"""One fresh process: course (or vgg) step times, variant from argv. Prints one line of JSON."""

import json
import os
import sys
import time

variant = sys.argv[1]
net_name = sys.argv[2] if len(sys.argv) > 2 else "course"
steps = int(sys.argv[3]) if len(sys.argv) > 3 else 40
os.environ.setdefault("OMP_NUM_THREADS", "2")
if "ser" in variant:
    os.environ["FUNCNN_SPLIT_THREADS"] = "1"
if "blas1" in variant:
    os.environ["OPENBLAS_NUM_THREADS"] = "1"
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))  # benchmarks/, for step_nets
sys.path.insert(0, HERE)  # aligned.py
import numpy as np

if "align64" in variant:
    import aligned

    aligned.install(64, 0)
if "mis16" in variant:
    import aligned

    aligned.install(64, 16)
if "nothp" in variant:
    np._core.multiarray._set_madvise_hugepage(False)
import funcnn as fn

if "keep" in variant:
    fn.keep_freed_memory()
from step_nets import NETS, data, funcnn_net

batch, _ = NETS[net_name]
net = funcnn_net(net_name)
_, params = fn.init_params(net, np.random.default_rng(0), (3, 32, 32), dtype=np.float32)
opt = fn.optim.adam(1e-3)
objective = fn.value_and_grad(net)
x, y = data(batch)
carry = [params, opt.init(params)]


def step():
    value, grads = objective(carry[0], x, y)
    carry[0], carry[1] = opt.update(grads, carry[1], carry[0])


step()
step()
times, cpu = [], []
for _ in range(steps):
    t0, c0 = time.perf_counter(), time.process_time()
    step()
    times.append((time.perf_counter() - t0) * 1e3)
    cpu.append((time.process_time() - c0) * 1e3)
t = np.array(times)
print(
    json.dumps(
        {
            "variant": variant,
            "median": float(np.median(t)),
            "p10": float(np.percentile(t, 10)),
            "p90": float(np.percentile(t, 90)),
            "min": float(t.min()),
            "cpu": float(np.median(cpu)),
            "load": os.getloadavg()[0],
        }
    )
)
