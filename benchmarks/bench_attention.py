"""Multi-head attention forward + backward, float32: funcnn against torch on CPU, in one process.

    python benchmarks/bench_attention.py                 # N=32, S=T=128, E=256, 8 heads (the issue's sizes)
    python benchmarks/bench_attention.py --threads 1     # one BLAS / torch thread (default: all cores)
    python benchmarks/bench_attention.py --encoder 1024  # also a whole encoder layer (feed-forward 1024)

Self-attention with all its projections, with and without a causal mask, three ways: ``fn.self_attention``
(funcnn), ``torch.nn.MultiheadAttention`` (its own fused path for q = k = v), and the projections written
as ``nn.Linear`` around ``torch.nn.functional.scaled_dot_product_attention`` (torch's fused kernel). It
checks first that all give the same y and dx, then times rounds of (warm-up, ``repeats`` timed
forward-backward pairs) per implementation, alternating between them, and prints medians and the ratios
funcnn / torch (the goal: <= 1.0), and the bytes funcnn's vjp keeps with and without ``recompute=True``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    defaults = (("n", 32), ("s", 128), ("e", 256), ("heads", 8), ("rounds", 3), ("repeats", 5))
    for name, default in (*defaults, ("threads", os.cpu_count() or 1), ("encoder", 0)):
        parser.add_argument(f"--{name}", type=int, default=default)
    return parser.parse_args()


ARGS = parse_args()
for variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ[variable] = str(ARGS.threads)  # before NumPy and torch read them

import numpy as np
from cpu_info import isa

import funcnn as fn


def torch_steps(torch, p: dict, x: np.ndarray, heads: int, causal: bool):
    """``nn.MultiheadAttention`` holding funcnn's weights, and the same maps around scaled_dot_product_attention."""
    n, s, e = x.shape
    mha = torch.nn.MultiheadAttention(e, heads, batch_first=True)
    w_in = np.concatenate([p[k]["w"].T for k in ("query", "key", "value")])
    b_in = np.concatenate([p[k]["b"] for k in ("query", "key", "value")])
    with torch.no_grad():
        mha.in_proj_weight.copy_(torch.from_numpy(w_in))
        mha.in_proj_bias.copy_(torch.from_numpy(b_in))
        mha.out_proj.weight.copy_(torch.from_numpy(p["proj"]["w"].T.copy()))
        mha.out_proj.bias.copy_(torch.from_numpy(p["proj"]["b"]))
    tx = torch.from_numpy(x).requires_grad_()
    mask = torch.from_numpy(~fn.causal_mask(s)) if causal else None  # torch: True = may not attend

    def module_step(dy: np.ndarray):
        tx.grad = None
        mha.zero_grad()
        y = mha(tx, tx, tx, attn_mask=mask, need_weights=False, is_causal=causal)[0]
        y.backward(torch.from_numpy(dy))
        return y.detach().numpy(), tx.grad.numpy()

    def sdpa_step(dy: np.ndarray):
        tx.grad = None
        mha.zero_grad()
        qkv = torch.nn.functional.linear(tx, mha.in_proj_weight, mha.in_proj_bias)
        q, k, v = (a.view(n, s, heads, e // heads).transpose(1, 2) for a in qkv.chunk(3, dim=-1))
        o = torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=causal)
        y = mha.out_proj(o.transpose(1, 2).reshape(n, s, e))
        y.backward(torch.from_numpy(dy))
        return y.detach().numpy(), tx.grad.numpy()

    return module_step, sdpa_step


def timed(steps: dict, dy: np.ndarray, rounds: int, repeats: int) -> dict[str, float]:
    """The median ms of each step, over rounds of (warm-up, ``repeats`` timed calls), alternating between them."""
    times: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(rounds):
        for name, step in steps.items():
            step(dy)  # warm-up
            for _ in range(repeats):
                start = time.perf_counter()
                step(dy)
                times[name].append((time.perf_counter() - start) * 1e3)
    return {name: statistics.median(values) for name, values in times.items()}


def encoder_pair(torch, args: argparse.Namespace, x: np.ndarray):
    """``fn.transformer_encoder_layer`` (post-norm, causal) and torch's, with the same weights; their steps."""
    layer = fn.transformer_encoder_layer(args.heads, args.encoder, causal=True)
    _, p = fn.init_params(layer, np.random.default_rng(1), x.shape[1:], np.float32)
    module = torch.nn.TransformerEncoderLayer(args.e, args.heads, args.encoder, dropout=0.0, batch_first=True)
    a = p["self_attn"]
    with torch.no_grad():
        module.self_attn.in_proj_weight.copy_(
            torch.from_numpy(np.concatenate([a[k]["w"].T for k in ("query", "key", "value")]))
        )
        module.self_attn.in_proj_bias.copy_(
            torch.from_numpy(np.concatenate([a[k]["b"] for k in ("query", "key", "value")]))
        )
        module.self_attn.out_proj.weight.copy_(torch.from_numpy(a["proj"]["w"].T.copy()))
        module.self_attn.out_proj.bias.copy_(torch.from_numpy(a["proj"]["b"]))
        for key, linear in (("ffn1", module.linear1), ("ffn2", module.linear2)):
            linear.weight.copy_(torch.from_numpy(p[key]["w"].T.copy()))
            linear.bias.copy_(torch.from_numpy(p[key]["b"]))
    tx = torch.from_numpy(x).requires_grad_()
    mask = torch.from_numpy(~fn.causal_mask(x.shape[1]))

    def funcnn_step(dy: np.ndarray):
        y, vjp = layer(p, x)
        return y, vjp(dy)[1]

    def torch_step(dy: np.ndarray):
        tx.grad = None
        module.zero_grad()
        y = module(tx, src_mask=mask, is_causal=True)
        y.backward(torch.from_numpy(dy))
        return y.detach().numpy(), tx.grad.numpy()

    return funcnn_step, torch_step


def main() -> None:
    args = ARGS
    import torch

    from funcnn.tree import tree_leaves, tree_map

    torch.set_num_threads(args.threads)
    print(f"CPU: {isa()}; load average {os.getloadavg()[0]:.1f} (other processes share the cores)")
    print(f"torch {torch.__version__} ({torch.get_num_threads()} threads); numpy {np.__version__}")
    print(f"float32, N={args.n}, S=T={args.s}, E={args.e}, {args.heads} heads; median of {args.rounds}x{args.repeats}")
    rng = np.random.default_rng(0)
    x = rng.standard_normal((args.n, args.s, args.e)).astype(np.float32)
    dy = rng.standard_normal(x.shape).astype(np.float32)
    for causal in (False, True):
        layer = fn.self_attention(args.heads, causal=causal)
        _, p = fn.init_params(layer, rng, (args.s, args.e), np.float32)
        p = tree_map(lambda a: a + 0.1 * rng.standard_normal(a.shape).astype(np.float32), p)

        def funcnn_step(dy: np.ndarray, layer=layer, p=p):
            y, vjp = layer(p, x)
            return y, vjp(dy)[1]

        module_step, sdpa_step = torch_steps(torch, p, x, args.heads, causal)
        steps = {"funcnn": funcnn_step, "nn.MultiheadAttention": module_step, "sdpa": sdpa_step}
        y, dx = funcnn_step(dy)
        for name in ("nn.MultiheadAttention", "sdpa"):
            ty, tdx = steps[name](dy)
            print(f"causal={causal}: {name} max |y - torch| {np.abs(y - ty).max():.2g}, "
                  f"max |dx - torch| / max |dx| {np.abs(dx - tdx).max() / np.abs(tdx).max():.2g}")  # fmt: skip
        medians = timed(steps, dy, args.rounds, args.repeats)
        ours = medians.pop("funcnn")
        line = ", ".join(f"{name} {ms:.1f} ms (funcnn/{name} {ours / ms:.2f})" for name, ms in medians.items())
        print(f"causal={causal}: funcnn {ours:.1f} ms; {line}")
        params = {id(a) for a in tree_leaves(p)}
        for recompute in (False, True):
            sized = fn.self_attention(args.heads, causal=causal, recompute=recompute)
            table = fn.summary(sized, (args.s, args.e), np.float32, batch_size=args.n)
            print(f"causal={causal}, recompute={recompute}: the vjp keeps {table.total.memory / 2**20:.1f} MiB"
                  f" ({len(params)} param arrays not counted)")  # fmt: skip
    if args.encoder:
        ours, theirs = encoder_pair(torch, args, x)
        (y, dx), (ty, tdx) = ours(dy), theirs(dy)
        error = np.abs(dx - tdx).max() / np.abs(tdx).max()
        print(f"encoder layer (post-norm, causal, feed-forward {args.encoder}): max |y - torch| "
              f"{np.abs(y - ty).max():.2g}, max |dx - torch| / max |dx| {error:.2g}")  # fmt: skip
        medians = timed({"funcnn": ours, "torch": theirs}, dy, args.rounds, args.repeats)
        ours_ms, torch_ms = medians["funcnn"], medians["torch"]
        print(f"encoder layer: funcnn {ours_ms:.1f} ms, nn.TransformerEncoderLayer {torch_ms:.1f} ms, "
              f"funcnn/torch {ours_ms / torch_ms:.2f}")  # fmt: skip


if __name__ == "__main__":
    main()
