"""The ``funcnn`` command: ``funcnn train`` trains a convnet, ``funcnn check`` checks every gradient,
``funcnn summary`` prints the network's table, ``funcnn export`` writes a checkpoint as ONNX."""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from funcnn.app.options import (
    Parser,
    add_model_options,
    add_network_options,
    add_run_options,
    add_sweep_options,
    add_text_options,
    int_from,
    job_defaults,
    number_above,
    train_options,
)

if TYPE_CHECKING:
    from funcnn.core import Layer


def _check(args: argparse.Namespace) -> int:
    from funcnn.app.problems import format_table, run_checks

    start = time.perf_counter()
    results = run_checks(seed=args.seed, mode=args.mode)
    print(format_table(results))
    kinks = sum(len(report.kinks) for _, report in results)
    left_out = sum(leaf.n_left_out for _, report in results for leaf in report.left_out)
    leaves = sum(len(report.leaves) for _, report in results)
    notes = [f"{kinks} at a kink (not checked)"] if kinks else []
    notes += [f"{left_out} elements near a kink left out"] if left_out else []
    print(
        f"\n{leaves} gradients checked ({args.mode} mode, float64) in {time.perf_counter() - start:.1f} s; "
        f"all correct{''.join(', ' + note for note in notes)}."
    )
    return 0


def _check_options(args: argparse.Namespace) -> None:
    """Refuse option combinations that no run can use, before anything is loaded or created (each value
    was checked by the parser)."""
    if args.resume and args.overwrite:
        raise ValueError("--resume and --overwrite contradict each other: continue the run in --out, or replace it")


def _train(args: argparse.Namespace) -> int:
    args = job_defaults(args)
    if args.dataset == "shakespeare":
        from funcnn.app.text_job import train_text

        return train_text(args)
    from funcnn.app.datasets import load_named
    from funcnn.app.recipe import course_net, train_course
    from funcnn.app.runs import fit_in_folder, write_history
    from funcnn.plot import INSTALL_HINT

    started = time.perf_counter()
    _check_options(args)
    data = load_named(args.dataset, args.data_path, np.dtype(args.dtype).type)
    header = (
        f"funcnn train: {course_net(vars(args))[0].name}\n  {args.dataset}: {len(data.train)} train, "
        f"{len(data.val)} val, {len(data.test)} test images of shape {data.train.x.shape[1:]}; {args.optimizer} "
        f"lr {args.lr} (x{args.lr_decay} per epoch), batch {args.batch_size}, {args.epochs} epochs, seed {args.seed}"
    )
    run, out = fit_in_folder(args, header, lambda checkpoint, log: train_course(args, data, checkpoint, log=log))
    result, test_acc = run.result, run.test_acc
    history = result.history
    seconds = time.perf_counter() - started
    summary = {
        "dataset": args.dataset,
        "test_acc": test_acc,
        "best_val_acc": history.best_val_acc,
        "best_epoch": history.best_epoch,
        "seconds": seconds,
    }
    plot = write_history(out, summary, result, f"three-layer convnet on {args.dataset}: test accuracy {test_acc:.3f}")
    print(
        f"test accuracy {test_acc:.4f} (best validation {history.best_val_acc:.4f} after epoch "
        f"{history.best_epoch}); "
        f"{seconds:.1f} s in all"
    )
    print(f"wrote {out / 'checkpoint.npz'}, {out / 'history.json'}" + (f", {plot}" if plot else ""))
    if plot is None:
        print(INSTALL_HINT)
    return 0


def _doctor(args: argparse.Namespace) -> int:
    from funcnn.app.datasets import load_named
    from funcnn.app.recipe import net_and_params, optimizer_named
    from funcnn.training import doctor

    started = time.perf_counter()
    data = load_named(args.dataset, args.data_path, np.dtype(args.dtype).type)
    net, params = net_and_params(args, data)
    optimizer = optimizer_named(args, args.lr)
    print(
        f"funcnn doctor: {net.name} on {args.dataset}; {args.optimizer} lr {args.lr}, reg {args.reg}, "
        f"batch {args.batch_size}"
    )
    report = doctor(
        net, params, (data.train.x, data.train.y), optimizer, reg=args.reg, batch_size=args.batch_size, seed=args.seed
    )
    print(f"{report}\n{time.perf_counter() - started:.1f} s")
    return 0 if report.ok else 1


