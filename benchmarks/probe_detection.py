"""How often does check_vjp's fast mode catch a 1% error in one element of a 10,000-element leaf?

The leaf is the (100, 100) weight of an affine layer followed by tanh (float64, batch 8, pre-activations
about N(0, 1), so the function is curved). In each trial one element, drawn at random, of the analytic
dw is multiplied by 1.01, and check_vjp runs in fast mode with ``probes=k`` and a fresh seed. Prints, per k,
the fraction of trials where check_vjp raised for that leaf, and how often the located element was the wrong one.

    python benchmarks/probe_detection.py [--trials 2000] [--max-probes 5] [--rtol 1e-5]
"""

from __future__ import annotations

import argparse

import numpy as np

import funcnn as fn


def one_wrong_element(index: tuple[int, int]) -> fn.Layer:
    def apply(params, x):
        h, affine_vjp = fn.affine(params, x)
        y, tanh_vjp = fn.tanh((), h)

        def wrong_vjp(dy):
            dparams, dx = affine_vjp(tanh_vjp(dy)[1])
            w = dparams["w"].copy()
            w[index] *= 1.01
            return {"w": w, "b": dparams["b"]}, dx

        return y, wrong_vjp

    return fn.layer(apply, "affine-tanh with one wrong element")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=2000)
    parser.add_argument("--max-probes", type=int, default=5)
    parser.add_argument(
        "--rtol", type=float, default=None, help="check_vjp's rtol (default: its float64 default, 1e-5)"
    )
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    params = {"w": rng.standard_normal((100, 100)) / 10, "b": rng.standard_normal(100) / 10}
    x = rng.standard_normal((8, 100))
    for k in range(1, args.max_probes + 1):
        caught = located = 0
        for trial in range(args.trials):
            index = tuple(int(i) for i in rng.integers(0, 100, size=2))
            try:
                fn.check_vjp(one_wrong_element(index), params, x, probes=k, seed=trial, rtol=args.rtol)
            except fn.VJPCheckError as error:
                caught += error.check.path == 'params["w"]'
                located += error.check.index == index
        print(
            f"probes={k}: caught {caught}/{args.trials} = {caught / args.trials:.4f}, "
            f"missed {args.trials - caught}; wrong element located in {located}/{caught}"
        )


if __name__ == "__main__":
    main()
