"""The training toolbox: clipping, adamw, cosine schedules, the BCE loss, augmentation and the range test."""

import math

import numpy as np
import pytest
from bounds import gamma, ulps
from fitting import DIGITS, small_net
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import funcnn as fn
from funcnn.app.cli import main
from funcnn.augment import crop_and_flip
from funcnn.optim import adam, adamw, cosine_decay, global_norm, one_cycle, sgd, warmup_cosine, with_clipping
from funcnn.tree import tree_leaves, tree_map

finite = st.floats(-1e3, 1e3, allow_nan=False, allow_infinity=False)
trees = st.tuples(hnp.arrays(np.float64, (3, 2), elements=finite), hnp.arrays(np.float64, (2,), elements=finite))


def as_params(pair):
    return {"w": pair[0], "b": pair[1]}


# -- clipping -------------------------------------------------------------------------------------


@settings(max_examples=60)
@given(trees, st.floats(1e-3, 1e3))
def test_clipping_never_increases_the_norm_and_keeps_the_direction(pair, max_norm):
    grads = as_params(pair)
    seen = {}

    def record(g, state, params):
        seen["g"] = g
        return params, state

    inner = fn.optim.Optimizer("record", lambda p: {"t": 0}, record)
    clipped = with_clipping(inner, max_norm)
    clipped.update(grads, clipped.init(grads), grads)
    norm, after = global_norm(grads), global_norm(seen["g"])
    assert after <= max(norm, max_norm) * (1 + ulps(8))  # rescaled to max_norm, within a few roundings
    if norm > max_norm:
        assert after == pytest.approx(max_norm, rel=ulps(16))
        scale = max_norm / norm  # the direction: each leaf the same multiple of the original
        for a, b in zip(tree_leaves(seen["g"]), tree_leaves(grads)):
            np.testing.assert_allclose(a, b * scale, rtol=ulps(4), atol=0)
    else:
        assert all(a is b for a, b in zip(tree_leaves(seen["g"]), tree_leaves(grads)))  # left alone


def test_global_norm_neither_overflows_nor_underflows_and_zero_is_left_alone():
    assert global_norm({"a": np.full(4, 1e200)}) == pytest.approx(2e200, rel=ulps(4))
    assert global_norm({"a": np.full(4, 1e-200)}) == pytest.approx(2e-200, rel=ulps(4))
    zeros = {"w": np.zeros(3)}
    opt = with_clipping(sgd(0.1), 1.0)
    params, _ = opt.update(zeros, opt.init(zeros), {"w": np.ones(3)})
    np.testing.assert_array_equal(params["w"], np.ones(3))  # optax #1752: a norm of 0 gave NaN


def test_clipping_refuses_non_finite_gradients_by_leaf():
    opt = with_clipping(adam(), 1.0)
    params = {"w": np.ones(2), "b": np.ones(1)}
    with pytest.raises(ValueError, match=r'adam \(clipped\): grads\["w"\] hold NaN or infinity; nothing updated'):
        opt.update({"w": np.array([1.0, np.nan]), "b": np.ones(1)}, opt.init(params), params)
    with pytest.raises(ValueError, match="max_norm"):
        with_clipping(adam(), 0.0)


# -- adamw ----------------------------------------------------------------------------------------


@settings(max_examples=40)
@given(trees, trees, st.floats(1e-4, 0.1))
def test_adamw_without_decay_is_adam_bit_for_bit(pair, grads_pair, lr):
    params, grads = as_params(pair), as_params(grads_pair)
    a, w = adam(lr), adamw(lr, weight_decay=0.0)
    (pa, sa), (pw, sw) = a.update(grads, a.init(params), params), w.update(grads, w.init(params), params)
    for x, y in zip(tree_leaves((pa, sa["m"], sa["v"])), tree_leaves((pw, sw["m"], sw["v"]))):
        np.testing.assert_array_equal(x, y)


def test_adamw_decays_weights_only_by_default_and_masks_pick_leaves():
    params = {"w": np.ones((2, 2)), "b": np.ones(2), "gamma": np.ones(2)}
    zero = tree_map(np.zeros_like, params)
    for mask, decayed in [
        (None, {"w"}),
        ({"w": False, "b": True, "gamma": False}, {"b"}),
        (lambda path: path.endswith('["gamma"]'), {"gamma"}),
    ]:
        opt = adamw(0.1, weight_decay=0.5, mask=mask)
        new, _ = opt.update(zero, opt.init(params), params)  # zero gradients: only the decay moves w
        for key, value in new.items():
            expected = 1 - 0.1 * 0.5 if key in decayed else 1.0
            np.testing.assert_allclose(value, expected, rtol=ulps(2))  # one product and one difference
    with pytest.raises(ValueError, match="mask and params differ in structure"):
        opt = adamw(mask={"w": True})
        opt.update(zero, opt.init(params), params)


