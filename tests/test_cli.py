import os
import subprocess
import sys
from pathlib import Path

import funcnn.app.problems
from funcnn.app.cli import main

ROOT = Path(__file__).resolve().parents[1]


def test_check_command_prints_every_layer_and_passes(capsys):
    assert main(["check", "--mode", "fast"]) == 0
    out = capsys.readouterr().out
    for title in (
        "affine",
        "conv_naive",
        "max_pool 3x3 s2",
        "batch_norm (train)",
        "dropout (train)",
        "three-layer convnet + svm",
    ):
        assert f"\n{title} " in out
    assert "all correct" in out


def test_check_command_reports_a_wrong_gradient(capsys, monkeypatch):
    import funcnn as fn

    def wrong_relu(params, x):
        y, vjp = fn.relu(params, x)
        return y, lambda dy: ((), 2 * vjp(dy)[1])

    monkeypatch.setattr(
        funcnn.app.problems, "_problems", lambda rng: iter([("relu", wrong_relu, (), rng.standard_normal((3, 3)))])
    )
    assert main(["check"]) == 1
    assert "FAILED: check_vjp: the gradient of x is wrong" in capsys.readouterr().err


def test_importing_funcnn_from_another_program_keeps_its_excepthook(tmp_path):
    """Only the funcnn command prints Ctrl-C during start-up in one line; a program run with -m that
    imports funcnn keeps Python's own excepthook."""
    package = tmp_path / "otherprogram"
    package.mkdir()
    (package / "__init__.py").write_text("import funcnn\n")
    (package / "__main__.py").write_text("import sys\nprint(sys.excepthook is sys.__excepthook__)\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT)])}
    out = subprocess.run(
        [sys.executable, "-m", "otherprogram"], cwd=tmp_path, env=env, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "True"
