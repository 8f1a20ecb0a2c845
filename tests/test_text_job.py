"""``funcnn train --dataset shakespeare``: a short run of the text job, resuming it, its options checked."""

from __future__ import annotations

import json
import math
import re

import numpy as np
import pytest

from funcnn.app.cli import main
from funcnn.app.text_job import SAMPLE_LENGTH
from funcnn.optim import sgd, with_clipping

# a tiny model on the first 1,500 training characters: a few steps per epoch
TINY = ["train", "--dataset", "shakespeare", "--hidden", "8", "--embed", "4", "--seq-length", "16",
        "--batch-size", "32", "--train-chars", "1500"]  # fmt: skip
FINAL = re.compile(r"^test loss (\d+\.\d{4}) nats/char \((\d+\.\d{4}) bits/char\)$", re.M)


def run(capsys, *args: str) -> tuple[int, str, str]:
    code = main([*TINY, *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_a_short_run_ends_with_the_test_loss_and_a_sample(tmp_path, capsys):
    code, out, _ = run(capsys, "--epochs", "2", "--out", str(tmp_path))
    assert code == 0
    match = FINAL.search(out)
    assert match, out
    nats, bits = map(float, match.groups())
    assert bits == pytest.approx(nats / math.log(2), abs=1e-4)  # both printed to 4 decimals
    sample = out[out.index("sample:\n") + len("sample:\n") :].rsplit("\n", 2)[0]
    assert len(sample) == SAMPLE_LENGTH
    summary = json.loads((tmp_path / "history.json").read_text())
    assert summary["test_loss_nats_per_char"] == pytest.approx(nats, abs=5e-5)  # the printed value, rounded
    assert len(summary["history"]["val_acc_history"]) == 2
    assert (tmp_path / "checkpoint.npz").exists()
    epoch_lines = [line for line in out.splitlines() if line.startswith("epoch ")]
    assert len(epoch_lines) == 2 and all(re.search(r" [\d,]+ seq/s ", line) for line in epoch_lines), out
    assert "img/s" not in out  # the text job counts sequences, not images


def test_a_resumed_run_continues_the_saved_one_exactly(tmp_path, capsys):
    whole, parts = tmp_path / "whole", tmp_path / "parts"
    assert run(capsys, "--epochs", "2", "--out", str(whole))[0] == 0
    assert run(capsys, "--epochs", "1", "--out", str(parts))[0] == 0
    code, out, _ = run(capsys, "--epochs", "2", "--out", str(parts), "--resume")
    assert code == 0 and "resumed from" in out and "after epoch 1" in out
    with np.load(whole / "checkpoint.npz") as a, np.load(parts / "checkpoint.npz") as b:
        keys = [key for key in a.files if key.startswith("params/")]
        assert keys and sorted(keys) == sorted(k for k in b.files if k.startswith("params/"))
        for key in keys:
            assert np.array_equal(a[key], b[key]), key  # the same steps on the same batches: the same floats


def test_a_resume_with_another_model_is_refused(tmp_path, capsys):
    assert run(capsys, "--epochs", "1", "--out", str(tmp_path))[0] == 0
    code, _, err = run(capsys, "--epochs", "2", "--out", str(tmp_path), "--resume", "--clip", "1")
    assert code == 2 and "another configuration" in err and "clip" in err
    assert len(err.strip().splitlines()) == 1


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--filters", "8"], "--filters is an option of the convnet"),
        (["--batch-norm"], "--batch-norm is an option of the convnet"),
        (["--clip", "0"], "argument --clip: must be a number > 0"),
        (["--seq-length", "0"], "argument --seq-length: must be an int >= 1"),
        (["--cell", "gru"], "argument --cell: invalid choice"),
        (["--train-chars", "1"], "argument --train-chars: must be an int >= 2"),
        (["--resume", "--overwrite"], "--resume and --overwrite contradict each other"),
    ],
)
def test_bad_options_are_refused_in_one_line(tmp_path, capsys, args, message):
    code, out, err = run(capsys, *args, "--out", str(tmp_path / "run"))
    assert code == 2
    assert message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "run").exists()


def test_the_convnet_refuses_the_text_jobs_options(tmp_path, capsys):
    assert main(["train", "--seq-length", "8", "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert "--seq-length is an option of the text job" in err and len(err.strip().splitlines()) == 1


def test_clipping_scales_the_gradient_to_the_global_norm_and_no_further():
    grads = {"a": np.array([3.0, 0.0]), "b": np.array([[4.0]])}  # global norm 5
    params = {"a": np.zeros(2), "b": np.zeros((1, 1))}
    opt = with_clipping(sgd(1.0), 1.0)  # what the text job clips with
    new, _ = opt.update(grads, opt.init(params), params)
    assert np.allclose(new["a"], [-0.6, 0.0]) and np.allclose(new["b"], [[-0.8]])  # a step of norm 1, one rounding
    loose = with_clipping(sgd(1.0), 10.0)
    new, _ = loose.update(grads, loose.init(params), params)
    assert np.array_equal(new["a"], [-3.0, 0.0])  # below the norm: untouched
