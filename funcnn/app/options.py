"""The options of ``funcnn train`` and ``funcnn doctor``, declared once, each value checked by the parser
(an ``argparse`` ``type=`` built on ``funcnn._checks``), so a bad value is one line from the parser
before anything is loaded or created."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any, NoReturn, TypeVar

from typing_extensions import override

from funcnn._checks import fraction, int_at_least, number_at_least

T = TypeVar("T")
Options = dict[str, argparse.Action]
"""Options by their Python name (``batch_size``): what the ``add_*`` functions added to a parser."""


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line, ``funcnn train: argument --reg: must be ...``, exit status 2."""

    @override
    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: {message}\n")


def _checked(parse: Callable[[str], T], check: Callable[[T], Any], rule: str) -> Callable[[str], T]:
    """An argparse type: ``parse`` the text and ``check`` the value (one of funcnn._checks); either failing
    is the parser's error ``must be <rule>, got '<text>'``."""

    def convert(text: str) -> T:
        try:
            value = parse(text)
            check(value)
        except (TypeError, ValueError):
            raise argparse.ArgumentTypeError(f"must be {rule}, got {text!r}") from None
        return value

    return convert


def int_from(minimum: int) -> Callable[[str], int]:
    """An argparse type for an int ``>= minimum``."""
    return _checked(int, lambda v: int_at_least("option", "value", v, minimum), f"an int >= {minimum}")


def number_above(minimum: float, *, strict: bool) -> Callable[[str], float]:
    """An argparse type for a finite number ``> minimum`` (``>=`` unless ``strict``)."""
    rule = f"a number {'>' if strict else '>='} {minimum:g} and finite"
    return _checked(float, lambda v: number_at_least("option", "value", v, minimum, strict=strict), rule)


_standard_deviation = _checked(
    float, lambda v: number_at_least("option", "value", v, 0, strict=True), "'he' or a number > 0 and finite"
)


def weight_scale(text: str) -> str | float:
    """``--weight-scale``: "he" or a positive standard deviation."""
    return text if text == "he" else _standard_deviation(text)


def _adder(parser: argparse.ArgumentParser, options: Options) -> Callable[..., None]:
    def add(*flags: str, **how: Any) -> None:
        action = parser.add_argument(*flags, **how)
        options[action.dest] = action

    return add


def add_network_options(parser: argparse.ArgumentParser) -> Options:
    """The options that say which network train builds and for what data: the data set, the network's sizes and
    its layers, the batch size and the dtype (train, doctor and summary take them)."""
    options: Options = {}
    add = _adder(parser, options)
    add(
        "--dataset",
        choices=["digits", "mnist", "fashion-mnist", "cifar10"],
        default="digits",
        help="digits is bundled; the others are read from --data-path (default: digits)",
    )
    add("--batch-size", type=int_from(1), default=50, help="examples per step (default: 50)")
    add("--filters", type=int_from(1), default=32, help="conv filters (default: 32)")
    add("--filter-size", type=int_from(1), default=3, help="conv kernel size, odd (default: 3)")
    add("--hidden", type=int_from(1), default=100, help="hidden units of the affine layer (default: 100)")
    add("--batch-norm", action="store_true", help="add (spatial) batch norm before each hidden relu")
    add(
        "--dropout",
        type=_checked(float, lambda v: fraction("option", "value", v), "a number in [0, 1)"),
        default=0.0,
        help="dropout probability after the hidden affine layer (default: 0)",
    )
    add("--dtype", choices=["float32", "float64"], default="float32", help="(default: float32)")
    return options


