"""The options of ``funcnn train`` and ``funcnn doctor``, declared once, each value checked by the parser
(an ``argparse`` ``type=`` built on :mod:`funcnn.validation`), so a bad value is one line from the parser
before anything is loaded or created."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any, NoReturn, TypeVar

from funcnn.validation import fraction, int_at_least, number_at_least

T = TypeVar("T")


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line, ``funcnn train: argument --reg: must be ...``, exit status 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: {message}\n")


def _checked(parse: Callable[[str], T], check: Callable[[T], Any], rule: str) -> Callable[[str], T]:
    """An argparse type: ``parse`` the text and ``check`` the value (a funcnn.validation check); either failing
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


_standard_deviation = _checked(float, lambda v: number_at_least("option", "value", v, 0, strict=True),
                               "'he' or a number > 0 and finite")


def weight_scale(text: str) -> str | float:
    """``--weight-scale``: "he" or a positive standard deviation."""
    return text if text == "he" else _standard_deviation(text)


def add_model_options(parser: argparse.ArgumentParser) -> None:
    """The options train and doctor share: the data set, the network, its init, the optimizer and the batches."""
    add = parser.add_argument
    add("--dataset", choices=["digits", "mnist", "fashion-mnist", "cifar10"], default="digits",
        help="digits is bundled; the others are read from --data-path (default: digits)")
    add("--data-path", help="folder with MNIST/Fashion-MNIST IDX files or CIFAR-10 binary batches")
    add("--batch-size", type=int_from(1), default=50, help="examples per step (default: 50)")
    add("--optimizer", choices=["sgd", "sgd_momentum", "rmsprop", "adam"], default="adam", help="(default: adam)")
    add("--lr", type=number_above(0, strict=True), default=2e-3, help="learning rate (default: 2e-3)")
    add("--reg", type=number_above(0, strict=False), default=0.0,
        help="L2 regularization strength on weights (default: 0)")
    add("--filters", type=int_from(1), default=32, help="conv filters (default: 32)")
    add("--filter-size", type=int_from(1), default=3, help="conv kernel size, odd (default: 3)")
    add("--hidden", type=int_from(1), default=100, help="hidden units of the affine layer (default: 100)")
    add("--batch-norm", action="store_true", help="add (spatial) batch norm before each hidden relu")
    add("--dropout", type=_checked(float, lambda v: fraction("option", "value", v), "a number in [0, 1)"), default=0.0,
        help="dropout probability after the hidden affine layer (default: 0)")
    add("--weight-scale", type=weight_scale, default="he",
        help="'he' or a standard deviation such as 1e-3 (default: he)")
    add("--dtype", choices=["float32", "float64"], default="float32", help="(default: float32)")
    add("--seed", type=int_from(0), default=0, help="seed of the init and of the minibatch order (default: 0)")


def add_run_options(parser: argparse.ArgumentParser) -> None:
    """The options of a training run only: how long, the learning-rate decay, where it goes, resuming, stopping."""
    add = parser.add_argument
    add("--epochs", type=int_from(1), default=15, help="passes over the training set (default: 15)")
    add("--lr-decay", type=number_above(0, strict=True), default=0.9,
        help="learning rate factor after each epoch (default: 0.9)")
    add("--patience", type=int_from(1), default=None,
        help="stop when validation accuracy has not improved for this many epochs (default: run every epoch)")
    add("--out", help="output folder (default: runs/<dataset>)")
    add("--resume", action="store_true", help="continue from --out/checkpoint.npz if it exists")
    add("--overwrite", action="store_true", help="replace the run already in --out")
    add("--allow-config-change", action="store_true",
        help="let --resume continue with other options than the checkpoint's (default: refuse)")
