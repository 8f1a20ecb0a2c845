"""The README's and the guide's (docs/*.md) Python examples run as written; the quick start is two commands."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
PAGES = [README, *sorted((ROOT / "docs").rglob("*.md"))]
BLOCKS = [
    (page.relative_to(ROOT).as_posix(), index, block)
    for page in PAGES
    for index, block in enumerate(re.findall(r"```python\n(.*?)```", page.read_text(), flags=re.S))
]


def test_the_readme_and_the_guide_have_examples():
    names = {page for page, _, _ in BLOCKS}
    assert "README.md" in names and len(names) >= 7, names


@pytest.mark.parametrize(("page", "index", "block"), BLOCKS, ids=[f"{page}:{index}" for page, index, _ in BLOCKS])
def test_example_runs(page, index, block, capsys):
    exec(compile(block, f"{page} block {index}", "exec"), {})


def test_quick_start_has_exactly_two_commands_and_ci_runs_the_second():
    quick_start = README.read_text().split("## Quick start", 1)[1]
    block = re.search(r"```bash\n(.*?)```", quick_start, flags=re.S).group(1)
    commands = [line for line in block.splitlines() if line.strip()]
    assert len(commands) == 2
    ci = (ROOT / ".ci" / "run").read_text()
    assert commands[1] in ci.splitlines()
    extras = re.search(r'-e "\.\[([^]]*)\]"', commands[1]).group(1).split(",")
    assert "docs" in extras, "the test command builds the docs site (tests/test_docs_site.py): it needs the docs extra"


@pytest.mark.parametrize("module", ["export", "plot"])
def test_the_guide_imports_the_modules_that_import_funcnn_leaves_out(module):
    """``import funcnn`` does not load funcnn.export or funcnn.plot (they would pull onnx, matplotlib):
    the guide says to import them, and each of its code spans that uses one runs after a plain ``import funcnn``."""
    text = "\n".join(page.read_text() for page in PAGES)
    assert f"`import funcnn.{module}" in text
    spans = re.findall(rf"`([^`\n]*\bfuncnn\.{module}\.\w+[^`\n]*)`", text)
    for span in spans:
        uses = re.findall(rf"funcnn\.{module}\.\w+", span)
        lines = ["import funcnn", *re.findall(r"import funcnn\.\w+", span), *uses]
        run = subprocess.run([sys.executable, "-c", "\n".join(lines)], capture_output=True, text=True)
        assert run.returncode == 0, f"the guide's `{span}` fails after import funcnn: {run.stderr[-300:]}"
