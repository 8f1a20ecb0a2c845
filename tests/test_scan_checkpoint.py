"""fn.scan(cell, checkpoint_every=k): the plain scan's answers and gradients (bitwise: the same operations
run again), for any T and k (k = 1, k not dividing T, k >= T), forwards and reversed, gradient-checked,
dropout in the cell drawing the same masks, and at most k live step closures (counted, not timed)."""

from __future__ import annotations

import math
import weakref

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_scan import CELL, problems

import funcnn as fn
from funcnn.core import moded_layer
from funcnn.tree import tree_leaves


def assert_same(a, b):
    for x, y in zip(tree_leaves(a), tree_leaves(b), strict=True):
        np.testing.assert_array_equal(x, y)


@settings(max_examples=40, deadline=None)
@given(problems(max_steps=10), st.integers(1, 12), st.booleans())
def test_checkpointed_scan_is_the_plain_scan(problem, every, reverse):
    params, carry, xs, rng = problem
    plain, vjp = fn.scan(CELL, reverse=reverse)(params, (carry, xs))
    kept, kept_vjp = fn.scan(CELL, reverse=reverse, checkpoint_every=every)(params, (carry, xs))
    assert_same(kept, plain)
    dys = rng.standard_normal(plain[0].shape)
    dcarry = tuple(rng.standard_normal(a.shape) for a in carry)
    for cotangent in ((dys, dcarry), (dys, None), (None, dcarry)):
        want = vjp(cotangent)
        assert_same(kept_vjp(cotangent), want)  # the segments run again give the same closures
        assert_same(kept_vjp(cotangent), want)  # and the vjp can be called twice


@settings(max_examples=10, deadline=None)
@given(problems(max_steps=5), st.integers(1, 4), st.booleans())
def test_checkpointed_scan_passes_check_vjp(problem, every, reverse):
    params, carry, xs, _ = problem
    report = fn.check_vjp(fn.scan(CELL, reverse=reverse, checkpoint_every=every), params, (carry, xs))
    assert len(report.leaves) == len(tree_leaves((params, carry, xs)))


def noisy_cell(drop_prob=0.5):
    """A moded cell: ``h' = tanh(dropout(x_t) w + h)``, ``y_t = 3 h'``, its state the number of steps run."""
    dropout = fn.dropout(drop_prob)

    def run(params, inputs, state, train, rng):
        h, x_t = inputs
        dropped, drop_vjp, _ = dropout.run((), x_t, train=train, rng=rng)
        new_h = np.tanh(dropped @ params["w"] + h)

        def vjp(d):
            dh, dy = d
            da = (dh + 3 * dy) * (1 - new_h**2)
            _, dx = drop_vjp(da @ params["w"].T)
            return {"w": dropped.T @ da}, (da, dx)

        return (new_h, 3 * new_h), vjp, state + 1

    return moded_layer(run, "noisy", ("w",), state_keys=None)


@settings(max_examples=25, deadline=None)
@given(st.integers(1, 9), st.integers(1, 10), st.booleans(), st.integers(0, 2**32 - 1))
def test_dropout_in_the_cell_draws_the_same_masks(steps, every, reverse, seed):
    rng = np.random.default_rng(seed)
    params = {"w": rng.standard_normal((3, 2))}
    inputs = (rng.standard_normal((4, 2)), rng.standard_normal((4, steps, 3)))
    dys = rng.standard_normal((4, steps, 2))
    answers = []
    for layer in (fn.scan(noisy_cell(), reverse=reverse), fn.scan(noisy_cell(), reverse, checkpoint_every=every)):
        generator = np.random.default_rng(seed)
        out, vjp, state = layer.run(params, inputs, 0, train=True, rng=generator)
        answers.append((out, vjp((dys, None)), state, generator.random()))  # the generator advanced alike
    assert_same(answers[1][:2], answers[0][:2])
    assert answers[0][2] == answers[1][2] == steps  # the state went through every step
    assert answers[0][3] == answers[1][3]
    # and the masks were drawn: evaluation mode gives another answer
    evaluated, _, _ = fn.scan(noisy_cell(), reverse).run(params, inputs, 0, train=False)
    assert not np.array_equal(evaluated[0], answers[0][0][0])


class Counting:
    """A cell (``h' = h * w + x_t``, ``y_t = h' + 1``) that counts its live vjp closures and carries."""

    def __init__(self):
        self.live_closures = self.live_carries = 0
        self.most_live_in_backward = 0

    def __call__(self, params, inputs):
        h, x_t = inputs
        new_h = h * params["w"] + x_t
        self.live_carries += 1
        weakref.finalize(new_h, self._carry_gone)

        def vjp(d):
            self.most_live_in_backward = max(self.most_live_in_backward, self.live_closures)
            dh, dy = d
            total = dh + dy
            return {"w": (total * h).sum(axis=(0, 1))}, (total * params["w"], total)

        self.live_closures += 1
        weakref.finalize(vjp, self._closure_gone)
        return (new_h, new_h + 1), vjp

    def _closure_gone(self):
        self.live_closures -= 1

    def _carry_gone(self):
        self.live_carries -= 1


@pytest.mark.parametrize(("steps", "every"), [(12, 1), (12, 3), (12, 4), (13, 4), (12, 12), (5, 8), (30, 5)])
def test_memory_is_ceil_t_over_k_carries_and_k_closures(steps, every):
    counting = Counting()
    layer = fn.scan(fn.layer(counting, param_keys=("w",)), checkpoint_every=every)
    params = {"w": np.full(3, 0.5)}
    (ys, last), vjp = layer(params, (np.zeros((2, 3)), np.ones((2, steps, 3))))
    assert counting.live_closures == 0  # the forward pass keeps no closure
    # one carry at the start of each segment but the first (the caller's), and the last one, returned
    assert counting.live_carries == math.ceil(steps / every) - 1 + 1
    grads = vjp((np.ones_like(ys), None))
    assert counting.most_live_in_backward == min(every, steps)  # one segment's closures at a time
    assert counting.live_closures == 0
    plain = Counting()
    (_, _), plain_vjp = fn.scan(fn.layer(plain, param_keys=("w",)))(params, (np.zeros((2, 3)), np.ones((2, steps, 3))))
    assert plain.live_closures == steps and plain.live_carries == steps  # the plain scan: one closure per step
    assert_same(grads, plain_vjp((np.ones_like(ys), None)))


def test_checkpoint_every_must_be_a_positive_integer():
    with pytest.raises(ValueError, match=r"^scan: checkpoint_every must be"):
        fn.scan(CELL, checkpoint_every=0)
    assert fn.scan(CELL, checkpoint_every=3).name == "scan(carry_cell, checkpoint_every=3)"
    assert fn.scan(CELL, checkpoint_every=3).hparams["checkpoint_every"] == 3