# -- schedules ------------------------------------------------------------------------------------


@given(st.floats(1e-4, 1.0), st.integers(0, 50), st.integers(1, 200), st.floats(0, 1e-5))
def test_warmup_cosine_boundaries_and_monotone_between(peak, warmup, length, end):
    total = warmup + length
    s = warmup_cosine(peak, warmup, total, end)
    values = [s(k) for k in range(total + 3)]
    if warmup:
        assert values[0] == pytest.approx(peak / warmup, rel=ulps(4))
        assert all(a < b for a, b in zip(values[: warmup - 1], values[1:warmup]))  # rising
    assert values[warmup] == pytest.approx(peak, rel=ulps(4))
    assert all(a >= b for a, b in zip(values[warmup:], values[warmup + 1 :]))  # falling
    assert values[total] == pytest.approx(end, abs=ulps(4) * peak) and values[-1] == values[total]


def test_cosine_decay_and_one_cycle_at_their_boundaries():
    s = cosine_decay(0.1, 10)
    assert s(0) == 0.1 and s(5) == pytest.approx(0.05, rel=ulps(4)) and s(10) == 0.0 and s(11) == 0.0
    cycle = one_cycle(1.0, 100)
    lrs = [cycle(k) for k in range(101)]
    assert lrs[0] == pytest.approx(1 / 25, rel=ulps(4)) and max(lrs) == lrs[30] == 1.0
    assert all(a <= b for a, b in zip(lrs[:30], lrs[1:31])) and all(a >= b for a, b in zip(lrs[30:], lrs[31:]))
    assert lrs[100] == pytest.approx(1 / 25e4, rel=ulps(4))
    for bad in (lambda: warmup_cosine(0.1, 10, 10), lambda: cosine_decay(0.1, 0), lambda: one_cycle(1.0, 10, 1.0)):
        with pytest.raises(ValueError):
            bad()


def test_a_schedule_reaching_zero_trains_to_its_end():
    opt = sgd(cosine_decay(0.1, 3))
    params = {"w": np.ones(2)}
    state = opt.init(params)
    for _ in range(5):  # steps 3 and 4 have learning rate 0: they leave w as it is
        params, state = opt.update({"w": np.ones(2)}, state, params)
    assert state["t"] == 5
    np.testing.assert_allclose(params["w"], 1 - (0.1 + 0.075 + 0.025), rtol=ulps(8))  # the three steps that move


# -- BCE ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_bce_matches_its_formula_and_is_finite_for_huge_logits(dtype):
    logits = np.array([[-1e4, -30.0, -1.0, 0.0, 2.0, 40.0, 1e4]], dtype)
    y = np.array([[0.0, 1.0, 0.3, 1.0, 0.0, 1.0, 0.0]], dtype)
    loss, vjp = fn.sigmoid_bce_loss(logits, y)
    dlogits = vjp()
    assert loss.dtype == dlogits.dtype == dtype and np.isfinite(loss) and np.isfinite(dlogits).all()
    l64, y64 = logits.astype(np.float64), y.astype(np.float64)
    softplus = np.logaddexp(0, l64)  # log(1 + exp(l)), exact to a rounding for any l
    want = np.mean(softplus - l64 * y64)
    # a mean of 7 terms of magnitude |l| + log 2, each within a few roundings (exp, log1p within LIBM)
    assert abs(float(loss) - want) <= gamma(7 + 20, dtype) * np.mean(np.abs(l64) + 1)
    sig = 0.5 * (1 + np.tanh(l64 / 2))
    np.testing.assert_allclose(dlogits, (sig - y64) / 7, rtol=0, atol=gamma(20, dtype))


def test_bce_passes_check_vjp_and_refuses_bad_targets():
    rng = np.random.default_rng(0)
    logits, y = rng.standard_normal((4, 3)), rng.random((4, 3))
    fn.check_vjp(fn.layer(lambda p, s: _as_layer(s, y)), (), logits)
    for bad, message in [
        (y[:2], r"targets y must have the logits' shape \(4, 3\), got \(2, 3\)"),
        (y + 1, r"targets y must be in \[0, 1\]"),
        (y.astype(str), "targets y must be numbers"),
    ]:
        with pytest.raises((ValueError, TypeError), match=message):
            fn.sigmoid_bce_loss(logits, bad)


def _as_layer(scores, y):
    loss, vjp = fn.sigmoid_bce_loss(scores, y)
    return loss, lambda dloss: ((), vjp(dloss))