NET_OPTIONS = ("dataset", "batch_size", "filters", "filter_size", "hidden", "batch_norm", "dropout", "dtype")


def _summary(args: argparse.Namespace) -> int:
    from funcnn.analysis import summary
    from funcnn.app.recipe import course_net

    net, shape = course_net(vars(args))
    print(f"funcnn summary: the convnet of funcnn train with these options, on {args.dataset}\n")
    print(summary(net, shape, args.dtype, batch_size=args.batch_size))
    if args.measure:
        print(f"\nmeasured on a random batch of {args.batch_size} (training mode):\n")
        print(_measured(net, shape, args.dtype, args.batch_size))
    return 0


def _measured(net: Any, shape: tuple[int, ...], dtype: str, batch_size: int) -> Any:
    """:func:`funcnn.measure_memory` of ``net`` with fresh params on a random batch and random labels."""
    from funcnn.layers import init_params, init_state
    from funcnn.training import measure_memory

    rng = np.random.default_rng(0)
    out, params = init_params(net, rng, shape, np.dtype(dtype))
    x = rng.standard_normal((batch_size, *shape)).astype(dtype)
    state = init_state(net, shape, np.dtype(dtype)) if net.moded else ()
    return measure_memory(net, params, x, rng.integers(0, out[0], batch_size), state, rng=rng)


def _saved_net(checkpoint: str, config: dict[str, Any]) -> tuple[Layer, tuple[int, ...]]:
    """The network a checkpoint's config describes, and one example's shape."""
    from funcnn.app.fit_checkpoint import PYTHON_ROUTE, rebuilt_net
    from funcnn.app.recipe import course_net
    from funcnn.app.text_job import saved_text_net

    if config.get("dataset") == "shakespeare":  # the text job's char model: x holds int64 character codes
        return saved_text_net(config)
    missing = [key for key in NET_OPTIONS if key not in config]
    if missing and "net" not in config:
        raise ValueError(
            f"checkpoint {checkpoint}: its config lacks {', '.join(missing)} and names no network (not written "
            f"by funcnn train or fn.fit?); {PYTHON_ROUTE}"
        )
    if missing:  # written by fn.fit from Python, not by funcnn train
        return rebuilt_net(checkpoint, config)
    return course_net(config)


def _export(args: argparse.Namespace) -> int:
    from funcnn.export import OPSET, to_onnx
    from funcnn.layers import init_params, init_state
    from funcnn.training import load_checkpoint, saved_config

    if Path(args.onnx).resolve() == Path(args.checkpoint).resolve():
        raise ValueError(f"--onnx {args.onnx} is the checkpoint itself; choose another file for the model")
    if Path(args.onnx).exists() and not args.overwrite:
        raise ValueError(f"--onnx {args.onnx} already exists; replace it with --overwrite, or choose another file")
    config = saved_config(args.checkpoint)
    net, shape = _saved_net(args.checkpoint, config)
    config.setdefault("dtype", "float32")
    _, params = init_params(net, np.random.default_rng(0), shape, config["dtype"])
    like = {"best_params": params, "best_state": init_state(net, shape, config["dtype"])}
    saved = load_checkpoint(args.checkpoint, like, strict=False)
    try:
        path = to_onnx(net, saved["best_params"], shape, args.onnx, saved["best_state"], overwrite=args.overwrite)
    except ImportError as error:
        print(f"funcnn export: {error}", file=sys.stderr)
        return 2
    codes = " of int64 character codes" if config.get("dataset") == "shakespeare" else ""
    dims = ", ".join(map(str, shape))
    print(f"wrote {path}: {net.name}, the best params (evaluation mode), x (N, {dims}){codes} -> y, opset {OPSET}")
    return 0


