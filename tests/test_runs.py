"""Runs under hostile use: nothing overwritten without asking, configuration kept with the checkpoint,
NaN stops training, damaged checkpoints refused, Ctrl-C and bad options give one line."""

import json
import os
import signal
import subprocess
import sys
import zipfile

import numpy as np
import pytest
from fitting import DIGITS, small_fit, small_net
from subprocesses import default_sigint
from test_data import make_mnist

import funcnn.training._fit
from funcnn.app.cli import main
from funcnn.losses import softmax_loss
from funcnn.optim import Optimizer, adam, sgd, sgd_momentum, step_decay
from funcnn.training import (
    TrainingInterrupted,
    batch_starts,
    early_stopping,
    is_ctrl_c,
    load_checkpoint,
    save_checkpoint,
)
from funcnn.tree import tree_allclose, tree_map

SMALL = ["--filters", "2", "--hidden", "8"]


def interrupt_at_epoch(monkeypatch, epoch, inside_numba=False):
    """Ctrl-C while ``fit`` saves ``epoch``; ``inside_numba``: as it arrives when a Numba kernel runs."""
    real_save = funcnn.training._fit.save_checkpoint

    def save(path, tree):
        if int(tree["epoch"]) == epoch:
            if inside_numba:
                raise SystemError(
                    "CPUDispatcher(<function adam_step>) returned a result with an exception set"
                ) from KeyboardInterrupt()
            raise KeyboardInterrupt
        real_save(path, tree)

    monkeypatch.setattr(funcnn.training._fit, "save_checkpoint", save)


def checkpoint_epoch(path):
    with np.load(path, allow_pickle=False) as data:
        return int(data["epoch"])


# ---- 1. a previous run is never overwritten without asking