# -- augmentation ---------------------------------------------------------------------------------


@settings(max_examples=30)
@given(st.integers(1, 4), st.integers(1, 3), st.integers(2, 9), st.integers(0, 3), st.booleans(), st.integers(0, 99))
def test_each_image_is_a_shifted_maybe_mirrored_copy(n, c, size, pad, flip, seed):
    x = np.random.default_rng(seed).standard_normal((n, c, size, size + 1))
    before = x.copy()
    y = crop_and_flip(np.random.default_rng(seed), x, pad=pad, flip=flip)
    np.testing.assert_array_equal(x, before)  # pure
    assert y.shape == x.shape and y.dtype == x.dtype
    padded = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    for i in range(n):
        candidates = [
            window[..., ::-1] if mirror else window
            for top in range(2 * pad + 1)
            for left in range(2 * pad + 1)
            for window in [padded[i, :, top : top + size, left : left + size + 1]]
            for mirror in ((False, True) if flip else (False,))
        ]
        assert any(np.array_equal(y[i], candidate) for candidate in candidates)
    np.testing.assert_array_equal(y, crop_and_flip(np.random.default_rng(seed), x, pad=pad, flip=flip))


def test_a_resumed_run_augments_as_an_uninterrupted_one(tmp_path):
    net = small_net()
    _, params = fn.init_params(net, np.random.default_rng(0), (1, 8, 8), DIGITS.train.x.dtype)
    data = (DIGITS.train.x[:200], DIGITS.train.y[:200]), (DIGITS.val.x[:50], DIGITS.val.y[:50])

    def augment(rng, x):
        return crop_and_flip(rng, x, pad=1, flip=False)

    def run(epochs, checkpoint=None):
        return fn.fit(net, params, *data, adam(2e-3), epochs=epochs, batch_size=50, log=None, augment=augment,
                      checkpoint=checkpoint)  # fmt: skip

    straight = run(3)
    run(2, tmp_path / "c.npz")
    resumed = run(3, fn.Checkpoint(tmp_path / "c.npz", resume=True))
    for a, b in zip(tree_leaves(straight.params), tree_leaves(resumed.params)):
        np.testing.assert_array_equal(a, b)
    plain = fn.fit(net, params, *data, adam(2e-3), epochs=1, batch_size=50, log=None)
    assert not np.array_equal(tree_leaves(plain.params)[0], tree_leaves(run(1).params)[0])  # it did augment


# -- the range test -------------------------------------------------------------------------------


def test_lr_find_is_reproducible_leaves_params_alone_and_stops_on_divergence():
    net = small_net()
    _, params = fn.init_params(net, np.random.default_rng(0), (1, 8, 8), DIGITS.train.x.dtype)
    before = tree_map(np.copy, params)
    x, y = DIGITS.train.x[:300], DIGITS.train.y[:300]
    first = fn.lr_find(net, params, x, y, optimizer=sgd, steps=40, max_lr=1e4)
    assert first == fn.lr_find(net, params, x, y, optimizer=sgd, steps=40, max_lr=1e4)
    for a, b in zip(tree_leaves(params), tree_leaves(before)):
        np.testing.assert_array_equal(a, b)
    assert first.diverged and len(first.lrs) < 40  # sgd at lr 1e4 diverges before the end
    assert first.lrs[0] == 1e-6 and all(a < b for a, b in zip(first.lrs, first.lrs[1:]))
    assert 1e-6 <= first.suggestion <= 10 and first.lrs[0] <= first.steepest <= first.lrs[-1]
    assert math.isfinite(min(first.smoothed))
    with pytest.raises(ValueError, match="max_lr"):
        fn.lr_find(net, params, x, y, min_lr=1.0, max_lr=0.5)


def test_lr_find_command_prints_its_curve_and_refuses_bad_options(tmp_path, capsys):
    assert main(["lr-find", "--steps", "20", "--filters", "2", "--hidden", "8", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "funcnn lr-find:" in out and "suggestion" in out and "learning rate  smoothed loss" in out
    assert main(["lr-find", "--steps", "1"]) == 2
    assert "--steps: must be an int >= 2" in capsys.readouterr().err


def test_train_options_of_the_toolbox_are_refused_in_one_line(capsys):
    for option, value, message in [
        ("--clip", "-1", "--clip: must be a number > 0"),
        ("--weight-decay", "-0.1", "--weight-decay: must be a number >= 0"),
        ("--optimizer", "adamx", "--optimizer: invalid choice: 'adamx'"),
    ]:
        assert main(["train", option, value]) == 2
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1, err