def add_model_options(parser: argparse.ArgumentParser) -> Options:
    """The options train and doctor share: the network's (:func:`add_network_options`), the data's path, the
    init, the optimizer and the seed."""
    options = add_network_options(parser)
    add = _adder(parser, options)
    add("--data-path", help="folder with MNIST/Fashion-MNIST IDX files or CIFAR-10 binary batches")
    add(
        "--optimizer",
        choices=["sgd", "sgd_momentum", "rmsprop", "adam", "adamw"],
        default="adam",
        help="(default: adam)",
    )
    add("--lr", type=number_above(0, strict=True), default=2e-3, help="learning rate (default: 2e-3)")
    add(
        "--weight-decay",
        type=number_above(0, strict=False),
        default=1e-2,
        help="adamw's decoupled weight decay, on weights only (default: 1e-2)",
    )
    add(
        "--clip",
        type=number_above(0, strict=True),
        default=None,
        help="clip the gradients to this global norm before each update (default: no clipping)",
    )
    add(
        "--reg",
        type=number_above(0, strict=False),
        default=0.0,
        help="L2 regularization strength on weights (default: 0)",
    )
    add(
        "--weight-scale",
        type=weight_scale,
        default="he",
        help="'he' or a standard deviation such as 1e-3 (default: he)",
    )
    add("--seed", type=int_from(0), default=0, help="seed of the init and of the minibatch order (default: 0)")
    return options


def add_schedule_options(parser: argparse.ArgumentParser) -> Options:
    """How long a training runs: epochs, the learning-rate decay, patience (train and sweep take them)."""
    options: Options = {}
    add = _adder(parser, options)
    add("--epochs", type=int_from(1), default=15, help="passes over the training set (default: 15)")
    add(
        "--lr-decay",
        type=number_above(0, strict=True),
        default=0.9,
        help="learning rate factor after each epoch (default: 0.9)",
    )
    add(
        "--augment",
        action="store_true",
        help="random crops of each training batch (and mirror images on cifar10), drawn from the seed",
    )
    add(
        "--patience",
        type=int_from(1),
        default=None,
        help="stop when validation accuracy has not improved for this many epochs (default: run every epoch)",
    )
    return options


def add_run_options(parser: argparse.ArgumentParser) -> Options:
    """The options of a training run only: how long (:func:`add_schedule_options`), where it goes, resuming."""
    options = add_schedule_options(parser)
    add = _adder(parser, options)
    add("--out", help="output folder (default: runs/<dataset>)")
    add("--resume", action="store_true", help="continue from --out/checkpoint.npz if it exists")
    add("--overwrite", action="store_true", help="replace the run already in --out")
    add(
        "--allow-config-change",
        action="store_true",
        help="let --resume continue with other options than the checkpoint's (default: refuse)",
    )
    return options


TEXT_DATASET = "shakespeare"
# train's options whose default depends on the job: the convnet's is declared above, the text job's is here.
TEXT_DEFAULTS: dict[str, Any] = {"batch_size": 32, "hidden": 128, "lr": 5e-3, "epochs": 2, "clip": 5.0}
# the text job's own options and their defaults (None until the job is known: given to the convnet, refused)
TEXT_ONLY: dict[str, Any] = {"seq_length": 64, "embed": 32, "cell": "lstm", "train_chars": 0}
# the convnet's options that the text job has no use for: given with --dataset shakespeare, refused
CONVNET_ONLY = ("filters", "filter_size", "batch_norm", "dropout", "weight_scale", "data_path")


def add_text_options(parser: argparse.ArgumentParser, options: Options) -> Options:
    """The text job of ``funcnn train --dataset shakespeare`` (a char-level LSTM): its own options, the dataset
    choice, and, for the options in ``TEXT_DEFAULTS`` (among ``options``, train's), defaults that follow the
    job (see :func:`job_defaults`)."""
    options["dataset"].choices = [*(options["dataset"].choices or ()), TEXT_DATASET]
    options["dataset"].help = "digits and shakespeare (text) are bundled; the others are read from --data-path"
    for name, value in TEXT_DEFAULTS.items():
        options[name].default = None
        options[name].help = (options[name].help or "").replace(")", f"; {TEXT_DATASET}: {value})")
    group = parser.add_argument_group(f"the text job (--dataset {TEXT_DATASET}: a char-level LSTM or RNN)")
    text: Options = {}
    add = _adder(group, text)  # type: ignore[arg-type]  # an argument group adds arguments as its parser does
    add("--seq-length", type=int_from(1), help="characters per training sequence (default: 64)")
    add("--embed", type=int_from(1), help="size of each character's embedding (default: 32)")
    add(
        "--cell",
        choices=["lstm", "rnn", "transformer"],
        help="the recurrent cell, or transformer: a decoder-only model of width --hidden (default: lstm)",
    )
    add(
        "--train-chars",
        type=int_from(2),
        help="train on the first N characters of the training text only, for a quick run (default: all of it)",
    )
    return {**options, **text}


