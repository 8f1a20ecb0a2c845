"""The code's form is part of the test command: ruff's lint and format rules on the whole tree (its lint on the
notebooks too) and ``mypy --strict`` on funcnn/ (both configured in pyproject.toml, their versions pinned in the test
extra)."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def run(*command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", *command], cwd=ROOT, capture_output=True, text=True, timeout=600)


@pytest.mark.parametrize("command", [("ruff", "check", "."), ("ruff", "format", "--check", "."), ("mypy",)])
def test_the_tree_passes(command):
    result = run(*command)
    assert result.returncode == 0, f"{' '.join(command)} failed:\n{result.stdout}{result.stderr}"


def test_ruff_lints_every_notebook():
    """The notebooks' code is linted like the rest (``ruff check`` reads .ipynb cells), though not reformatted."""
    listed = run("ruff", "check", "--show-files", ".").stdout
    notebooks = sorted((ROOT / "notebooks").glob("*.ipynb"))
    assert notebooks and all(str(notebook) in listed for notebook in notebooks), listed[-2000:]


def test_users_type_checkers_see_the_annotations(tmp_path):
    """funcnn ships py.typed: mypy, run on a user's script outside the tree, reads funcnn's annotations (without
    the marker it treats the package as untyped and reports nothing here): a Literal mode, the conv and pool
    keyword sets (Unpack[ConvParam], PoolParam) and the tree predicates' narrowing (TypeIs)."""
    script = tmp_path / "user.py"
    script.write_text(
        "import numpy as np\n"
        "import funcnn as fn\n"
        "y, vjp = fn.relu((), np.ones(3))\n"
        "fn.check_vjp(fn.relu, (), np.ones(3), mode='slow')\n"  # 4: not one of the Literal modes
        "fn.conv_relu(stride=1, padding=1)\n"  # 5: conv's keyword is pad
        "fn.conv_relu_pool({'stride': 1, 'pad': 1}, {'pool_size': 2})\n"  # 6: not a pool keyword
        "def first(tree: object) -> object:\n"
        "    if fn.tree.is_node(tree):\n"
        "        reveal_type(tree)\n"  # 9: narrowed by TypeIs
        "    return tree\n"
    )
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--no-incremental", "--ignore-missing-imports", str(script)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    expected = [
        'user.py:4: error: Argument "mode" to "check_vjp"',
        'user.py:5: error: Unexpected keyword argument "padding" for "conv_relu"',
        'user.py:6: error: Argument 2 to "conv_relu_pool" has incompatible type "dict[str, int]"; expected "PoolParam',
        'user.py:9: note: Revealed type is "dict[str, Any] | tuple[Any, ...] | list[Any]"',
    ]
    assert result.returncode == 1 and all(line in result.stdout for line in expected), result.stdout
    assert "py.typed" not in result.stdout
