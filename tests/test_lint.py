"""The code's form is part of the test command: ruff's lint and format rules on the whole tree and
``mypy --strict`` on funcnn/ (both configured in pyproject.toml, their versions pinned in the test extra)."""

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


def test_users_type_checkers_see_the_annotations(tmp_path):
    """funcnn ships py.typed: mypy, run on a user's script outside the tree, reads funcnn's annotations (without
    the marker it treats the package as untyped and reports nothing here)."""
    script = tmp_path / "user.py"
    script.write_text(
        "import numpy as np\n"
        "import funcnn as fn\n"
        "y, vjp = fn.relu((), np.ones(3))\n"
        "fn.check_vjp(fn.relu, (), np.ones(3), mode='slow')\n"  # not one of the Literal modes
    )
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--no-incremental", "--ignore-missing-imports", str(script)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 1 and 'user.py:4: error: Argument "mode" to "check_vjp"' in result.stdout, result.stdout
    assert "py.typed" not in result.stdout
