"""The shape of the package: modules are never shadowed by functions, no module reaches into another's
private names, and the import graph is layered (layers at the bottom, tools on top)."""

import ast
import importlib
import types
from pathlib import Path

import pytest

import funcnn

PACKAGE = Path(funcnn.__file__).parent
# Modules the layers may build on; everything else (combinators, training, checking, tools) sits above them.
OPTIONAL = {"optuna", "onnx", "onnxruntime", "matplotlib", "tqdm"}
BELOW_LAYERS = {
    "funcnn", "funcnn.core", "funcnn.handover", "funcnn.tree", "funcnn.validation", "funcnn.kernels", "funcnn.layers"
}  # fmt: skip


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def imports(path: Path) -> list[tuple[str, str | None]]:
    """(module, name) for every ``import module`` and ``from module import name`` of funcnn in ``path``."""
    found: list[tuple[str, str | None]] = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found += [(node.module, alias.name) for alias in node.names]
        elif isinstance(node, ast.Import):
            found += [(alias.name, None) for alias in node.names]
    return [(module, name) for module, name in found if module.split(".")[0] == "funcnn"]


def package_of(module: str) -> str:
    return module if MODULES[module].name == "__init__.py" else module.rpartition(".")[0]


@pytest.mark.parametrize("module", sorted(set(MODULES) - {"funcnn.__main__"}))  # importing __main__ runs the command
def test_import_funcnn_module_gives_a_module(module):
    try:
        imported = importlib.import_module(module)
    except ModuleNotFoundError as missing:  # a module of an optional extra (the sweep's optuna) without it
        if missing.name not in OPTIONAL:
            raise
        pytest.skip(f"{module} needs {missing.name} (an optional extra)")
    parent, _, leaf = module.rpartition(".")
    assert isinstance(imported, types.ModuleType)
    if parent:  # ``import funcnn.x as m`` reads the attribute x of funcnn: it must be the module, not a function
        assert isinstance(getattr(importlib.import_module(parent), leaf), types.ModuleType), module


@pytest.mark.parametrize("module", sorted(MODULES))
def test_no_module_reaches_into_another_modules_private_names(module):
    for source, name in imports(MODULES[module]):
        if source == module:
            continue
        private_module = any(part.startswith("_") for part in source.split(".")[1:])
        own_package = package_of(module) == source.rpartition(".")[0] or package_of(module) == package_of(source)
        assert not (private_module and not own_package), f"{module} imports the private module {source}"
        assert name is None or not name.startswith("_") or name == "__version__", f"{module} imports {source}.{name}"


@pytest.mark.parametrize("module", sorted(m for m in MODULES if m.startswith(("funcnn.layers", "funcnn.kernels"))))
def test_layers_sit_at_the_bottom(module):
    for source, name in imports(MODULES[module]):
        target = source if name is None or f"{source}.{name}" not in MODULES else f"{source}.{name}"
        assert any(target == below or target.startswith(below + ".") for below in BELOW_LAYERS - {"funcnn"}), (
            f"{module} imports {target}, which sits above the layers"
        )


@pytest.mark.parametrize(
    "module", sorted(m for m in MODULES if not m.startswith("funcnn.app") and m != "funcnn.__main__")
)
def test_the_library_never_imports_the_app(module):
    assert not [s for s, _ in imports(MODULES[module]) if s.startswith("funcnn.app")], module
