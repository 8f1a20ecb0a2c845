"""funcnn sweep in one process: the search space, bad input refused before anything is written, pruning
through fit's callback, joining and continuing a study, and the optional extra kept out of train."""

import argparse
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

optuna = pytest.importorskip("optuna", reason="the sweep extra is not installed: pip install -e '.[sweep]'")

from funcnn.app.cli import build_parser, main
from funcnn.app.options import train_options
from funcnn.app.space import Range, search_space
from funcnn.app.sweep import run
from funcnn.app.sweep_report import finished_slots, write_results
from funcnn.app.sweep_trial import make_objective

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--filters", "2", "--hidden", "8", "--epochs", "1", "--heartbeat", "1"]


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_space_from_the_command_line_and_a_toml_file(tmp_path):
    path = tmp_path / "space.toml"
    path.write_text(
        'lr = {log = [1e-4, 1e-2]}\nhidden = {int = [8, 64]}\noptimizer = {choice = ["adam", "sgd"]}\n'
        "batch-norm = {choice = [true, false]}\n"
    )
    space = search_space(["lr=uniform:0.001:0.002", "dropout=choice:0,0.5"], path, train_options())
    assert space == (Range("lr", "uniform", 0.001, 0.002), Range("hidden", "int", 8, 64),
                     Range("optimizer", "choice", choices=("adam", "sgd")),
                     Range("batch_norm", "choice", choices=(True, False)),
                     Range("dropout", "choice", choices=(0.0, 0.5)))  # fmt: skip
    assert search_space([], None, train_options()) == (Range("lr", "log", 1e-4, 1e-2), Range("reg", "log", 1e-5, 1e-1))


