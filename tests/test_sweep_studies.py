"""funcnn sweep keeps each study's files apart and says what went wrong in one line: two studies in one
--out, a rerun after its journal was emptied, a damaged journal, values the network refuses, a trial failing
with any exception, and a slot queued twice."""

import argparse
import csv
import threading

import pytest

optuna = pytest.importorskip("optuna", reason="the sweep extra is not installed: pip install -e '.[sweep]'")

from funcnn.app.cli import build_parser, main
from funcnn.app.space import Range
from funcnn.app.sweep import run
from funcnn.app.sweep_report import DUPLICATE, finished_slots, slot_trials, write_results
from funcnn.app.sweep_trial import Duplicate, TrialError, make_objective

OPTIONS = {"workers": 1, "epochs": 1, "filters": 2, "hidden": 8, "heartbeat": 1, "pruner": "none"}
TINY = ["--filters", "2", "--hidden", "8", "--epochs", "1", "--heartbeat", "1"]


def _files(folder):
    return {p: p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_a_second_study_in_one_out_keeps_the_first_ones_files(tmp_path):
    out = tmp_path / "sweep"
    run(2, out, study="alpha", **OPTIONS)
    alpha = _files(out / "alpha")
    assert (out / "alpha" / "trials" / "0" / "checkpoint.npz") in alpha and (out / "alpha" / "results.csv") in alpha
    rows = run(1, out, study="beta", **OPTIONS)
    assert (
        _files(out / "alpha") == alpha and len(rows) == 1 and (out / "beta" / "trials" / "0" / "history.json").exists()
    )


def test_a_rerun_after_the_journal_was_emptied_is_refused_before_it_writes(tmp_path):
    out = tmp_path / "sweep"
    run(1, out, **OPTIONS)
    kept = _files(out / "sweep")
    (out / "study.journal").write_text("")
    with pytest.raises(ValueError, match=r"holds the files of another study 'sweep'.*choose another --out or --study"):
        run(1, out, **OPTIONS)
    assert _files(out / "sweep") == kept and (out / "study.journal").read_text() == ""


@pytest.mark.parametrize(
    "damage, reason",
    [
        (b"not json\n", "Expecting value"),
        (b"\xff\xfe\n", "codec can't decode"),
        (b'{"op_code": 99}\n', "not an Optuna journal"),
        (b'{"op_code": 4, "worker_id": "w"}\n', "a record Optuna cannot apply: KeyError 'study_id'"),
    ],
)
def test_a_damaged_journal_is_named_and_left_as_it_is(tmp_path, capsys, damage, reason):
    out = tmp_path / "sweep"
    out.mkdir()
    (out / "study.journal").write_bytes(damage)
    assert main(["sweep", "--trials", "1", "--out", str(out), *TINY]) == 2
    err = capsys.readouterr().err
    assert (
        err.count("\n") == 1 and f"{out / 'study.journal'}: the journal is damaged at line 1" in err and reason in err
    )
    assert (out / "study.journal").read_bytes() == damage


@pytest.mark.parametrize("choices", ["3,4", "2,4"])
def test_a_space_of_values_the_network_refuses_is_refused_at_once(tmp_path, capsys, choices):
    out = tmp_path / "sweep"
    assert main(["sweep", "--trials", "2", "--out", str(out), "--space", f"filter_size=choice:{choices}", *TINY]) == 2
    shown = choices.replace(",", ", ")
    assert (
        f"search space filter_size (choice [{shown}]): three_layer_convnet: filter_size must be odd"
        in capsys.readouterr().err
    )
    assert not out.exists()


@pytest.mark.parametrize("trials", [0, -1, 2.5, "3"])
def test_run_refuses_a_bad_number_of_trials_with_a_value_error(tmp_path, trials):
    with pytest.raises(ValueError, match="trials must be an int >= 1"):
        run(trials, tmp_path / "sweep")


def test_a_trial_failing_with_any_exception_fails_with_its_one_line_reason(tmp_path, capsys):
    args = build_parser().parse_args(["sweep", *TINY])
    (tmp_path / "trials").write_text("a file where the trial folders go")  # the folder cannot be made
    study = optuna.create_study(direction="maximize")
    study.enqueue_trial({}, user_attrs={"slot": 0})
    study.optimize(make_objective(args, [Range("lr", "log", 1e-4, 1e-3)], tmp_path), n_trials=1, catch=(TrialError,))
    trial = study.trials[0]
    assert trial.state == optuna.trial.TrialState.FAIL and trial.user_attrs["error"].startswith(
        ("NotADirectoryError", "FileExistsError")
    )
    assert finished_slots(study.trials) == {0: trial}  # ended: a rerun does not queue it again
    assert capsys.readouterr().err == f"trial 0 failed: {trial.user_attrs['error']}\n"


def test_a_slot_queued_twice_runs_once(tmp_path):
    args = argparse.Namespace(**{**vars(build_parser().parse_args(["sweep", *TINY])), "pruner": "none"})
    study = optuna.create_study(direction="maximize")
    for _ in range(2):  # two commands queueing slot 0 at the same instant
        study.enqueue_trial({}, user_attrs={"slot": 0})
    objective = make_objective(args, [Range("lr", "log", 1e-4, 1e-3)], tmp_path)
    study.optimize(objective, n_trials=2, catch=(TrialError, Duplicate))
    first, copy = study.trials
    assert first.state == optuna.trial.TrialState.COMPLETE and copy.user_attrs[DUPLICATE] == first.number
    assert slot_trials(study.trials) == [first] and finished_slots(study.trials) == {0: first}
    assert not (tmp_path / "trials" / str(copy.number)).exists()


def test_results_csv_is_replaced_whole_or_not_at_all(tmp_path, monkeypatch):
    """A write that fails midway (a full disk, a kill) leaves the previous results.csv as it was."""
    path = tmp_path / "results.csv"
    path.write_text("the previous results\n")
    trial = optuna.trial.create_trial(
        state=optuna.trial.TrialState.COMPLETE,
        value=0.5,
        params={"lr": 1e-3},
        distributions={"lr": optuna.distributions.FloatDistribution(1e-4, 1e-2, log=True)},
        user_attrs={"slot": 0},
    )

    def full_disk(self, rows):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(csv.DictWriter, "writerows", full_disk)
    with pytest.raises(OSError, match="No space left"):
        write_results([trial], path)
    assert path.read_text() == "the previous results\n" and list(tmp_path.iterdir()) == [path]


def test_run_works_from_a_thread_that_is_not_the_main_one(tmp_path):
    """Only the main thread may set signal handlers: a sweep run from another thread goes without them."""
    rows: list = []
    thread = threading.Thread(target=lambda: rows.extend(run(1, tmp_path / "sweep", **OPTIONS)))
    thread.start()
    thread.join()
    assert len(rows) == 1


def test_a_ctrl_c_turned_into_another_error_mid_save_is_still_a_ctrl_c(tmp_path, capsys, monkeypatch):
    """A Ctrl-C that stops ``np.savez`` mid-write comes out of zipfile as a ValueError raised while the
    KeyboardInterrupt was handled: the trial is interrupted, not failed with zipfile's words."""
    import funcnn.app.recipe as recipe
    import funcnn.app.sweep_trial as sweep_trial

    def interrupted_save(*args, **kwargs):
        try:
            raise KeyboardInterrupt
        except KeyboardInterrupt:
            raise ValueError("Can't close the ZIP file while there is an open writing handle on it.") from None

    monkeypatch.setattr(recipe, "train_course", interrupted_save)
    args = build_parser().parse_args(["sweep", *TINY])
    study = optuna.create_study(direction="maximize")
    study.enqueue_trial({}, user_attrs={"slot": 0})
    objective = make_objective(args, [Range("lr", "log", 1e-4, 1e-3)], tmp_path)
    with pytest.raises(KeyboardInterrupt):
        study.optimize(objective, n_trials=1, catch=(TrialError,))
    assert "error" not in study.trials[0].user_attrs
    assert "failed" not in capsys.readouterr().err
    try:  # a plain ValueError still fails the trial with its reason
        raise ValueError("diverged")
    except ValueError as plain:
        assert not sweep_trial._interrupted(plain)