def test_a_second_train_refuses_to_overwrite_the_first_run(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["train", "--epochs", "2", *SMALL]) == 0
    before = {name: (tmp_path / "runs/digits" / name).read_bytes() for name in ("checkpoint.npz", "history.json")}
    capsys.readouterr()
    assert main(["train", "--epochs", "1", *SMALL]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--out runs/digits already holds a run (checkpoint.npz, history.json" in err
    assert "--resume" in err and "--overwrite" in err
    assert {name: (tmp_path / "runs/digits" / name).read_bytes() for name in before} == before
    assert main(["train", "--epochs", "1", *SMALL, "--overwrite"]) == 0
    assert checkpoint_epoch(tmp_path / "runs/digits/checkpoint.npz") == 1


def test_the_default_output_folder_follows_the_dataset(tmp_path, monkeypatch):
    make_mnist(tmp_path, "train", 20, gz=False, seed=0)
    make_mnist(tmp_path, "test", 5, gz=False, seed=1)
    monkeypatch.chdir(tmp_path)
    assert main(["train", "--dataset", "mnist", "--data-path", str(tmp_path), "--epochs", "1", *SMALL]) == 0
    assert (tmp_path / "runs/mnist/checkpoint.npz").exists() and not (tmp_path / "runs/digits").exists()


# ---- 4. the configuration is saved; a different resume is refused; NaN stops


def test_a_resume_with_other_options_is_refused_listing_them(tmp_path, capsys):
    out = ["--out", str(tmp_path)]
    assert main(["train", "--epochs", "1", *SMALL, *out]) == 0
    ckpt = (tmp_path / "checkpoint.npz").read_bytes()
    capsys.readouterr()
    assert (
        main(["train", "--epochs", "2", *SMALL, *out, "--resume", "--lr", "0.01", "--seed", "3", "--dtype", "float64"])
        == 2
    )
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    for change in ("lr: 0.002 -> 0.01", "seed: 0 -> 3", "dtype: 'float32' -> 'float64'"):
        assert change in err
    assert (tmp_path / "checkpoint.npz").read_bytes() == ckpt
    assert main(["train", "--epochs", "2", *SMALL, *out, "--resume", "--lr", "0.01", "--allow-config-change"]) == 0
    assert checkpoint_epoch(tmp_path / "checkpoint.npz") == 2


@pytest.mark.parametrize("change", [{"batch_size": 4}, {"seed": 1}, {"config": {"lr": 1}}, {"reg": 0.1}])
def test_fit_refuses_a_resume_with_another_configuration(tmp_path, change):
    ckpt = tmp_path / "c.npz"
    small_fit(1, checkpoint=ckpt, config={"lr": 2})
    name = next(iter(change))
    with pytest.raises(
        ValueError, match=rf"written with another configuration \({'lr' if name == 'config' else name}: "
    ):
        small_fit(2, checkpoint=ckpt, resume=True, **{"config": {"lr": 2}, **change})
    small_fit(2, checkpoint=ckpt, resume=True, config={"lr": 2})  # the same configuration resumes
    assert checkpoint_epoch(ckpt) == 2


def test_a_nan_loss_stops_training_and_keeps_the_last_good_checkpoint(tmp_path):
    ckpt = tmp_path / "c.npz"
    small_fit(1, checkpoint=ckpt)
    saved = ckpt.read_bytes()
    calls = []

    def nan_at_the_second_step(scores, y):
        calls.append(1)
        loss, vjp = softmax_loss(scores, y)
        return (np.nan if len(calls) == 2 else loss), vjp

    with pytest.raises(
        ValueError, match=r"fit: the loss is nan at epoch 2, step 2 of 5: training diverged.*keeps epoch 1"
    ):
        small_fit(3, checkpoint=ckpt, resume=True, loss=nan_at_the_second_step)
    assert ckpt.read_bytes() == saved


def test_a_nan_pixel_is_refused_by_example_before_training_not_called_divergence(tmp_path):
    ckpt = tmp_path / "c.npz"
    small_fit(1, checkpoint=ckpt)
    saved = ckpt.read_bytes()
    x = DIGITS.train.x[:40].copy()
    x[5, 0, 3, 2] = np.nan
    with pytest.raises(
        ValueError, match=r"fit: train x holds 1 NaN or infinite values \(the first in example 5, at \(0, 3, 2\)\)"
    ):
        small_fit(3, x=x, checkpoint=ckpt, resume=True)
    assert ckpt.read_bytes() == saved


def test_an_update_to_infinite_params_stops_training_and_keeps_the_last_finite_checkpoint(tmp_path):
    ckpt = tmp_path / "c.npz"
    small_fit(1, checkpoint=ckpt, batch_size=40)  # one step per epoch: the loss of the bad update is never computed
    saved = ckpt.read_bytes()
    base = sgd(0.05)
    overflowing = Optimizer(
        "sgd", base.init, lambda grads, opt_state, params: (tree_map(lambda w: w * np.inf, params), opt_state)
    )
    with (
        np.errstate(invalid="ignore"),
        pytest.raises(
            ValueError,
            match=r"fit: after epoch 2, params/0/b, params/0/w, .* hold NaN or infinity: training diverged .*; "
            r"\S+c.npz keeps epoch 1$",
        ),
    ):
        small_fit(3, checkpoint=ckpt, batch_size=40, resume=True, optimizer=overflowing, allow_config_change=True)
    assert ckpt.read_bytes() == saved


def test_the_command_refuses_to_save_params_that_overflowed(tmp_path, capsys):
    out = tmp_path / "run"
    assert (
        main(
            [
                "train",
                "--lr",
                "1e300",
                "--optimizer",
                "sgd",
                "--batch-size",
                "100000",
                "--epochs",
                "3",
                *SMALL,
                "--out",
                str(out),
            ]
        )
        == 2
    )
    err = capsys.readouterr().err
    assert (
        err.count("\n") == 1
        and "fit: after epoch 1, params/" in err
        and "hold NaN or infinity: training diverged" in err
    )
    assert not out.exists()  # nothing was saved, and the folder made for it is gone


def rewrite_checkpoint(path, **changes):
    """Replace (or, with None, remove) entries of a checkpoint: a damaged but valid zip."""
    with np.load(path, allow_pickle=False) as data:
        arrays = dict(data)
    for key, value in changes.items():
        arrays.pop(key) if value is None else arrays.__setitem__(key, np.asarray(value))
    np.savez(path, **arrays)


@pytest.mark.parametrize(("key", "value", "expected"), [
    ("config", "[1, 2]", r"'config' is not a JSON object of settings \(a JSON list\)"),
    ("config", "{not json", r"'config' is not a JSON object of settings \(Expecting property name"),
    ("config", [["a"]], r"'config' is not a JSON object of settings \(an array of shape \(1, 1\)\)"),
    ("config", None, r"missing \['config'\]"),
    ("epoch", -3, r"'epoch' must be a whole number >= 0, got -3"),
    ("epoch", 1.7, r"'epoch' must be a whole number >= 0, got 1.7"),
    ("opt_state/t", np.nan, r'opt_state: sgd: state\["t"\] must be a whole number >= 0, got nan'),
    ("opt_state/t", "x", r"opt_state: sgd: state\[.t.\] must be a whole number >= 0, got 'x'"),
    (
        "history/loss_history",
        ["a", "b"],
        r"'history/loss_history' must be a list of numbers, got an array of <U1 of shape \(2,\)",
    ),
    (
        "history/loss_history",
        np.ones((3, 3)),
        r"'history/loss_history' must be a list of numbers, got an array of float64 of shape \(3, 3\)",
    ),
    ("history/best_epoch", "x", r"'history/best_epoch' must be a whole number >= 0, got 'x'"),
    ("stopped_by", [["a"]], r"'stopped_by' must be a callback's name or '', got an array of <U1 of shape \(1, 1\)"),
    ("stopped_by", 3, r"'stopped_by' must be a callback's name or '', got an array of int64 of shape \(\)"),
    (
        "history/best_val_acc",
        [0.5, 0.5],
        r"'history/best_val_acc' must be a number, got an array of float64 of shape \(2,\)",
    ),
])  # fmt: skip
def test_a_damaged_entry_of_a_checkpoint_is_refused_naming_it(tmp_path, key, value, expected):
    ckpt = tmp_path / "c.npz"
    small_fit(1, checkpoint=ckpt)
    rewrite_checkpoint(ckpt, **{key: value})
    damaged = ckpt.read_bytes()
    with pytest.raises(ValueError, match=rf"^(fit: )?checkpoint {ckpt}: .*{expected}"):
        small_fit(2, checkpoint=ckpt, resume=True)
    assert ckpt.read_bytes() == damaged


def test_a_run_early_stopping_ended_is_refused_on_resume_unless_it_would_go_on(tmp_path):
    ckpt = tmp_path / "c.npz"
    # a learning rate this small leaves the validation accuracy where the first epoch put it: best epoch 1
    first = small_fit(30, optimizer=sgd(1e-12), checkpoint=ckpt, callbacks=[early_stopping(2)])
    assert first.stopped_by == "patience" and first.history.best_epoch == 1 and len(first.history.val_acc_history) == 3
    saved = ckpt.read_bytes()
    with pytest.raises(
        ValueError,
        match=rf"^fit: checkpoint {ckpt} was stopped early by patience after epoch 3, and "
        r"patience would stop it again; to go on, resume .*larger patience",
    ):
        small_fit(30, optimizer=sgd(1e-12), checkpoint=ckpt, resume=True, callbacks=[early_stopping(2)])
    assert ckpt.read_bytes() == saved
    # a larger patience goes on from epoch 3 until it stops in turn; without early stopping, every epoch asked for runs
    more = small_fit(30, optimizer=sgd(1e-12), checkpoint=ckpt, resume=True, callbacks=[early_stopping(4)])
    assert more.stopped_by == "patience" and len(more.history.val_acc_history) == 5 == checkpoint_epoch(ckpt)
    assert more.history.val_acc_history[:3] == first.history.val_acc_history
    rest = small_fit(7, optimizer=sgd(1e-12), checkpoint=ckpt, resume=True)
    assert rest.stopped_by is None and len(rest.history.val_acc_history) == 7 == checkpoint_epoch(ckpt)


def test_a_checkpoint_saved_before_stopped_by_was_resumes_as_not_stopped(tmp_path):
    ckpt = tmp_path / "c.npz"
    small_fit(2, optimizer=sgd(1e-12), checkpoint=ckpt, callbacks=[early_stopping(1)])
    rewrite_checkpoint(ckpt, stopped_by=None)
    assert small_fit(3, optimizer=sgd(1e-12), checkpoint=ckpt, resume=True).history.best_epoch == 1
    assert checkpoint_epoch(ckpt) == 3


@pytest.mark.parametrize("option", [["--batch-norm"], ["--filters", "3"], ["--optimizer", "sgd"]])
def test_a_resume_that_changes_the_network_lists_the_option_not_missing_keys(tmp_path, capsys, option):
    out = ["--out", str(tmp_path)]
    assert main(["train", "--epochs", "1", *SMALL, *out]) == 0
    capsys.readouterr()
    assert main(["train", "--epochs", "2", *SMALL, *out, "--resume", *option]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "written with another configuration (" in err and "missing" not in err
    assert option[0].removeprefix("--").replace("-", "_") + ": " in err
    assert main(["train", "--epochs", "2", *SMALL, *out, "--resume", *option, "--allow-config-change"]) == 2
    err = capsys.readouterr().err
    assert (
        err.count("\n") == 1
        and "the network changed with the configuration (" in err
        and "cannot continue in another network" in err
    )


@pytest.mark.parametrize(
    "optimizer", [sgd(0.01), sgd_momentum(0.05, momentum=0.5), adam(0.05), sgd(step_decay(0.05, 0.5, 5))]
)
def test_fit_refuses_a_resume_with_other_optimizer_hyperparameters(tmp_path, optimizer):
    ckpt = tmp_path / "c.npz"
    small_fit(1, checkpoint=ckpt)
    with pytest.raises(ValueError, match=r"written with another configuration \(optimizer"):
        small_fit(2, checkpoint=ckpt, resume=True, optimizer=optimizer)
    small_fit(2, checkpoint=ckpt, resume=True, optimizer=sgd(0.05))  # the same hyperparameters resume


def test_nan_params_in_a_checkpoint_are_refused(tmp_path):
    ckpt = tmp_path / "c.npz"
    small_fit(1, checkpoint=ckpt)
    with np.load(ckpt, allow_pickle=False) as data:
        arrays = dict(data)
    arrays["params/1/w"] = arrays["params/1/w"].copy()
    arrays["params/1/w"][0, 0] = np.nan
    np.savez(ckpt, **arrays)
    with pytest.raises(ValueError, match=r"holds NaN or infinite values in params/1/w; refusing to resume"):
        small_fit(2, checkpoint=ckpt, resume=True)


# ---- 6. crashes on ordinary input


def test_a_one_image_last_batch_is_merged_so_batch_norm_trains(tmp_path):
    assert batch_starts(9, 4) == [0, 4] and batch_starts(10, 4) == [0, 4, 8] and batch_starts(1, 4) == [0]
    net = small_net(batch_norm=True)
    result = small_fit(2, x=DIGITS.train.x[:17], y=DIGITS.train.y[:17], net=net)  # 17 = 2 * 8 + 1
    assert len(result.history.loss_history) == 2 * 2
    assert (
        main(["train", "--epochs", "1", "--batch-norm", "--batch-size", "4", *SMALL, "--out", str(tmp_path)]) == 0
    )  # 1197 = 4k + 1


def test_fit_refuses_x_and_y_of_different_lengths():
    with pytest.raises(
        ValueError,
        match=r"fit: train must be \(x, y\) with one label per example, "
        r"got x of shape \(40, 1, 8, 8\) and y of shape \(39,\)",
    ):
        small_fit(1, y=DIGITS.train.y[:39])
    with pytest.raises(ValueError, match=r"fit: epochs must be >= 1, got 0"):
        small_fit(0)


@pytest.mark.parametrize("damage", ["truncated", "empty", "folder", "garbage member"])
def test_a_damaged_checkpoint_is_refused_in_one_line(tmp_path, capsys, damage):
    out = ["--out", str(tmp_path)]
    assert main(["train", "--epochs", "1", *SMALL, *out]) == 0
    ckpt = tmp_path / "checkpoint.npz"
    data = ckpt.read_bytes()
    if damage == "truncated":
        ckpt.write_bytes(data[: len(data) // 2])
    elif damage == "empty":
        ckpt.write_bytes(b"")
    elif damage == "folder":
        ckpt.unlink()
        ckpt.mkdir()
    else:
        with zipfile.ZipFile(ckpt) as archive:
            members = {name: archive.read(name) for name in archive.namelist()}
        with zipfile.ZipFile(ckpt, "w") as archive:
            for name, content in members.items():
                archive.writestr(name, b"not an npy header" if name == "params/0/w.npy" else content)
    capsys.readouterr()
    assert main(["train", "--epochs", "2", *SMALL, *out, "--resume"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"checkpoint {ckpt}" in err
    expected = {
        "truncated": "not a readable .npz file",
        "empty": "not a readable .npz file",
        "folder": "is a folder",
        "garbage member": "'params/0/w' is not an npy array",
    }[damage]
    assert expected in err


def test_a_failed_start_leaves_no_folder_behind(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["train", "--dataset", "mnist", "--data-path", str(tmp_path)]) == 2
    assert "expected IDX file train-images-idx3-ubyte" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize(("options", "expected"), [
    (["--filter-size", "2"], "filter_size must be odd"),
    (["--batch-norm", "--batch-size", "1"], "training needs more than one value per D"),
    (["--weight-scale", "1e30"], "the loss is nan at epoch 1, step 1 of"),
    (["--resume", "--overwrite"], "--resume and --overwrite contradict each other"),
])  # fmt: skip
def test_a_bad_option_leaves_no_empty_folder_behind(tmp_path, capsys, options, expected):
    out = tmp_path / "run"
    with np.errstate(all="ignore"):  # --weight-scale 1e30 overflows, as it should
        assert main(["train", "--epochs", "1", *SMALL, *options, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and expected in err
    assert not out.exists()


def test_an_existing_empty_out_folder_is_kept_after_a_failed_start(tmp_path, capsys):
    with np.errstate(all="ignore"):
        assert main(["train", "--epochs", "1", *SMALL, "--weight-scale", "1e30", "--out", str(tmp_path)]) == 2
    assert tmp_path.is_dir() and not list(tmp_path.iterdir())


def test_overwrite_removes_every_file_of_the_old_run_first(tmp_path, monkeypatch):
    out = ["--out", str(tmp_path)]
    assert main(["train", "--epochs", "1", *SMALL, *out]) == 0
    (tmp_path / "training.png").write_bytes(b"old plot")  # whether or not matplotlib is installed
    interrupt_at_epoch(monkeypatch, 2)
    assert main(["train", "--epochs", "3", *SMALL, *out, "--overwrite", "--seed", "5"]) == 130
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint.npz"]  # the new run's; no old history or plot
    assert checkpoint_epoch(tmp_path / "checkpoint.npz") == 1


def test_resume_refuses_a_folder_with_a_history_but_no_checkpoint(tmp_path, capsys):
    (tmp_path / "history.json").write_text("{}")
    assert main(["train", "--epochs", "1", *SMALL, "--out", str(tmp_path), "--resume"]) == 2
    assert capsys.readouterr().err == (
        f"funcnn train: --out {tmp_path} holds history.json but no checkpoint.npz to resume "
        "from; replace that run with --overwrite, or choose another --out\n"
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["history.json"]


def test_the_history_is_replaced_atomically(tmp_path, monkeypatch):
    out = ["--out", str(tmp_path)]
    assert main(["train", "--epochs", "1", *SMALL, *out]) == 0
    before = (tmp_path / "history.json").read_bytes()
    real_replace = os.replace

    def crash_on_history(src, dst):
        if str(dst).endswith("history.json"):
            raise OSError(28, "No space left on device")
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", crash_on_history)
    assert main(["train", "--epochs", "2", *SMALL, *out, "--resume"]) == 2
    assert (tmp_path / "history.json").read_bytes() == before
    assert not list(tmp_path.glob(".history.json*"))  # the temporary is removed


def test_resume_refuses_other_data_and_accepts_another_weight_scale(tmp_path, capsys):
    (tmp_path / "a").mkdir(), (tmp_path / "b").mkdir()
    for split, seed in (("train", 0), ("test", 1)):
        make_mnist(tmp_path / "a", split, 20, gz=False, seed=seed)
        make_mnist(tmp_path / "b", split, 20, gz=False, seed=seed + 2)
    run = ["train", "--dataset", "mnist", *SMALL, "--out", str(tmp_path / "run")]
    assert main([*run, "--epochs", "1", "--data-path", str(tmp_path / "a")]) == 0
    capsys.readouterr()
    assert main([*run, "--epochs", "2", "--data-path", str(tmp_path / "b"), "--resume"]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1 and f"data_path: '{tmp_path / 'a'}' -> '{tmp_path / 'b'}'" in err
    assert main([*run, "--epochs", "2", "--data-path", str(tmp_path / "a"), "--resume", "--weight-scale", "1e-3"]) == 0
    assert checkpoint_epoch(tmp_path / "run/checkpoint.npz") == 2


def test_a_file_or_unmakeable_out_is_one_line(tmp_path, capsys):
    (tmp_path / "f").write_text("x")
    for out, expected in (
        (tmp_path / "f", "is a file, expected a folder"),
        (tmp_path / "f" / "sub", "cannot create the folder"),
    ):
        assert main(["train", "--out", str(out)]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and f"--out {out}" in err and expected in err


def test_an_unwritable_out_is_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(os, "access", lambda path, mode: False)  # chmod does not stop root, who runs the CI
    assert main(["train", "--out", str(tmp_path)]) == 2
    assert capsys.readouterr().err == f"funcnn train: --out {tmp_path}: the folder is not writable\n"


@pytest.mark.parametrize("command", ["train", "doctor"])
@pytest.mark.parametrize(("option", "value", "rule"), [
    ("--batch-size", "0", "an int >= 1"),
    ("--filters", "0", "an int >= 1"),
    ("--hidden", "2.5", "an int >= 1"),
    ("--seed", "-1", "an int >= 0"),
    ("--dropout", "1.0", "a number in [0, 1)"),
    ("--lr", "nan", "a number > 0 and finite"),
    ("--reg", "-1", "a number >= 0 and finite"),
    ("--weight-scale", "nan", "'he' or a number > 0 and finite"),
    ("--weight-scale", "big", "'he' or a number > 0 and finite"),
])  # fmt: skip
def test_a_bad_value_is_refused_by_the_parser_in_one_line(tmp_path, capsys, command, option, value, rule):
    out = ["--out", str(tmp_path / "run")] if command == "train" else []
    assert main([command, option, value, *out]) == 2
    assert capsys.readouterr().err == f"funcnn {command}: argument {option}: must be {rule}, got {value!r}\n"
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("option", ["--epochs", "--patience", "--lr-decay"])
def test_a_bad_run_option_is_refused_by_the_parser_in_one_line(tmp_path, capsys, option):
    assert main(["train", option, "0", "--out", str(tmp_path)]) == 2
    rule = "a number > 0 and finite" if option == "--lr-decay" else "an int >= 1"
    assert capsys.readouterr().err == f"funcnn train: argument {option}: must be {rule}, got '0'\n"
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("inside_numba", [False, True])
def test_ctrl_c_says_after_which_epoch_and_resumes(tmp_path, capsys, monkeypatch, inside_numba):
    interrupt_at_epoch(monkeypatch, 3, inside_numba)
    assert main(["train", "--epochs", "3", *SMALL, "--out", str(tmp_path)]) == 130
    assert capsys.readouterr().err == "funcnn train: interrupted after epoch 2; resume with --resume\n"
    assert checkpoint_epoch(tmp_path / "checkpoint.npz") == 2
    monkeypatch.undo()
    assert main(["train", "--epochs", "3", *SMALL, "--out", str(tmp_path), "--resume"]) == 0
    assert checkpoint_epoch(tmp_path / "checkpoint.npz") == 3


def test_sigint_to_the_command_prints_one_line(tmp_path):
    """A real SIGINT to ``python -m funcnn train`` once it has printed an epoch."""
    command = [sys.executable, "-m", "funcnn", "train", "--epochs", "100000", *SMALL, "--out", str(tmp_path)]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}  # each progress line as it is printed
    with subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, preexec_fn=default_sigint
    ) as process:
        for line in process.stdout:
            if line.startswith("epoch "):
                break
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=600)  # a deadline for a hang only
    assert process.returncode == 130
    assert (
        err.count("\n") == 1
        and err.startswith("funcnn train: interrupted after epoch ")
        and err.endswith("; resume with --resume\n")
    )
    assert checkpoint_epoch(tmp_path / "checkpoint.npz") == int(err.split("epoch ")[1].split(";")[0])


def _mnist_with_two_label_values(folder):
    make_mnist(folder, "train", 20, gz=False, seed=0)
    make_mnist(folder, "test", 5, gz=False, seed=1)
    for name in ("train-labels-idx1-ubyte", "t10k-labels-idx1-ubyte"):
        labels = (folder / name).read_bytes()
        (folder / name).write_bytes(labels[:8] + bytes(b % 2 for b in labels[8:]))


def test_doctor_builds_the_data_sets_ten_classes_too(tmp_path, capsys):
    _mnist_with_two_label_values(tmp_path)
    main(["doctor", "--dataset", "mnist", "--data-path", str(tmp_path), *SMALL])
    assert "affine(10)" in capsys.readouterr().out


def test_mnist_with_two_label_values_still_builds_ten_classes(tmp_path):
    _mnist_with_two_label_values(tmp_path)
    assert (
        main(
            [
                "train",
                "--dataset",
                "mnist",
                "--data-path",
                str(tmp_path),
                "--epochs",
                "1",
                *SMALL,
                "--out",
                str(tmp_path / "run"),
            ]
        )
        == 0
    )
    with np.load(tmp_path / "run/checkpoint.npz", allow_pickle=False) as data:
        assert data["params/2/w"].shape == (8, 10)
        assert json.loads(str(data["config"]))["dataset"] == "mnist"


# ---- 7. leftovers and permissions


def test_stale_temporaries_of_killed_saves_are_removed_by_the_next_save(tmp_path):
    path = save_checkpoint(tmp_path / "c.npz", {"w": np.ones(3)})
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True, check=True
    )
    for i in range(3):  # what a SIGKILL mid-save leaves: its writer is gone
        (tmp_path / f".c.npz.{dead.stdout.strip()}.{i}.tmp").write_bytes(b"x" * 1000)
    (tmp_path / f".c.npz.{os.getppid()}.live.tmp").write_bytes(b"a concurrent writer's, still being written")
    (tmp_path / f".c.npz.{os.getpid()}.live.tmp").write_bytes(b"this process's own, another thread's save")
    (tmp_path / ".c.npz.nopid.tmp").write_bytes(b"an unknown writer's, recent")
    (tmp_path / ".c.npz.oldnopid.tmp").write_bytes(b"an unknown writer's, hours old")
    os.utime(tmp_path / ".c.npz.oldnopid.tmp", (0, 0))
    (tmp_path / ".other.npz.1.tmp").write_bytes(b"not ours")
    save_checkpoint(path, {"w": np.zeros(3)})
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [
            ".other.npz.1.tmp",
            "c.npz",
            f".c.npz.{os.getppid()}.live.tmp",
            f".c.npz.{os.getpid()}.live.tmp",
            ".c.npz.nopid.tmp",
        ]
    )


@pytest.mark.parametrize("version", [(1, 0), (2, 0), (3, 0), (4, 0)])
def test_npy_headers_of_every_known_version_are_read_and_others_refused(tmp_path, version):
    path = tmp_path / "c.npz"
    with zipfile.ZipFile(path, "w") as archive, archive.open("w.npy", "w") as member:
        header = np.lib.format.header_data_from_array_1_0(np.arange(3.0))
        text = repr(header).encode("latin1")
        text += b" " * (-(len(text) + 13 + (version != (1, 0)) * 2) % 64) + b"\n"
        member.write(np.lib.format.magic(*version) if version != (4, 0) else b"\x93NUMPY\x04\x00")
        member.write(len(text).to_bytes(2 if version == (1, 0) else 4, "little") + text + np.arange(3.0).tobytes())
    if version == (4, 0):
        with pytest.raises(ValueError, match=r"'w' is not an npy array: unknown npy format version 4.0"):
            load_checkpoint(path, {"w": np.zeros(3)})
    else:
        np.testing.assert_array_equal(load_checkpoint(path, {"w": np.zeros(3)})["w"], np.arange(3.0))


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_the_checkpoint_follows_the_umask(tmp_path, umask):
    old = os.umask(umask)
    try:
        path = save_checkpoint(tmp_path / "c.npz", {"w": np.ones(3)})
        other = tmp_path / "other"
        other.write_text("x")
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask == other.stat().st_mode & 0o777


# ---- 5. hostile .npz checkpoints are judged from their headers


def _hostile_npz(path, key, shape, data=b"", compress=zipfile.ZIP_STORED):
    header = {"descr": "<f8", "fortran_order": False, "shape": shape}
    with zipfile.ZipFile(path, "w", compress) as archive, archive.open(f"{key}.npy", "w", force_zip64=True) as member:
        np.lib.format.write_array_header_1_0(member, header)
        member.write(data)


def test_a_lying_npz_member_is_refused_before_loading(tmp_path):
    import tracemalloc

    path = tmp_path / "bomb.npz"
    zeros = np.zeros(2**23).tobytes()  # 64 MiB of zeros deflate to 64 KiB
    _hostile_npz(path, "w", (2**23,), zeros, zipfile.ZIP_DEFLATED)
    assert path.stat().st_size < 2**20
    tracemalloc.start()
    with pytest.raises(ValueError, match=r"'w' claims shape \(8388608,\) \(67108864 bytes\), more than the whole file"):
        load_checkpoint(path, {"w": None})
    with pytest.raises(ValueError, match=r"'w' has shape \(8388608,\), expected \(3,\)"):
        load_checkpoint(path, {"w": np.zeros(3)})
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 2**22  # the 64 MiB were never allocated
    _hostile_npz(path, "w", (10**9,), np.zeros(4).tobytes())  # the header promises more than the member holds
    with pytest.raises(
        ValueError, match=r"'w' claims shape \(1000000000,\) of float64 \(8000000000 bytes\) but holds 32"
    ):
        load_checkpoint(path, {"w": np.broadcast_to(0.0, (10**9,))})  # a template of that shape, without the memory


def test_an_honest_checkpoint_round_trips_with_free_shaped_leaves(tmp_path):
    tree = {"a": np.arange(5.0), "n": np.asarray(3), "s": np.asarray("text")}
    path = save_checkpoint(tmp_path / "c.npz", tree)
    back = load_checkpoint(path, {"a": None, "n": np.asarray(0), "s": None})
    assert tree_allclose({"a": back["a"], "n": back["n"]}, {"a": tree["a"], "n": tree["n"]}, rtol=0, atol=0)
    assert str(back["s"]) == "text"
    with pytest.raises(FileNotFoundError):
        load_checkpoint(tmp_path / "none.npz", tree)


def test_only_errors_caused_by_ctrl_c_count_as_ctrl_c():
    try:
        raise SystemError("wrapped") from KeyboardInterrupt()
    except SystemError as error:
        assert is_ctrl_c(error)
    assert is_ctrl_c(KeyboardInterrupt()) and not is_ctrl_c(SystemError("a real bug")) and not is_ctrl_c(ValueError())
    with pytest.raises(SystemError, match="a real bug"), np.errstate(all="ignore"):
        small_fit(
            1, optimizer=Optimizer("sgd", sgd().init, lambda *args: (_ for _ in ()).throw(SystemError("a real bug")))
        )


def test_interrupted_is_a_keyboard_interrupt():
    assert (
        issubclass(TrainingInterrupted, KeyboardInterrupt)
        and str(TrainingInterrupted(4)) == "interrupted after epoch 4"
    )


def test_train_with_patience_stops_early_and_says_so(tmp_path, capsys):
    out = ["--out", str(tmp_path)]
    # a learning rate this small leaves the validation accuracy where the first epoch put it
    assert main(["train", "--epochs", "30", *SMALL, "--lr", "1e-9", "--lr-decay", "1", "--patience", "2", *out]) == 0
    summary = json.loads((tmp_path / "history.json").read_text())
    stopped = len(summary["history"]["val_acc_history"])
    assert summary["stopped_by"] == "patience" and stopped == summary["best_epoch"] + 2 < 30
    assert f"stopped after epoch {stopped} by patience" in capsys.readouterr().out
    # the same command again is refused, the run left as it was: the same patience would stop it where it stopped
    saved = (tmp_path / "checkpoint.npz").read_bytes()
    again = ["train", "--epochs", "30", *SMALL, "--lr", "1e-9", "--lr-decay", "1", "--patience", "2", *out, "--resume"]
    assert main(again) == 2
    err = capsys.readouterr().err
    assert f"stopped early by patience after epoch {stopped}" in err and "--patience" in err
    assert (tmp_path / "checkpoint.npz").read_bytes() == saved
    # patience is not part of the run's configuration: a resume may change it
    assert (
        main(
            [
                "train",
                "--epochs",
                str(stopped + 1),
                *SMALL,
                "--lr",
                "1e-9",
                "--lr-decay",
                "1",
                "--patience",
                "5",
                *out,
                "--resume",
            ]
        )
        == 0
    )
    assert checkpoint_epoch(tmp_path / "checkpoint.npz") == stopped + 1


def test_check_refuses_a_negative_seed_in_one_line(capsys):
    assert main(["check", "--seed", "-2"]) == 2
    assert capsys.readouterr().err == "funcnn check: argument --seed: must be an int >= 0, got '-2'\n"