def _sweep(args: argparse.Namespace) -> int:
    try:
        from funcnn.app.sweep import SweepUnfinished, sweep
    except ModuleNotFoundError as error:
        if error.name != "optuna":
            raise
        raise ValueError(
            'needs Optuna: install the sweep extra, pip install "funcnn[sweep]" '
            '(from a clone: pip install -e ".[sweep]")'
        ) from None
    try:
        sweep(args, train_options())
    except SweepUnfinished as error:
        print(f"funcnn sweep: {error}", file=sys.stderr)
        return 1
    return 0


def _lr_find(args: argparse.Namespace) -> int:
    from funcnn import lr_find
    from funcnn.app.datasets import load_named
    from funcnn.app.recipe import net_and_params, optimizer_named

    data = load_named(args.dataset, args.data_path, np.dtype(args.dtype).type)
    net, params = net_and_params(args, data)

    def optimizer(learning_rate: Any) -> Any:
        return optimizer_named(args, learning_rate)

    result = lr_find(
        net, params, data.train.x, data.train.y, optimizer=optimizer, reg=args.reg, batch_size=args.batch_size,
        min_lr=args.min_lr, max_lr=args.max_lr, steps=args.steps, seed=args.seed,
    )  # fmt: skip
    print(f"funcnn lr-find: {net.name} on {args.dataset}; {args.optimizer}, {len(result.lrs)} steps")
    print("  learning rate  smoothed loss")
    for i in np.unique(np.linspace(0, len(result.lrs) - 1, 12).round().astype(int)):
        print(f"  {result.lrs[i]:13.2e}  {result.smoothed[i]:13.4f}")
    stop = "stopped: the loss diverged" if result.diverged else f"reached --max-lr {args.max_lr:g}"
    print(f"{stop}; suggestion {result.suggestion:.2e} (a tenth of the lowest loss's), steepest {result.steepest:.2e}")
    try:
        from funcnn.plot import plot_lr_find
    except ImportError:
        return 0
    try:
        figure = plot_lr_find(result, f"lr-find: {args.optimizer} on {args.dataset}")
    except ImportError as error:
        print(error)
        return 0
    out = Path(args.out or f"runs/{args.dataset}")
    out.mkdir(parents=True, exist_ok=True)
    path = out / "lr_find.png"
    figure.savefig(path.with_name(f".{path.name}.tmp.png"))
    os.replace(path.with_name(f".{path.name}.tmp.png"), path)  # atomically: an earlier picture stays whole
    print(f"wrote {path}")
    return 0


def _add_sweep(commands: Any) -> None:
    sweep = commands.add_parser(
        "sweep", help="hyperparameter search on Optuna over the options of train (needs the sweep extra)",
        description="Train --trials networks with values drawn from a search space (default: lr and reg on a log "
                    "scale) by --workers local processes, and any machine joining the same --storage and --study. "
                    "Every other option of train fixes that option for all trials.",
    )  # fmt: skip
    add_sweep_options(sweep)
    sweep.set_defaults(run=_sweep)


