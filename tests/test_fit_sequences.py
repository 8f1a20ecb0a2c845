"""fit, predict and accuracy on sequences: labels ``(N, T)`` for scores ``(N, T, C)``, as the text job trains."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import funcnn as fn
from funcnn.optim import adam
from funcnn.training import accuracy, fit, predict


def per_step(params, x):
    """scores (N, T, C) = x (N, T, D) @ w: a per-step linear layer, written here."""
    w = params["w"]
    return x @ w, lambda dy: ({"w": np.einsum("ntd,ntc->dc", x, dy)}, dy @ w.T)


def per_step_softmax(scores, y):
    """Mean cross-entropy over every step, written here."""
    p = np.exp(scores - scores.max(axis=-1, keepdims=True))
    p /= p.sum(axis=-1, keepdims=True)
    n, t = y.shape
    picked = np.take_along_axis(p, y[..., None], axis=-1)[..., 0]
    d = p.copy()
    np.put_along_axis(d, y[..., None], np.take_along_axis(d, y[..., None], axis=-1) - 1, axis=-1)
    return -np.log(picked).mean(), lambda dloss=1.0: d * (dloss / (n * t))


@given(
    hnp.arrays(
        np.float64, st.tuples(st.integers(1, 5), st.integers(1, 4), st.integers(1, 6)), elements=st.floats(-9, 9)
    )
)
def test_predict_and_accuracy_read_the_last_axis_of_sequence_scores(scores):
    assert np.array_equal(predict(fn.identity, (), scores), scores.argmax(axis=-1))
    labels = scores.argmax(axis=-1)
    assert accuracy(fn.identity, (), scores, labels) == 1.0
    wrong = (labels + 1) % scores.shape[-1]
    assert accuracy(fn.identity, (), scores, wrong) == (0.0 if scores.shape[-1] > 1 else 1.0)


def test_accuracy_names_the_shape_it_expects_for_sequences():
    with pytest.raises(
        ValueError, match=r"accuracy: labels y must have shape \(2, 3\) to match x of shape \(2, 3, 4\)"
    ):
        accuracy(fn.identity, (), np.zeros((2, 3, 4)), np.zeros((2, 4), dtype=int))


def test_fit_trains_on_sequences_of_labels():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((64, 5, 3))
    y = (x[..., 0] > 0).astype(np.int64)  # each step's label: the sign of its first input
    params = {"w": np.zeros((3, 2))}
    result = fit(per_step, params, (x[:48], y[:48]), (x[48:], y[48:]), adam(0.1), epochs=5, batch_size=16,
                 loss=per_step_softmax, log=None)  # fmt: skip
    assert result.history.loss_history[-1] < result.history.loss_history[0]
    assert result.history.val_acc_history[-1] > 0.9  # a linear rule the model holds exactly


def test_fit_still_refuses_labels_that_are_not_one_per_example():
    x = np.zeros((4, 5, 3))
    with pytest.raises(ValueError, match=r"fit: train must be \(x, y\) with one label per example"):
        fit(per_step, {"w": np.zeros((3, 2))}, (x, np.zeros((4, 5, 1), dtype=int)), (x, np.zeros((4, 5), dtype=int)),
            adam(0.1), loss=per_step_softmax, log=None)  # fmt: skip
