"""The README's Python examples run as written."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def test_readme_has_examples():
    assert len(BLOCKS) >= 3


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_readme_example_runs(index, capsys):
    exec(compile(BLOCKS[index], f"README.md block {index}", "exec"), {})


def test_quick_start_has_exactly_two_commands_and_ci_runs_the_second():
    quick_start = README.read_text().split("## Quick start", 1)[1]
    block = re.search(r"```bash\n(.*?)```", quick_start, flags=re.S).group(1)
    commands = [line for line in block.splitlines() if line.strip()]
    assert len(commands) == 2
    ci = (README.parent / ".ci" / "run").read_text()
    assert commands[1] in ci.splitlines()


@pytest.mark.parametrize("module", ["export", "plot"])
def test_readme_imports_the_modules_that_import_funcnn_leaves_out(module):
    """``import funcnn`` does not load funcnn.export or funcnn.plot (they would pull onnx, matplotlib):
    the README says to import them, and each of its code spans that uses one runs after a plain ``import funcnn``."""
    text = README.read_text()
    assert f"`import funcnn.{module}" in text
    spans = re.findall(rf"`([^`\n]*\bfuncnn\.{module}\.\w+[^`\n]*)`", text)
    for span in spans:
        uses = re.findall(rf"funcnn\.{module}\.\w+", span)
        lines = ["import funcnn", *re.findall(r"import funcnn\.\w+", span), *uses]
        run = subprocess.run([sys.executable, "-c", "\n".join(lines)], capture_output=True, text=True)
        assert run.returncode == 0, f"README's `{span}` fails after import funcnn: {run.stderr[-300:]}"
