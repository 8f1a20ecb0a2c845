"""The documentation site builds with ``mkdocs build --strict`` (a broken link or anchor, a page missing from the
nav, an API entry that does not resolve or a docstring griffe cannot parse fails), and its API pages cover every
name ``funcnn`` exports. Skipped only where mkdocs is not installed (the `docs` extra; the README's test command
and .ci/run install it)."""

import ast
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def exported_names() -> dict[str, str]:
    """The names ``funcnn/__init__.py`` re-exports (``from module import name as name``), with their module."""
    tree = ast.parse((ROOT / "funcnn" / "__init__.py").read_text())
    imports = [node for node in tree.body if isinstance(node, ast.ImportFrom)]
    return {alias.name: str(node.module) for node in imports for alias in node.names if alias.asname == alias.name}


def test_the_api_pages_cover_every_exported_name():
    """Each as ``::: funcnn.name`` or within a module page (``::: funcnn.losses``)."""
    api = "\n".join(page.read_text() for page in sorted((ROOT / "docs" / "api").glob("*.md")))
    documented = set(re.findall(r"^::: ([\w.]+)", api, flags=re.M))
    missing = {name for name, module in exported_names().items() if not {f"funcnn.{name}", module} & documented}
    assert not missing, f"add `::: funcnn.<name>` to a page of docs/api/ for: {sorted(missing)}"


def test_mkdocs_build_strict(tmp_path):
    pytest.importorskip("mkdocs", reason="the docs extra is not installed")
    pytest.importorskip("mkdocstrings", reason="the docs extra is not installed")
    build = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )
    assert build.returncode == 0, build.stdout + build.stderr
    assert (tmp_path / "site" / "api" / "training" / "index.html").read_text().count("funcnn.fit") > 0