def job_defaults(args: argparse.Namespace) -> argparse.Namespace:
    """``args`` with the job's defaults filled in where an option was not given; an option of the other job
    refused (ValueError, one line)."""
    text = args.dataset == TEXT_DATASET
    declared = train_options()
    if text:
        given = [name for name in CONVNET_ONLY if getattr(args, name) != declared[name].default]
        if given:
            flag = "--" + given[0].replace("_", "-")
            raise ValueError(
                f"{flag} is an option of the convnet; --dataset {TEXT_DATASET} trains a char-level LSTM "
                "(its own options: --seq-length, --embed, --clip, --cell, --train-chars, --hidden)"
            )
    else:
        given = [name for name in TEXT_ONLY if getattr(args, name) is not None]
        if given:
            flag = "--" + given[0].replace("_", "-")
            raise ValueError(f"{flag} is an option of the text job (--dataset {TEXT_DATASET}), not of the convnet")
    for name, value in TEXT_DEFAULTS.items():
        if getattr(args, name) is None:
            setattr(args, name, value if text else declared[name].default)
    for name, value in TEXT_ONLY.items():
        if text and getattr(args, name) is None:
            setattr(args, name, value)
    return args


def train_options() -> Options:
    """Every option of ``funcnn train``, by its Python name (what a sweep may search or fix)."""
    parser = Parser(prog="funcnn train")
    return {**add_model_options(parser), **add_run_options(parser)}


def add_sweep_options(parser: argparse.ArgumentParser) -> Options:
    """The options of ``funcnn sweep``: train's, but for its output and resuming, and the sweep's own."""
    options = {**add_model_options(parser), **add_schedule_options(parser)}
    add = _adder(parser, options)
    add("--trials", type=int_from(1), default=20, help="trials in the study, over all workers (default: 20)")
    add("--workers", type=int_from(1), help="worker processes here (default: the number of cores)")
    add(
        "--space",
        action="append",
        default=[],
        metavar="OPTION=KIND:LOW:HIGH",
        help="a range to search, kind log, uniform, int (lr=log:1e-4:1e-2, hidden=int:32:256) or choice "
        "(optimizer=choice:adam,sgd_momentum); repeat for more (default: lr and reg on a log scale)",
    )
    add("--space-file", help="a TOML file of ranges: lr = {log = [1e-4, 1e-2]} per line")
    add("--sampler", choices=["random", "tpe"], default="random", help="(default: random)")
    add(
        "--pruner",
        choices=["median", "halving", "none"],
        default="median",
        help="stop poor trials early: median or successive halving (default: median)",
    )
    add("--out", help="output folder (default: sweeps/<dataset>)")
    add(
        "--storage",
        help="a database URL (postgresql://user@host:port/db) or a journal file on a shared "
        "filesystem, for workers on many machines (default: <out>/study.journal)",
    )
    add("--study", default="sweep", help="the study's name in --storage (default: sweep)")
    add(
        "--heartbeat",
        type=int_from(1),
        default=10,
        help="seconds between a worker's signs of life; a trial silent for twice that is retried (default: 10)",
    )
    add(
        "--resume",
        action="store_true",
        help="continue the study (refused when there is none; rerunning the command continues it too)",
    )
    return options


def sweep_options() -> Options:
    """Every option of ``funcnn sweep``, by its Python name."""
    return add_sweep_options(Parser(prog="funcnn sweep"))
