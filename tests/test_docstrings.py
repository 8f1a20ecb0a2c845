"""Every public function has Google-style sections, which the API pages (docs/api/) render as tables: ``Args:``
naming each of its parameters, and ``Returns:`` unless it returns None."""

import importlib
import inspect
import re

import pytest

import funcnn

MODULES = ["optim", "tree", "losses", "nets", "data", "export", "plot", "augment", "testing"]


def public_functions():
    """(name, function) for the top level's re-exported functions and the public functions of MODULES."""
    found = {f"funcnn.{name}": value for name, value in vars(funcnn).items() if inspect.isfunction(value)}
    for short in MODULES:
        module = importlib.import_module(f"funcnn.{short}")
        names = getattr(module, "__all__", [name for name in vars(module) if not name.startswith("_")])
        for name in names:
            value = getattr(module, name)
            home = getattr(value, "__module__", "") or ""
            if inspect.isfunction(value) and (home == module.__name__ or home.startswith(module.__name__ + ".")):
                found.setdefault(f"funcnn.{short}.{name}", value)
    return sorted((name, value) for name, value in found.items() if not name.split(".")[-1].startswith("_"))


FUNCTIONS = public_functions()


def section(doc: str, title: str) -> str | None:
    """The indented body of ``title:`` in a cleaned docstring, or None when it has no such section."""
    match = re.search(rf"^{title}:\n((?:[ \t]+.*\n?|\n)+)", doc, flags=re.M)
    return match.group(1) if match else None


def test_there_are_functions_to_check():
    assert len(FUNCTIONS) > 80 and "funcnn.fit" in dict(FUNCTIONS)


@pytest.mark.parametrize(("name", "function"), FUNCTIONS, ids=[name for name, _ in FUNCTIONS])
def test_public_function_has_args_and_returns(name, function):
    doc = inspect.cleandoc(function.__doc__ or "")
    signature = inspect.signature(function)
    params = [p for p in signature.parameters.values() if p.name not in ("self", "cls")]
    if params:
        args = section(doc, "Args")
        assert args is not None, f"{name}: the docstring has no Args: section"
        documented = set(re.findall(r"^    \**(\w+):", args, flags=re.M))
        missing = [p.name for p in params if p.name not in documented]
        assert not missing, f"{name}: Args: does not describe {missing}"
    if signature.return_annotation not in (None, "None"):
        assert section(doc, "Returns") is not None, f"{name}: the docstring has no Returns: section"