def build_parser() -> argparse.ArgumentParser:
    """The ``funcnn`` command's parser: train, doctor, sweep, summary, export and check; the options they
    share are declared once, in :mod:`funcnn.app.options`."""
    parser = Parser(prog="funcnn", description="funcnn: neural nets with hand-written, checked VJPs.")
    commands = parser.add_subparsers(dest="command", required=True)

    train = commands.add_parser(
        "train", help="train the three-layer convnet (default: on the bundled 8x8 digits), or a char-level LSTM on "
                      "the bundled Shakespeare (--dataset shakespeare)",
        description="Train conv-relu-pool / affine-relu / affine on a data set, print progress, end with the "
                    "test accuracy, and write a checkpoint, a history and a plot into --out. With --dataset "
                    "shakespeare: a char-level LSTM, ending with the test loss in nats and bits per character and "
                    "a 200-character sample.",
    )  # fmt: skip
    options = {**add_model_options(train), **add_run_options(train)}
    add_text_options(train, options)
    train.set_defaults(run=_train)

    doctor = commands.add_parser(
        "doctor", help="pre-flight checks of a training configuration (train's network and data options)",
        description="cs231n's checks before training, on the options of funcnn train: initial loss, loss rising "
                    "with reg, the network's gradient, overfitting 30 examples, update/weight ratios. "
                    "Exits 1 on a failure.",
    )  # fmt: skip
    add_model_options(doctor)
    doctor.set_defaults(run=_doctor)
    _add_sweep(commands)

    finder = commands.add_parser(
        "lr-find", help="the learning-rate range test on train's network, data and optimizer options",
        description="Train for --steps minibatches with the learning rate growing exponentially from --min-lr to "
                    "--max-lr (Smith's range test), print the smoothed loss curve and a suggestion, and draw the "
                    "curve into --out/lr_find.png (the plot extra). Stops when the loss diverges.",
    )  # fmt: skip
    add_model_options(finder)
    finder.add_argument("--min-lr", type=number_above(0, strict=True), default=1e-6, help="(default: 1e-6)")
    finder.add_argument("--max-lr", type=number_above(0, strict=True), default=1.0, help="(default: 1)")
    finder.add_argument("--steps", type=int_from(2), default=100, help="minibatch steps (default: 100)")
    finder.add_argument("--out", help="folder of the picture (default: runs/<dataset>)")
    finder.set_defaults(run=_lr_find)

    summary = commands.add_parser(
        "summary", help="the table of the convnet that train builds (its network options): shapes, params, FLOPs",
        description="Print one row per layer of the network that funcnn train builds with these options: output "
                    "shape, parameters, forward and backward FLOPs for a batch of --batch-size, what the vjps keep.",
    )  # fmt: skip
    add_network_options(summary)
    summary.add_argument("--measure", action="store_true",
                         help="also run one training step on random data and print what each vjp really keeps "
                              "and the step's peak (funcnn.measure_memory)")  # fmt: skip
    summary.set_defaults(run=_summary)

    export = commands.add_parser(
        "export", help="write a checkpoint's network as an ONNX model (the onnx extra)",
        description="Rebuild the network of a funcnn train checkpoint from its configuration (or of an fn.fit "
                    "checkpoint of the same convnet, from its params' shapes) and write it, with its best params and "
                    "state, in evaluation mode, as an ONNX model with a dynamic batch axis.",
    )  # fmt: skip
    export.add_argument("checkpoint", help="a checkpoint.npz written by funcnn train")
    export.add_argument("--onnx", required=True, help="the .onnx file to write")
    export.add_argument("--overwrite", action="store_true", help="replace the --onnx file if it exists")
    export.set_defaults(run=_export)

    check = commands.add_parser("check", help="finite-difference check of every layer, sandwich and network")
    check.add_argument(
        "--mode",
        choices=["full", "fast"],
        default="full",
        help="full: element by element, like the course; fast: random directions (default: full)",
    )
    check.add_argument("--seed", type=int_from(0), default=0, help="seed of the random problems (default: 0)")
    check.set_defaults(run=_check)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m funcnn`` and the ``funcnn`` script."""
    from funcnn.training import keep_freed_memory

    try:
        args = build_parser().parse_args(argv)
    except SystemExit as done:  # --help, or a value the parser refused (it printed one line)
        return int(done.code or 0)
    keep_freed_memory()  # this process is ours: steps reuse freed memory instead of page-faulting
    try:
        code: int = args.run(args)
        return code
    except (KeyboardInterrupt, SystemError) as error:  # Ctrl-C: one line, and how to continue if an epoch was saved
        from funcnn.training import is_ctrl_c

        if not is_ctrl_c(error):
            raise
        hint = "; resume with --resume" if getattr(error, "epoch", 0) else ""
        print(f"funcnn {args.command}: {str(error) or 'interrupted'}{hint}", file=sys.stderr)
        return 130
    except AssertionError as error:  # a gradient check failed: say which, without a traceback
        print(f"FAILED: {error}", file=sys.stderr)
        return 1
    except (ValueError, OSError) as error:  # bad options, data files or output folder: one clear line
        print(f"funcnn {args.command}: {error}", file=sys.stderr)
        return 2