@pytest.mark.parametrize(
    ("space", "message"),
    [
        ("momentum=log:0.1:0.9", "unknown option 'momentum'; searchable: augment, batch_norm, batch_size"),
        ("lr=log:1e-2:1e-4", "inverted range, low 0.01 > high 0.0001"),
        ("lr=uniform:0.1:0.1", "empty range, low = high = 0.1"),
        ("reg=log:0:1e-2", "a log range must stay above 0, got low 0.0"),
        ("hidden=int:10:5", "inverted range, low 10 > high 5"),
        ("hidden=log:8:64", "--hidden takes whole numbers; search it with int"),
        ("optimizer=choice:adam,nadam", "'nadam' is not one of sgd, sgd_momentum, rmsprop, adam"),
        ("epochs=int:0:3", "search space epochs (int [0, 3]): --epochs: must be an int >= 1, got '0'"),
        ("dropout=choice:0,1.5", "--dropout must be a number in [0, 1), got '1.5'"),
        ("lr=loguniform:1:2", "unknown kind 'loguniform'"),
        ("lr", "expected option=kind:low:high"),
    ],
)
def test_a_bad_space_is_refused_by_name_and_nothing_is_written(tmp_path, capsys, space, message):
    out = tmp_path / "sweep"
    assert main(["sweep", "--trials", "2", "--out", str(out), "--space", space, *TINY]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and err.startswith("funcnn sweep: ")
    assert not out.exists()


def test_a_bad_space_file_is_refused_by_name(tmp_path, capsys):
    path = tmp_path / "space.toml"
    path.write_text("lr = {log = [1e-3]}\n")
    assert main(["sweep", "--out", str(tmp_path / "sweep"), "--space-file", str(path), *TINY]) == 2
    assert f"--space-file {path}: lr: a log range needs a low and a high value, got 1 values" in capsys.readouterr().err
    assert not (tmp_path / "sweep").exists()


def test_an_unreachable_storage_is_refused_without_a_study_or_folder(tmp_path, capsys):
    port = _closed_port()
    url = f"postgresql://funcnn:secret@127.0.0.1:{port}/sweeps"
    assert main(["sweep", "--out", str(tmp_path / "sweep"), "--storage", url, *TINY]) == 2
    err = capsys.readouterr().err
    assert f"--storage postgresql://funcnn:***@127.0.0.1:{port}/sweeps: cannot connect" in err
    assert "secret" not in err and not (tmp_path / "sweep").exists()
    missing = tmp_path / "nowhere" / "study.journal"
    assert main(["sweep", "--out", str(tmp_path / "sweep"), "--storage", str(missing), *TINY]) == 2
    assert f"the folder {missing.parent} does not exist" in capsys.readouterr().err


def test_resume_without_a_study_is_refused_and_leaves_no_study(tmp_path, capsys):
    assert main(["sweep", "--out", str(tmp_path / "sweep"), "--resume", *TINY]) == 2
    assert "--resume: there is no study 'sweep'" in capsys.readouterr().err
    assert not (tmp_path / "sweep").exists()


def test_a_trial_is_pruned_through_fits_callback(tmp_path):
    """Earlier trials reached 100 % at every epoch, so the median pruner stops this one after its first epoch."""
    args = build_parser().parse_args(["sweep", *TINY, "--epochs", "5"])
    study = optuna.create_study(
        direction="maximize", pruner=optuna.pruners.MedianPruner(n_startup_trials=1, n_warmup_steps=0)
    )
    for _ in range(2):
        study.add_trial(optuna.create_trial(value=1.0, intermediate_values={e: 1.0 for e in range(1, 6)}))
    study.optimize(make_objective(args, [Range("lr", "log", 1e-4, 1e-3)], tmp_path), n_trials=1)
    trial = study.trials[-1]
    assert trial.state == optuna.trial.TrialState.PRUNED and trial.user_attrs["epochs"] == 1
    assert list(trial.intermediate_values) == [1] and (tmp_path / "trials" / "2" / "checkpoint.npz").exists()


def test_a_trial_whose_values_the_network_refuses_fails_with_its_error(tmp_path):
    """Its own error (like a diverged run's): kept in the study, and a rerun does not run it again."""
    args = build_parser().parse_args(["sweep", *TINY])
    study = optuna.create_study(direction="maximize")
    study.optimize(
        make_objective(args, [Range("dropout", "choice", choices=(1.5,))], tmp_path), n_trials=1, catch=(ValueError,)
    )
    trial = study.trials[0]
    assert trial.state == optuna.trial.TrialState.FAIL and "drop_prob" in trial.user_attrs["error"]
    failed = optuna.create_trial(state=optuna.trial.TrialState.FAIL, user_attrs={**trial.user_attrs, "slot": 0})
    interrupted = optuna.create_trial(state=optuna.trial.TrialState.FAIL, user_attrs={"slot": 1})
    assert finished_slots([failed, interrupted]) == {0: failed}


def test_rerunning_continues_and_a_changed_search_is_refused(tmp_path, capsys):
    out = tmp_path / "sweep"
    options = {"workers": 1, "epochs": 1, "filters": 2, "hidden": 8, "heartbeat": 1, "pruner": "none"}
    rows = run(2, out, **options)
    assert sorted(r["slot"] for r in rows) == [0, 1] and {r["state"] for r in rows} == {"complete"}
    assert "best trial" in capsys.readouterr().out and (out / "sweep" / "results.csv").exists()
    rows = run(3, out, **options)  # one more trial; the two done are kept, not rerun
    assert sorted(r["trial"] for r in rows) == [0, 1, 2] and sorted(r["slot"] for r in rows) == [0, 1, 2]
    with pytest.raises(ValueError, match=r"searches another configuration \(hidden: 8 -> 9\)"):
        run(3, out, **{**options, "hidden": 9})
    with pytest.raises(ValueError, match="already has 3 trials"):
        run(2, out, **options)
    with pytest.raises(ValueError, match="unknown options colour"):
        run(2, out, colour="red")


def test_a_killed_sweep_interrupted_trial_is_queued_again_by_a_rerun(tmp_path):
    """A trial failed by Ctrl-C (no error of its own) is run again with the same values by the next command."""
    out = tmp_path / "sweep"
    options = {"workers": 1, "epochs": 1, "filters": 2, "hidden": 8, "heartbeat": 1, "pruner": "none"}
    run(1, out, **options)
    from funcnn.app.sweep_storage import open_storage

    study = optuna.load_study(study_name="sweep", storage=open_storage(str(out / "study.journal"), 1))
    lr_range = study.trials[0].distributions["lr"]
    lr = lr_range.low if study.trials[0].params["lr"] != lr_range.low else lr_range.high  # another value, in range
    study.add_trial(
        optuna.create_trial(
            state=optuna.trial.TrialState.FAIL,
            params={"lr": lr, "reg": 1e-3},
            distributions=study.trials[0].distributions,
            user_attrs={"slot": 1},
        )
    )
    rows = run(2, out, **options)
    assert [(r["trial"], r["state"]) for r in sorted(rows, key=lambda r: r["trial"])] == [
        (0, "complete"),
        (1, "fail"),
        (2, "complete"),
    ]
    retried = optuna.load_study(study_name="sweep", storage=open_storage(str(out / "study.journal"), 1)).trials[2]
    assert retried.params == {"lr": lr, "reg": 1e-3} and retried.user_attrs["slot"] == 1


def test_sweep_without_optuna_names_the_extra_and_train_never_imports_it(tmp_path):
    (tmp_path / "sitecustomize.py").write_text(
        "import sys\n"
        "class NoOptuna:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'optuna' or name.startswith('optuna.'):\n"
        "            raise ModuleNotFoundError(\"No module named 'optuna'\", name='optuna')\n"
        "sys.meta_path.insert(0, NoOptuna())\n"
    )
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    command = [sys.executable, "-m", "funcnn", "sweep", "--out", str(tmp_path / "sweep")]
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600, check=False)
    assert result.returncode == 2
    assert (
        result.stderr == 'funcnn sweep: needs Optuna: install the sweep extra, pip install "funcnn[sweep]" '
        '(from a clone: pip install -e ".[sweep]")\n'
    )
    train = (
        "import sys; from funcnn.app.cli import main; "
        f"main(['train', '--epochs', '1', '--filters', '2', '--hidden', '8', '--out', {str(tmp_path / 'run')!r}]); "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('optuna', 'sqlalchemy', 'psycopg')))"
    )
    result = subprocess.run([sys.executable, "-c", train], capture_output=True, text=True, timeout=300, check=True)
    assert result.stdout.splitlines()[-1] == "[]" and (tmp_path / "run" / "checkpoint.npz").exists()


