"""A sweep's search space: per ``funcnn train`` option, a log-uniform, uniform, integer or categorical range,
from the command line (``--space lr=log:1e-4:1e-2``) or a TOML file (``lr = {log = [1e-4, 1e-2]}``)."""

from __future__ import annotations

import argparse
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from funcnn.app.options import Options

KINDS = ("log", "uniform", "int", "choice")
DEFAULT_SPACE = ("lr=log:1e-4:1e-2", "reg=log:1e-5:1e-1")
"""The course's first search: learning rate and regularization strength, both on a log scale."""


class Suggests(Protocol):
    """What a range needs of an Optuna trial (``optuna.Trial`` has these)."""

    def suggest_float(self, name: str, low: float, high: float, *, log: bool = ...) -> float: ...
    def suggest_int(self, name: str, low: int, high: int) -> int: ...
    def suggest_categorical(self, name: str, choices: Sequence[Any]) -> Any: ...


@dataclass(frozen=True)
class Range:
    """The values a sweep tries for one option: ``low``..``high`` for log/uniform/int, ``choices`` for choice."""

    option: str  # the train option's Python name, e.g. "lr", "batch_size"
    kind: str
    low: float = 0.0
    high: float = 0.0
    choices: tuple[Any, ...] = ()

    def suggest(self, trial: Suggests) -> Any:
        """The trial's value for this option."""
        if self.kind == "choice":
            return trial.suggest_categorical(self.option, list(self.choices))
        if self.kind == "int":
            return trial.suggest_int(self.option, int(self.low), int(self.high))
        return trial.suggest_float(self.option, self.low, self.high, log=self.kind == "log")

    def bounds(self) -> tuple[Any, ...]:
        """The extreme values this range can give (to check them as train options)."""
        return self.choices if self.kind == "choice" else (self.low, self.high)


def _option_types(train: Options) -> Options:
    """The searchable options of ``funcnn train`` by Python name: numbers, choices and flags (not paths)."""
    return {
        dest: a
        for dest, a in train.items()
        if dest not in ("data_path", "out", "resume", "overwrite", "allow_config_change")
    }


def _number(where: str, text: Any, integer: bool) -> float:
    whole = "a whole number" if integer else "a number"
    try:
        if isinstance(text, bool) or (integer and isinstance(text, float)):
            raise TypeError(text)
        return int(text) if integer else float(text)
    except (TypeError, ValueError):
        raise ValueError(f"{where}: expected {whole}, got {text!r}") from None


def _numeric(action: argparse.Action) -> str | None:
    """ "float" or "int" for an option whose parser takes such numbers (probed with its type), else None."""
    for kind, probe in (("float", "0.5"), ("int", "1")):
        try:
            if callable(action.type) and action.choices is None and isinstance(action.type(probe), (int, float)):
                return kind
        except (argparse.ArgumentTypeError, TypeError, ValueError):
            pass
    return None


def _choice_value(where: str, action: argparse.Action, value: Any) -> Any:
    """A categorical value as the option takes it: a flag's true/false, or what the option's parser makes of it."""
    if action.nargs == 0:  # a flag such as --batch-norm
        words = {"true": True, "false": False}
        if isinstance(value, bool) or str(value).lower() in words:
            return value if isinstance(value, bool) else words[str(value).lower()]
        raise ValueError(f"{where}: a flag takes true or false, got {value!r}")
    if action.choices is not None and str(value) not in action.choices:
        raise ValueError(f"{where}: {value!r} is not one of {', '.join(map(str, action.choices))}")
    if not callable(action.type):
        return str(value)
    try:
        return action.type(str(value))
    except (argparse.ArgumentTypeError, ValueError) as error:
        raise ValueError(f"{where}: {action.option_strings[0]} {error}") from None


def make_range(where: str, option: str, kind: str, values: Sequence[Any], train: Options) -> Range:
    """A checked :class:`Range`; ValueError naming ``where`` (the text or file it came from) on any problem."""
    actions = _option_types(train)
    if option not in actions:
        raise ValueError(f"{where}: unknown option {option!r}; searchable: {', '.join(sorted(actions))}")
    if kind not in KINDS:
        raise ValueError(f"{where}: unknown kind {kind!r}; use one of {', '.join(KINDS)}")
    action = actions[option]
    if kind == "choice":
        choices = tuple(_choice_value(where, action, v) for v in values)
        if not choices:
            raise ValueError(f"{where}: an empty choice")
        return Range(option, kind, choices=choices)
    numeric = _numeric(action)
    if numeric is None or action.nargs == 0:
        raise ValueError(f"{where}: --{option.replace('_', '-')} is not a number; search it with choice")
    if numeric == "int" and kind != "int":
        raise ValueError(f"{where}: --{option.replace('_', '-')} takes whole numbers; search it with int")
    if len(values) != 2:
        raise ValueError(f"{where}: a {kind} range needs a low and a high value, got {len(values)} values")
    low, high = (_number(where, v, kind == "int") for v in values)
    if low > high:
        raise ValueError(f"{where}: inverted range, low {low} > high {high}")
    if low == high and kind != "int":
        raise ValueError(f"{where}: empty range, low = high = {low}")
    if kind == "log" and low <= 0:
        raise ValueError(f"{where}: a log range must stay above 0, got low {low}")
    return Range(option, kind, low, high)


def parse_range(text: str, train: Options) -> Range:
    """``option=kind:low:high`` or ``option=choice:a,b,c`` (option as a train option, ``lr``, ``batch-size``)."""
    where = f"--space {text}"
    name, sep, rest = text.partition("=")
    kind, colon, values = rest.partition(":")
    if not sep or not colon:
        raise ValueError(f"{where}: expected option=kind:low:high or option=choice:a,b,...")
    items = values.split(",") if kind == "choice" else values.split(":")
    return make_range(where, name.strip().lstrip("-").replace("-", "_"), kind, [v.strip() for v in items], train)


def read_space_file(path: str | Path, train: Options) -> list[Range]:
    """The ranges of a TOML file whose lines are ``option = {kind = [low, high]}`` (``{choice = [...]}``)."""
    try:
        with open(path, "rb") as f:
            table = tomllib.load(f)
    except tomllib.TOMLDecodeError as error:
        raise ValueError(f"--space-file {path}: not valid TOML: {error}") from None
    ranges = []
    for name, spec in table.items():
        where = f"--space-file {path}: {name}"
        if not isinstance(spec, Mapping) or len(spec) != 1 or not isinstance(next(iter(spec.values())), list):
            raise ValueError(f"{where}: expected {{kind = [values]}} with one kind of {', '.join(KINDS)}, got {spec!r}")
        ((kind, values),) = spec.items()
        ranges.append(make_range(where, name.replace("-", "_"), kind, values, train))
    return ranges


def search_space(texts: Iterable[str], path: str | Path | None, train: Options) -> tuple[Range, ...]:
    """The ranges of ``--space`` texts and a ``--space-file`` (the file first; a text overrides the file's
    range of the same option), or :data:`DEFAULT_SPACE` when neither gives one."""
    ranges = {r.option: r for r in (read_space_file(path, train) if path is not None else [])}
    ranges.update((r.option, r) for r in (parse_range(t, train) for t in texts))
    if not ranges:
        ranges = {r.option: r for r in (parse_range(t, train) for t in DEFAULT_SPACE)}
    return tuple(ranges.values())
