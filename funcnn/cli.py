"""The ``funcnn`` command: ``funcnn check`` runs the gradient checks of every layer."""

from __future__ import annotations

import argparse
import sys
import time


def _check(args: argparse.Namespace) -> int:
    from funcnn.checks import format_table, run_checks

    start = time.perf_counter()
    results = run_checks(seed=args.seed, mode=args.mode)
    print(format_table(results))
    kinks = sum(len(report.kinks) for _, report in results)
    leaves = sum(len(report.leaves) for _, report in results)
    print(f"\n{leaves} gradients checked ({args.mode} mode, float64) in {time.perf_counter() - start:.1f} s; "
          f"all correct{f', {kinks} at a kink (not checked)' if kinks else ''}.")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="funcnn", description="funcnn: neural nets with hand-written, checked VJPs.")
    commands = parser.add_subparsers(dest="command", required=True)
    check = commands.add_parser("check", help="finite-difference check of every layer, sandwich and network")
    check.add_argument("--mode", choices=["full", "fast"], default="full",
                       help="full: element by element, like the course; fast: random directions (default: full)")
    check.add_argument("--seed", type=int, default=0, help="seed of the random problems (default: 0)")
    check.set_defaults(run=_check)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m funcnn`` and the ``funcnn`` script."""
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except AssertionError as error:  # a gradient check failed: say which, without a traceback
        print(f"FAILED: {error}", file=sys.stderr)
        return 1