def test_the_sweep_reuses_every_option_of_train():
    sweep = build_parser().parse_args(["sweep"])
    train = build_parser().parse_args(["train"])
    # the sweep trains the convnet: train's text-job options (--dataset shakespeare) are not among its own
    text_job = {"seq_length", "embed", "cell", "train_chars"}
    assert set(vars(train)) - set(vars(sweep)) == {"overwrite", "allow_config_change", *text_job}
    assert isinstance(sweep, argparse.Namespace) and sweep.out is None and sweep.pruner == "median"


@pytest.mark.parametrize(
    ("options", "error", "message"),
    [
        ({"pruner": "medain"}, ValueError, r"--pruner: must be one of 'median', 'halving', 'none', got 'medain'"),
        ({"dataset": "cifar"}, ValueError, r"--dataset: must be one of .*got 'cifar'"),
        ({"dataset": "mnist"}, ValueError, r"dataset 'mnist' is read from your disk"),
        ({"space": "lr=log:1e-4:1e-2"}, TypeError, r"space must be a list of ranges"),
    ],
)
def test_options_given_in_python_are_checked_before_anything_is_written(tmp_path, options, error, message):
    out = tmp_path / "sweep"
    with pytest.raises(error, match=message):
        run(1, out, workers=1, epochs=1, **options)
    assert not out.exists()


def test_results_put_complete_trials_before_pruned_ones_whatever_their_last_report(tmp_path):
    distributions = {"lr": optuna.distributions.FloatDistribution(1e-4, 1e-2, log=True)}
    trials = [
        optuna.create_trial(
            state=optuna.trial.TrialState.COMPLETE, value=0.8, params={"lr": 1e-3}, distributions=distributions
        ),
        optuna.create_trial(
            state=optuna.trial.TrialState.PRUNED,
            params={"lr": 2e-3},
            distributions=distributions,
            intermediate_values={1: 0.9},
        ),
    ]
    for number, trial in enumerate(trials):
        trial.number = number
        trial.set_user_attr("slot", number)
    rows = write_results(trials, tmp_path / "results.csv")
    assert [row["state"] for row in rows] == ["complete", "pruned"]
