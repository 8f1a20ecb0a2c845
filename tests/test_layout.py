"""The shape of the package: modules are never shadowed by functions, no module reaches into another's
private names, each package imports only what the table of docs/architecture.md allows, and the import graph
has no circle anywhere (funcnn/app/ included)."""

import ast
import importlib
import types
from pathlib import Path

import pytest

import funcnn

PACKAGE = Path(funcnn.__file__).parent
# Modules the layers may build on; everything else (combinators, training, checking, tools) sits above them.
OPTIONAL = {"optuna", "onnx", "onnxruntime", "matplotlib", "tqdm"}
BELOW_LAYERS = {"funcnn", "funcnn.core", "funcnn.tree", "funcnn._checks", "funcnn.kernels", "funcnn.layers"}
ARCHITECTURE = Path(__file__).resolve().parents[1] / "docs" / "architecture.md"

# What each part of funcnn (a package, or a module at the top) may import besides itself: the table of
# docs/architecture.md, as data. "funcnn" is the package's face (funcnn/__init__.py, ``import funcnn``).
BASE = {"funcnn._checks", "funcnn.tree"}
MAY_IMPORT: dict[str, set[str]] = {
    "funcnn._checks": {"funcnn.tree"},
    "funcnn.tree": set(),
    "funcnn.kernels": set(),
    "funcnn.core": BASE,
    "funcnn.data": {"funcnn._checks"},
    "funcnn.augment": {"funcnn._checks"},
    "funcnn.layers": BASE | {"funcnn.core", "funcnn.kernels"},
    "funcnn.losses": BASE | {"funcnn.core"},
    "funcnn.optim": BASE | {"funcnn.kernels"},
    "funcnn.nets": BASE | {"funcnn.core", "funcnn.layers", "funcnn.losses"},
    "funcnn.gradcheck": BASE | {"funcnn.core"},
    "funcnn.analysis": BASE | {"funcnn.core", "funcnn.layers"},
    "funcnn.export": BASE | {"funcnn.core", "funcnn.layers"},
    "funcnn.training": BASE
    | {"funcnn.core", "funcnn.layers", "funcnn.losses", "funcnn.optim", "funcnn.augment", "funcnn.gradcheck"},
    "funcnn": BASE
    | {
        "funcnn.core",
        "funcnn.layers",
        "funcnn.losses",
        "funcnn.optim",
        "funcnn.augment",
        "funcnn.nets",
        "funcnn.gradcheck",
        "funcnn.analysis",
        "funcnn.training",
    },
    "funcnn.testing": BASE | {"funcnn", "funcnn.core", "funcnn.layers"},
    "funcnn.plot": BASE | {"funcnn.core", "funcnn.optim", "funcnn.training"},
    "funcnn.conftest": {"funcnn"},
}
LIBRARY = set(MAY_IMPORT) - {"funcnn.conftest"}
MAY_IMPORT["funcnn.app"] = LIBRARY
MAY_IMPORT["funcnn.__main__"] = {"funcnn.app"}


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
        # a private module is for the package that holds it, its subpackages included (funcnn._checks: all of funcnn)
        own_package = module.startswith(source.rpartition(".")[0] + ".") or package_of(module) == package_of(source)
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


def part_of(module: str) -> str:
    """The row of the table ``module`` belongs to: its package under funcnn, or itself at the top."""
    return ".".join(module.split(".")[:2])


def imported_modules(module: str) -> set[str]:
    """The funcnn modules ``module`` imports (``from package import module`` counts as the module)."""
    targets = set()
    for source, name in imports(MODULES[module]):
        targets.add(f"{source}.{name}" if f"{source}.{name}" in MODULES else source)
    return targets - {module}


@pytest.mark.parametrize("module", sorted(MODULES))
def test_each_part_imports_only_what_the_table_allows(module):
    allowed = MAY_IMPORT[part_of(module)] | {part_of(module)}
    wrong = sorted(t for t in imported_modules(module) if part_of(t) not in allowed)
    assert not wrong, f"{module} imports {wrong}: {part_of(module)} may import only {sorted(allowed)}"


def test_every_part_of_funcnn_has_a_row_in_the_table():
    assert {part_of(module) for module in MODULES} == set(MAY_IMPORT)


def find_circle(graph: dict[str, set[str]]) -> list[str] | None:
    """A circle of ``graph`` (each node's successors) as a path that ends where it starts, or None."""
    state: dict[str, str] = {}  # "open" while on the path being walked, "done" once all it reaches is known

    def walk(node: str, path: list[str]) -> list[str] | None:
        state[node] = "open"
        for successor in sorted(graph.get(node, ())):
            if state.get(successor) == "open":
                return [*path[path.index(successor) :], successor]
            if successor not in state:
                found = walk(successor, [*path, successor])
                if found:
                    return found
        state[node] = "done"
        return None

    for start in sorted(graph):
        if start not in state:
            found = walk(start, [start])
            if found:
                return found
    return None


def test_find_circle_finds_a_circle_and_only_one():
    assert find_circle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_circle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None


def test_no_import_circle_between_modules():
    """Module by module, every import counted, the lazy ones inside functions too (a package's face importing
    its own private modules, which import each other, is not a circle: the face is not imported back)."""
    circle = find_circle({module: imported_modules(module) for module in MODULES})
    assert circle is None, " -> ".join(circle)


def test_no_import_circle_between_parts_and_the_table_has_none():
    actual = {part: set() for part in MAY_IMPORT}
    for module in MODULES:
        actual[part_of(module)] |= {part_of(t) for t in imported_modules(module)} - {part_of(module)}
    assert find_circle(actual) is None
    assert find_circle({part: allowed - {part} for part, allowed in MAY_IMPORT.items()}) is None


def short(part: str) -> str:
    return part if part == "funcnn" else part.removeprefix("funcnn.")


def test_the_architecture_page_shows_the_table():
    """docs/architecture.md lists each part with what it may import (names without ``funcnn.``), as MAY_IMPORT."""
    rows = {}
    for line in ARCHITECTURE.read_text().splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if line.startswith("| `") and len(cells) == 3:
            rows[cells[0].strip("`")] = {name.strip(" `") for name in cells[1].split(",") if name.strip(" `-")}
    assert rows == {short(part): {short(t) for t in allowed} for part, allowed in MAY_IMPORT.items()}


def reexports(path: Path) -> set[str]:
    """The names a module re-exports: ``from module import name as name``."""
    return {
        alias.name
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.ImportFrom)
        for alias in node.names
        if alias.asname == alias.name
    }


def test_one_public_path_per_name():
    """Each package's face re-exports its own private modules' names, and no name is re-exported by two faces
    (``funcnn/__init__.py`` re-exports the faces' names once more, as ``fn.name``)."""
    faces = {module: reexports(path) for module, path in MODULES.items() if path.name == "__init__.py"}
    del faces["funcnn"]
    seen: dict[str, str] = {}
    for face, names in sorted(faces.items()):
        for name in names:
            assert name not in seen, f"{name} is re-exported by both {seen[name]} and {face}"
            seen[name] = face
    for module, path in MODULES.items():
        if path.name != "__init__.py":
            assert not reexports(path), f"{module} re-exports {sorted(reexports(path))}: only a package's face does"
