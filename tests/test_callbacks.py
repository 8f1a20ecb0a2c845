"""fit's callbacks: what they see after each epoch, "stop", errors, early stopping; fit's results are frozen."""

import dataclasses
import io
import re
import sys

import numpy as np
import pytest

import funcnn as fn
import funcnn.training._progress
from funcnn.data import load_digits
from funcnn.nets import three_layer_convnet
from funcnn.optim import adam, sgd
from funcnn.training import EpochEnd, early_stopping, fit
from funcnn.tree import tree_allclose

DIGITS = load_digits(np.float64)


def small_fit(epochs=3, lr=0.05, optimizer=None, **kwargs):
    net = three_layer_convnet(num_filters=2, filter_size=3, hidden_dim=8, num_classes=10)
    _, params = fn.init_params(net, np.random.default_rng(0), (1, 8, 8), np.float64)
    train = (DIGITS.train.x[:40], DIGITS.train.y[:40])
    val = kwargs.pop("val", (DIGITS.val.x[:20], DIGITS.val.y[:20]))
    return fit(net, params, train, val, optimizer or sgd(lr), epochs=epochs, batch_size=8, **{"log": None, **kwargs})


def test_a_callback_sees_each_epochs_history_and_params():
    seen: list[EpochEnd] = []
    result = small_fit(3, callbacks=[seen.append])
    assert [end.epoch for end in seen] == [1, 2, 3]
    for end in seen:
        assert len(end.history.val_acc_history) == len(end.history.train_acc_history) == end.epoch
        assert len(end.history.loss_history) == 5 * end.epoch  # 40 examples in batches of 8
        assert end.history.val_acc_history == result.history.val_acc_history[: end.epoch]
        assert end.state == ()
    # the params seen after epoch 2 are those of a run of 2 epochs; those after the last are the result's
    assert tree_allclose(seen[1].params, small_fit(2).params, rtol=0, atol=0)
    assert tree_allclose(seen[2].params, result.params, rtol=0, atol=0)
    assert not tree_allclose(seen[0].params, seen[2].params)
    assert seen[-1].history == result.history and result.stopped_by is None


def test_stop_ends_training_after_that_epoch_and_every_callback_still_runs():
    calls: list[tuple[str, int]] = []

    def at_two(end):
        calls.append(("at_two", end.epoch))
        return "stop" if end.epoch == 2 else None

    def watcher(end):
        calls.append(("watcher", end.epoch))

    result = small_fit(5, callbacks=[at_two, watcher])
    assert calls == [("at_two", 1), ("watcher", 1), ("at_two", 2), ("watcher", 2)]
    assert result.stopped_by == "at_two"
    assert len(result.history.val_acc_history) == 2
    assert tree_allclose(result.params, small_fit(2).params, rtol=0, atol=0)


def test_a_callback_that_raises_propagates_and_the_epoch_is_already_saved(tmp_path):
    def broken(end):
        if end.epoch == 2:
            raise RuntimeError("the sweep's storage is gone")

    with pytest.raises(RuntimeError, match="storage is gone"):
        small_fit(4, callbacks=[broken], checkpoint=tmp_path / "c.npz")
    with np.load(tmp_path / "c.npz") as saved:
        assert int(saved["epoch"]) == 2


def test_a_callback_must_answer_stop_or_none():
    with pytest.raises(ValueError, match=r"""callback shout returned 'STOP'; a callback returns "stop" or None"""):
        small_fit(2, callbacks=[lambda end: None, type("shout", (), {"__call__": lambda self, end: "STOP"})()])


def test_fit_never_changes_what_it_returned():
    seen: list[EpochEnd] = []
    result = small_fit(3, callbacks=[seen.append])
    first = seen[0].history
    assert first.loss_history == result.history.loss_history[:5]  # fit went on; the snapshot did not
    with pytest.raises(dataclasses.FrozenInstanceError):
        result.params = None
    with pytest.raises(dataclasses.FrozenInstanceError):
        result.history.best_val_acc = 1.0
    with pytest.raises(dataclasses.FrozenInstanceError):
        seen[0].epoch = 7
    with pytest.raises(AttributeError):
        result.history.loss_history.append(0.0)
    assert isinstance(result.history.val_acc_history, tuple) and isinstance(first.val_acc_history, tuple)


def test_patience_stops_when_val_accuracy_stops_improving_and_best_params_are_the_best_epochs():
    seen: list[EpochEnd] = []
    # a learning rate this small leaves the predictions, so the validation accuracy, as after epoch 1
    result = small_fit(10, lr=1e-12, callbacks=[seen.append, early_stopping(3)])
    h = result.history
    assert result.stopped_by == "patience"
    assert h.best_epoch == 1 and len(h.val_acc_history) == 4 and len(set(h.val_acc_history)) == 1
    assert tree_allclose(result.best_params, seen[0].params, rtol=0, atol=0)
    assert tree_allclose(result.params, seen[3].params, rtol=0, atol=0)


def test_patience_waits_while_val_accuracy_improves():
    seen: list[EpochEnd] = []
    result = small_fit(30, optimizer=adam(3e-2), callbacks=[seen.append, early_stopping(3)])
    h = result.history
    assert result.stopped_by == "patience" and 3 < len(h.val_acc_history) < 30
    # every epoch before the last was fewer than 3 after the best so far, the last exactly 3
    assert all(end.epoch - end.history.best_epoch < 3 for end in seen[:-1])
    assert seen[-1].epoch - h.best_epoch == 3
    assert any(end.epoch - end.history.best_epoch == 2 for end in seen)  # it did wait, then improved again
    assert h.best_val_acc == max(h.val_acc_history) > h.val_acc_history[0]
    assert tree_allclose(result.best_params, seen[h.best_epoch - 1].params, rtol=0, atol=0)


def test_early_stopping_refuses_a_patience_below_one():
    with pytest.raises(ValueError, match="early_stopping: patience must be >= 1, got 0"):
        early_stopping(0)
    with pytest.raises(TypeError, match="early_stopping: patience must be an int"):
        early_stopping(2.5)


def test_progress_in_plain_lines_names_epoch_step_and_loss(capsys, monkeypatch):
    monkeypatch.setattr(funcnn.training._progress, "LINE_SECONDS", 0.0)  # a line after every step, not every 10 s
    net = three_layer_convnet(num_filters=2, filter_size=3, hidden_dim=8, num_classes=10)
    _, params = fn.init_params(net, np.random.default_rng(0), (1, 8, 8), np.float64)
    result = fit(
        net,
        params,
        (DIGITS.train.x[:40], DIGITS.train.y[:40]),
        (DIGITS.val.x[:20], DIGITS.val.y[:20]),
        sgd(0.05),
        epochs=2,
        batch_size=8,
    )  # log=print: stdout, captured, is not a terminal
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 * 5  # per epoch: steps 1..4 within it, then the epoch's own line
    losses = result.history.loss_history
    for epoch in (1, 2):
        within, end = lines[5 * (epoch - 1) : 5 * epoch - 1], lines[5 * epoch - 1]
        for step, line in enumerate(within, start=1):
            match = re.fullmatch(rf"epoch {epoch}/2  step {step}/5  loss (\S+)  [\d,]+ img/s", line)
            assert match, line
            mean = np.mean(losses[5 * (epoch - 1) : 5 * (epoch - 1) + step])  # the epoch's mean loss so far
            assert float(match.group(1)) == pytest.approx(mean, abs=5e-5)  # printed to 4 places: half a unit
        assert re.match(rf"epoch {epoch}/2  loss \S+  train acc", end)


def test_progress_lines_come_at_most_every_line_seconds(capsys):
    small_fit(2, log=print)  # a few milliseconds an epoch: no line within it at the default 10 s
    assert [line.split("  ")[0] for line in capsys.readouterr().out.splitlines()] == ["epoch 1/2", "epoch 2/2"]


class Terminal(io.StringIO):
    def isatty(self):
        return True


def test_progress_on_a_terminal_is_a_tqdm_bar_with_loss_and_images_per_second(monkeypatch):
    pytest.importorskip("tqdm")
    monkeypatch.setattr(funcnn.training._progress, "BAR_SECONDS", 0.0)  # redraw at every step
    monkeypatch.setattr(sys, "stdout", terminal := Terminal())
    small_fit(1, log=print)
    shown = terminal.getvalue()
    assert "\r" in shown and re.search(r"epoch 1/1: .*\d+/5 .*loss \d\.\d{4}  [\d,]+ img/s", shown)
    assert shown.rstrip().splitlines()[-1].lstrip("\r\x1b[A ").startswith("epoch 1/1  loss ")


def test_progress_without_tqdm_is_plain_lines_even_on_a_terminal(monkeypatch):
    monkeypatch.setitem(sys.modules, "tqdm", None)  # import tqdm raises ImportError
    monkeypatch.setattr(funcnn.training._progress, "LINE_SECONDS", 0.0)
    monkeypatch.setattr(sys, "stdout", terminal := Terminal())
    small_fit(1, log=print)
    assert "\r" not in terminal.getvalue()
    assert terminal.getvalue().splitlines()[0].startswith("epoch 1/1  step 1/5  loss ")


def test_the_first_epoch_is_the_best_when_validation_accuracy_is_zero_in_every_epoch(monkeypatch):
    seen: list[EpochEnd] = []
    # labels outside the classes are refused now, so every evaluation is made to score 0
    monkeypatch.setattr("funcnn.training._fit.accuracy", lambda *args, **kwargs: 0.0)
    result = small_fit(5, callbacks=[seen.append, early_stopping(2)])
    h = result.history
    assert set(h.val_acc_history) == {0.0} and h.best_val_acc == 0.0
    # the first of equals is epoch 1, so patience 2 stops after epoch 3 with epoch 1's params as the best
    assert h.best_epoch == 1 and len(seen) == 3 and result.stopped_by == "patience"
    assert tree_allclose(result.best_params, seen[0].params, rtol=0, atol=0)


@pytest.mark.parametrize(
    ("callbacks", "expected"),
    [
        (early_stopping(2), "got the single callable patience; pass a list: callbacks=[patience]"),
        (["patience"], "got 'patience' (str) at index 0"),
        ([print, 3], "got 3 (int) at index 1"),
        ("patience", "got 'patience' (str)"),
        (None, "got None (NoneType)"),
    ],
)
def test_bad_callbacks_are_refused_before_the_first_epoch_naming_the_bad_entry(tmp_path, callbacks, expected):
    checkpoint = tmp_path / "run.npz"
    with pytest.raises(TypeError, match=re.escape(f"fit: callbacks must be a list of callables, {expected}")):
        small_fit(2, callbacks=callbacks, checkpoint=checkpoint)
    assert not checkpoint.exists()  # refused at fit's entry, before an epoch ran


def test_callbacks_may_be_any_iterable_and_are_called_every_epoch():
    seen: list[EpochEnd] = []
    small_fit(3, callbacks=(callback for callback in [seen.append]))  # a generator is read once, not once an epoch
    assert [end.epoch for end in seen] == [1, 2, 3]
