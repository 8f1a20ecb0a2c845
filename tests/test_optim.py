"""Tests for funcnn.optim: formulas, purity, dtypes, trees, schedules, errors, and torch.optim."""

from __future__ import annotations

import copy
import dataclasses
import inspect

import numpy as np
import pytest
from bounds import LIBM_ULPS, assert_within, ulps
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from funcnn.optim import (
    OPTIMIZERS,
    Optimizer,
    adam,
    adamw,
    constant,
    exponential_decay,
    rmsprop,
    sgd,
    sgd_momentum,
    step_decay,
)
from funcnn.tree import keystr, tree_leaves, tree_leaves_with_path, tree_map, tree_structure, tree_unflatten

ALL = [sgd, sgd_momentum, rmsprop, adam]


def run(opt: Optimizer, params, grads_seq):
    """Apply ``opt`` with each grads in ``grads_seq``; return the params after each step."""
    state = opt.init(params)
    out = []
    for grads in grads_seq:
        params, state = opt.update(grads, state, params)
        out.append(params)
    return out, state


def trees_equal(a, b) -> bool:
    """Same structure and bitwise-equal leaves (dtype included)."""
    if tree_structure(a) != tree_structure(b):
        return False
    return all(
        np.asarray(x).dtype == np.asarray(y).dtype and np.array_equal(x, y)
        for x, y in zip(tree_leaves(a), tree_leaves(b))
    )


# ------------------------------------------------------------------------------------------------
# Hand-worked numbers. All start at w = [1, -2] (adam and rmsprop at the w after one step).

W0 = np.array([1.0, -2.0])


def test_sgd_by_hand():
    # lr = 0.1, dw = [0.5, 1]: w1 = [1 - 0.05, -2 - 0.1] = [0.95, -2.1]; w2 = [0.9, -2.2]
    g = np.array([0.5, 1.0])
    (w1, w2), state = run(sgd(0.1), W0, [g, g])
    # a product and a difference per step, against decimal literals: 2 roundings a step and 1 for the literal
    np.testing.assert_allclose(w1, [0.95, -2.1], rtol=ulps(3))
    np.testing.assert_allclose(w2, [0.9, -2.2], rtol=ulps(5))
    assert state == {"t": 2}


def test_sgd_momentum_by_hand():
    # lr = 0.1, mu = 0.9, dw = [0.5, 1]
    # step 1: v = -0.1*[0.5, 1] = [-0.05, -0.1];             w = [0.95, -2.1]
    # step 2: v = 0.9*[-0.05, -0.1] - [0.05, 0.1] = [-0.095, -0.19]; w = [0.855, -2.29]
    g = np.array([0.5, 1.0])
    (w1, w2), state = run(sgd_momentum(0.1, momentum=0.9), W0, [g, g])
    # 3 roundings a step (v and w), and the literal's: the velocity's cancellation is at most 2x (0.9 * 0.05 vs 0.05)
    np.testing.assert_allclose(w1, [0.95, -2.1], rtol=ulps(4))
    np.testing.assert_allclose(w2, [0.855, -2.29], rtol=ulps(16))
    np.testing.assert_allclose(state["velocity"], [-0.095, -0.19], rtol=ulps(16))
    assert state["t"] == 2


def test_rmsprop_by_hand():
    # lr = 0.01, d = 0.99, dw = [0.5, -1] twice, w0 = [1, -2]
    # step 1: cache = 0.01*dw**2 = [0.0025, 0.01]; sqrt = [0.05, 0.1]; dw/sqrt = [10, -10]
    #         w = w0 - 0.01*[10, -10] = [0.9, -1.9]
    # step 2: cache = 0.99*0.01*dw**2 + 0.01*dw**2 = 0.0199*dw**2 = [0.004975, 0.0199]
    #         dw/sqrt(cache) = sign(dw)/sqrt(0.0199) = sign(dw) * 7.0888121
    #         w = [0.9 - 0.070888121, -1.9 + 0.070888121] = [0.829111879, -1.829111879]
    # (eps = 1e-8 moves these by ~1e-7 relative)
    g = np.array([0.5, -1.0])
    (w1, w2), state = run(rmsprop(0.01, decay_rate=0.99, epsilon=1e-8), W0, [g, g])
    # the hand values leave out eps: it shortens step 1 (0.1) by eps / sqrt(cache) = 2e-7 of itself and step 2
    # (0.071) by 1.4e-7: 3e-8 in all, of |w| >= 0.8: 4e-8; the 9-digit values add 1e-9
    np.testing.assert_allclose(w1, [0.9, -1.9], rtol=3e-8)
    np.testing.assert_allclose(w2, [0.829111879, -1.829111879], rtol=5e-8)
    np.testing.assert_allclose(state["cache"], [0.004975, 0.0199], rtol=ulps(16))  # squares and sums, no eps


def test_adam_by_hand():
    # lr = 0.1, b1 = 0.9, b2 = 0.999, w0 = [1, -2], g1 = [0.5, -1], g2 = [-0.5, 2]
    # step 1 (t=1): m = 0.1*g1 = [0.05, -0.1]; v = 0.001*g1**2 = [0.00025, 0.001]
    #         m_hat = g1, v_hat = g1**2, so the step is lr*sign(g1): w = [0.9, -1.9]
    # step 2 (t=2): m = 0.9*[0.05, -0.1] + 0.1*[-0.5, 2] = [-0.005, 0.11]
    #         v = 0.999*[0.00025, 0.001] + 0.001*[0.25, 4] = [0.00049975, 0.004999]
    #         m_hat = m/(1-0.81) = m/0.19 = [-0.0263157895, 0.5789473684]
    #         v_hat = v/(1-0.998001) = v/0.001999 = [0.25, 2.5007503752]
    #         sqrt(v_hat) = [0.5, 1.5813761]
    #         step = 0.1*m_hat/sqrt(v_hat) = [-0.0052631579, 0.0366103500]
    #         w = [0.9052631579, -1.9366103500]
    g1, g2 = np.array([0.5, -1.0]), np.array([-0.5, 2.0])
    (w1, w2), state = run(adam(0.1, beta1=0.9, beta2=0.999), W0, [g1, g2])
    # the hand values leave out epsilon (1e-8): it shortens each step by eps / sqrt(v_hat) <= 2e-8 of itself;
    # the steps add up to at most 0.14: 3e-9 of |w| >= 0.9; the 10-digit values add 6e-11
    np.testing.assert_allclose(w1, [0.9, -1.9], rtol=4e-9)
    np.testing.assert_allclose(w2, [0.9052631579, -1.9366103500], rtol=4e-9)
    # two steps of a product and a sum, with cancellation at most 10x (0.9 * 0.05 against 0.05): 64 ulps
    np.testing.assert_allclose(state["m"], [-0.005, 0.11], rtol=ulps(64))
    np.testing.assert_allclose(state["v"], [0.00049975, 0.004999], rtol=ulps(16))  # squares: no cancellation
    assert state["t"] == 2


# ------------------------------------------------------------------------------------------------
# Hypothesis: several steps against a direct NumPy transcription of cs231n's formulas.


def ref_sgd(w, grads, lrs, **_):
    for lr, dw in zip(lrs, grads):
        w = w - lr * dw
    return w


def ref_sgd_momentum(w, grads, lrs, momentum):
    v = np.zeros_like(w)
    for lr, dw in zip(lrs, grads):
        v = momentum * v - lr * dw
        w = w + v
    return w


def ref_rmsprop(w, grads, lrs, decay_rate, epsilon):
    cache = np.zeros_like(w)
    for lr, dw in zip(lrs, grads):
        cache = decay_rate * cache + (1 - decay_rate) * dw**2
        w = w - lr * dw / (np.sqrt(cache) + epsilon)
    return w


def ref_adam(w, grads, lrs, beta1, beta2, epsilon, weight_decay=0.0):
    """cs231n's adam; with ``weight_decay``, adamw: w -= lr * weight_decay * w beside the step, on a weight of
    two or more dimensions."""
    m, v = np.zeros_like(w), np.zeros_like(w)
    for t, (lr, dw) in enumerate(zip(lrs, grads), start=1):
        m = beta1 * m + (1 - beta1) * dw
        v = beta2 * v + (1 - beta2) * dw**2
        mhat = m / (1 - beta1**t)
        vhat = v / (1 - beta2**t)
        decay = lr * weight_decay * w if weight_decay and w.ndim >= 2 else 0
        w = w - lr * mhat / (np.sqrt(vhat) + epsilon) - decay
    return w


REFERENCES = {
    "sgd": ref_sgd,
    "sgd_momentum": ref_sgd_momentum,
    "rmsprop": ref_rmsprop,
    "adam": ref_adam,
    "adamw": ref_adam,
}


def rounding_bound(
    name,
    w,
    grads,
    lrs,
    momentum=0.0,
    decay_rate=0.0,
    beta1=0.0,
    beta2=0.0,
    epsilon=0.0,
    weight_decay=0.0,
    mask=None,
    dtype=np.float64,
):
    """How far two computations of ``name``'s steps (funcnn's and the reference's, in different orders) can
    end apart: each step's update is within 16 roundings of its magnitude (the same formula on |dw|, so
    that cancellation inside the velocity or the first moment is covered), times the condition of its
    bias corrections 1 - beta^t (beta^t / (1 - beta^t), halved under the square root); each of the
    steps rounds w once more; adamw's decay adds lr * weight_decay * |w| to the step (on the leaves its default
    ``mask`` decays, or all when a mask is given). In ``dtype``'s unit roundoff."""
    u = np.finfo(dtype).eps / 2
    velocity, first, second, cache = 0.0, 0.0, 0.0, 0.0
    bound, size = 0.0, np.abs(w)
    for t, (lr, dw) in enumerate(zip(lrs, grads), start=1):
        g = np.abs(dw)
        condition = 1.0
        if name == "sgd":
            step = lr * g
        elif name == "sgd_momentum":
            velocity = momentum * velocity + lr * g
            step = velocity
        elif name == "rmsprop":
            cache = decay_rate * cache + (1 - decay_rate) * g**2
            step = lr * g / (np.sqrt(cache) + epsilon)
            condition += decay_rate / (1 - decay_rate)  # 1 - decay_rate
        else:
            first, second = beta1 * first + (1 - beta1) * g, beta2 * second + (1 - beta2) * g**2
            c1, c2 = 1 - beta1**t, 1 - beta2**t
            step = lr * (first / c1) / (np.sqrt(second / c2) + epsilon)
            condition += beta1 / (1 - beta1) + (1 - c1) / c1 + 0.5 * (beta2 / (1 - beta2) + (1 - c2) / c2)
            if name == "adamw" and (mask is not None or np.ndim(w) >= 2):
                step = step + lr * weight_decay * size
        size = size + step
        bound = bound + 16 * u * condition * step + 2 * u * size
    return bound


finite = st.floats(-10, 10, allow_nan=False, allow_infinity=False)
unit = st.floats(0.0, 0.999)


@st.composite
def problems(draw):
    shape = draw(hnp.array_shapes(min_dims=0, max_dims=3, max_side=4))
    steps = draw(st.integers(1, 6))
    w = draw(hnp.arrays(np.float64, shape, elements=finite))
    grads = [draw(hnp.arrays(np.float64, shape, elements=finite)) for _ in range(steps)]
    lr = draw(st.floats(1e-4, 1.0))
    return w, grads, lr


@pytest.mark.parametrize("name", list(OPTIMIZERS))
@settings(max_examples=60, deadline=None)
@given(problem=problems(), a=unit, b=unit, eps=st.floats(1e-8, 1e-2))
def test_matches_reference(name, problem, a, b, eps):
    w, grads, lr = problem
    hyper = {
        "sgd": {},
        "sgd_momentum": {"momentum": a},
        "rmsprop": {"decay_rate": a, "epsilon": eps},
        "adam": {"beta1": a, "beta2": b, "epsilon": eps},
        "adamw": {"beta1": a, "beta2": b, "epsilon": eps, "weight_decay": a},
    }[name]
    out, state = run(OPTIMIZERS[name](lr, **hyper), w, grads)
    expected = REFERENCES[name](w, grads, [lr] * len(grads), **hyper)
    assert_within(out[-1], expected, rounding_bound(name, w, grads, [lr] * len(grads), **hyper))
    assert state["t"] == len(grads)


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_schedule_is_used_at_the_step_count(name):
    rng = np.random.default_rng(0)
    w = rng.normal(size=(3, 2))
    grads = [rng.normal(size=(3, 2)) for _ in range(7)]
    sched = step_decay(0.1, 0.5, 3)
    lrs = [0.1, 0.1, 0.1, 0.05, 0.05, 0.05, 0.025]  # sched(0) .. sched(6)
    hyper = {
        "sgd": {},
        "sgd_momentum": {"momentum": 0.9},
        "rmsprop": {"decay_rate": 0.99, "epsilon": 1e-8},
        "adam": {"beta1": 0.9, "beta2": 0.999, "epsilon": 1e-8},
        "adamw": {"beta1": 0.9, "beta2": 0.999, "epsilon": 1e-8, "weight_decay": 0.1},
    }[name]
    out, _ = run(OPTIMIZERS[name](sched, **hyper), w, grads)
    assert_within(out[-1], REFERENCES[name](w, grads, lrs, **hyper), rounding_bound(name, w, grads, lrs, **hyper))


def test_sgd_with_step_decay_by_hand():
    # dw = 1 each step, lr = 1, 1, 0.5, 0.5, 0.25 (step_decay(1, 0.5, 2)): w = 0 - 3.25
    out, _ = run(sgd(step_decay(1.0, 0.5, 2)), np.zeros(1), [np.ones(1)] * 5)
    np.testing.assert_array_equal(out[-1], [-3.25])  # powers of 2 and their sums: exact


# ------------------------------------------------------------------------------------------------
# Purity, dtypes, trees


def nested_params(dtype=np.float64):
    rng = np.random.default_rng(1)
    return (
        {"w": rng.normal(size=(3, 2)).astype(dtype), "b": rng.normal(size=2).astype(dtype)},
        [rng.normal(size=(2,)).astype(dtype)],
        {"inner": (rng.normal(size=()).astype(dtype),)},
        (),
    )


def grads_like(params, seed=2):
    rng = np.random.default_rng(seed)
    leaves = [rng.normal(size=np.shape(x)).astype(x.dtype) for x in tree_leaves(params)]
    return tree_unflatten(tree_structure(params), leaves)


@pytest.mark.parametrize("make", ALL)
def test_update_is_pure(make):
    opt = make(0.05)
    params = nested_params()
    state = opt.init(params)
    params, state = opt.update(grads_like(params, 3), state, params)  # non-zero moments
    grads = grads_like(params)
    snapshot = copy.deepcopy((params, grads, state))
    new_params, new_state = opt.update(grads, state, params)
    assert trees_equal(params, snapshot[0])
    assert trees_equal(grads, snapshot[1])
    assert state["t"] == snapshot[2]["t"] == 1
    assert trees_equal({k: v for k, v in state.items() if k != "t"}, {k: v for k, v in snapshot[2].items() if k != "t"})
    assert new_state["t"] == 2
    assert not trees_equal(new_params, params)
    # no aliasing: the returned arrays are new, so changing them later cannot corrupt the inputs
    olds = {id(x) for x in tree_leaves((params, grads, state))}
    assert not any(id(x) in olds for x in tree_leaves((new_params, new_state)))


@pytest.mark.parametrize("make", ALL)
def test_update_works_on_read_only_arrays(make):
    """An in-place write to params, grads or state would raise on read-only arrays."""
    opt = make(0.05)
    params = nested_params()
    state = opt.init(params)
    grads = grads_like(params)
    for x in tree_leaves((params, grads, state)):
        if isinstance(x, np.ndarray):
            x.setflags(write=False)
    new_params, _ = opt.update(grads, state, params)
    assert tree_structure(new_params) == tree_structure(params)


@pytest.mark.parametrize("make", ALL)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dtype_is_kept(make, dtype):
    opt = make(0.05)
    params = nested_params(dtype)
    state = opt.init(params)
    for grads in (grads_like(params), grads_like(nested_params(np.float64))):  # same and wider grads
        new_params, new_state = opt.update(grads, state, params)
        for x in tree_leaves((new_params, {k: v for k, v in new_state.items() if k != "t"})):
            assert x.dtype == dtype
    assert type(new_state["t"]) is int


@pytest.mark.parametrize("make", ALL)
def test_float32_tracks_float64(make):
    """float32 against float64 from the same (float32) values: within the float32 rounding of the steps."""
    params32 = nested_params(np.float32)
    params64 = tree_map(lambda a: a.astype(np.float64), params32)
    grads = [
        tree_map(lambda a: a.astype(np.float32).astype(np.float64), grads_like(params64, seed)) for seed in range(3)
    ]
    opt = make(0.01)
    out64, _ = run(opt, params64, grads)
    out32, _ = run(opt, params32, grads)
    hyper = {k: v for k, v in opt.hyperparams.items() if k != "learning_rate"}
    for i, (x32, x64) in enumerate(zip(tree_leaves(out32[-1]), tree_leaves(out64[-1]))):
        w, leaf_grads = tree_leaves(params64)[i], [tree_leaves(g)[i] for g in grads]
        assert_within(x32, x64, rounding_bound(opt.name, w, leaf_grads, [0.01] * 3, **hyper, dtype=np.float32))


@pytest.mark.parametrize("make", ALL)
def test_nested_tree_is_updated_leaf_by_leaf(make):
    params = nested_params()
    grads_seq = [grads_like(params, seed) for seed in range(3)]
    out, state = run(make(0.05), params, grads_seq)
    assert tree_structure(out[-1]) == tree_structure(params)
    for slot in state:
        if slot != "t":
            assert tree_structure(state[slot]) == tree_structure(params)
    # each leaf alone, as a bare-array tree, gives the same numbers
    for i, (path, x) in enumerate(tree_leaves_with_path(params)):
        leaf_out, _ = run(make(0.05), x, [tree_leaves(g)[i] for g in grads_seq])
        np.testing.assert_array_equal(tree_leaves(out[-1])[i], leaf_out[-1], err_msg=keystr(path))


@pytest.mark.parametrize("make", ALL)
def test_empty_params(make):
    opt = make()
    state = opt.init(())
    assert state["t"] == 0 and all(state[k] == () for k in state if k != "t")
    new_params, new_state = opt.update((), state, ())
    assert new_params == ()
    assert new_state["t"] == 1


@pytest.mark.parametrize("make", ALL)
def test_state_survives_npz_round_trip(make, tmp_path):
    opt = make(0.05)
    params = nested_params()
    grads = [grads_like(params, seed) for seed in range(4)]
    state = opt.init(params)
    p = params
    for g in grads[:2]:
        p, state = opt.update(g, state, p)
    np.savez(tmp_path / "state.npz", **{keystr(path, "state"): leaf for path, leaf in tree_leaves_with_path(state)})
    with np.load(tmp_path / "state.npz") as f:
        loaded = tree_unflatten(
            tree_structure(state), [f[keystr(path, "state")] for path, _ in tree_leaves_with_path(state)]
        )
    a, b = p, p
    for g in grads[2:]:
        a, state = opt.update(g, state, a)
        b, loaded = opt.update(g, loaded, b)
    assert trees_equal(a, b)
    assert loaded["t"] == state["t"] == 4


# ------------------------------------------------------------------------------------------------
# Schedules, registry, defaults


def test_step_decay_values():
    s = step_decay(0.1, 0.5, 10)
    # lr * rate^k for k <= 3: a power and a product, 2 roundings
    assert [s(k) for k in (0, 9, 10, 19, 20, 35)] == pytest.approx([0.1, 0.1, 0.05, 0.05, 0.025, 0.0125], rel=ulps(2))


def test_exponential_decay_values():
    s = exponential_decay(0.1, 0.5, 10)
    # a power with a fractional exponent (within LIBM_ULPS) and a product, against the same on the other side
    assert [s(k) for k in (0, 5, 10, 20)] == pytest.approx([0.1, 0.1 * 0.5**0.5, 0.05, 0.025], rel=ulps(2 * LIBM_ULPS))


def test_constant_values():
    assert [constant(0.3)(k) for k in (0, 1, 1000)] == [0.3, 0.3, 0.3]


def test_registry_and_defaults():
    assert OPTIMIZERS == {"sgd": sgd, "sgd_momentum": sgd_momentum, "rmsprop": rmsprop, "adam": adam, "adamw": adamw}
    expected = {
        "sgd": {"learning_rate": 1e-2},
        "sgd_momentum": {"learning_rate": 1e-2, "momentum": 0.9},
        "rmsprop": {"learning_rate": 1e-2, "decay_rate": 0.99, "epsilon": 1e-8},
        "adam": {"learning_rate": 1e-3, "beta1": 0.9, "beta2": 0.999, "epsilon": 1e-8},
        "adamw": {
            "learning_rate": 1e-3,
            "beta1": 0.9,
            "beta2": 0.999,
            "epsilon": 1e-8,
            "weight_decay": 1e-2,
            "mask": None,
        },
    }
    for name, make in OPTIMIZERS.items():
        defaults = {k: p.default for k, p in inspect.signature(make).parameters.items()}
        assert defaults == expected[name]
        opt = make()
        assert isinstance(opt, Optimizer) and opt.name == name
        assert dict(opt.hyperparams) == expected[name]
        with pytest.raises(dataclasses.FrozenInstanceError):
            opt.name = "other"  # type: ignore[misc]
    assert dict(sgd_momentum(0.1, momentum=0.5).hyperparams) == {"learning_rate": 0.1, "momentum": 0.5}
    assert dict(adam(beta2=0.9).hyperparams)["beta2"] == 0.9


def test_default_learning_rate_is_used():
    (w,), _ = run(adam(), np.zeros(1), [np.ones(1)])  # first adam step moves by lr
    np.testing.assert_allclose(w, [-1e-3], rtol=2e-8)  # epsilon 1e-8 shortens the step by 1e-8 of itself
    (w,), _ = run(sgd(), np.zeros(1), [np.ones(1)])
    np.testing.assert_array_equal(w, [-1e-2])  # 0 - 0.01 * 1: exact


# ------------------------------------------------------------------------------------------------
# Errors


@pytest.mark.parametrize(
    "make, kwargs, match",
    [
        (sgd, {"learning_rate": 0.0}, r"sgd: learning_rate"),
        (sgd, {"learning_rate": -1e-3}, r"sgd: learning_rate"),
        (sgd, {"learning_rate": float("nan")}, r"sgd: learning_rate"),
        (sgd_momentum, {"momentum": 1.0}, r"sgd_momentum: momentum"),
        (sgd_momentum, {"momentum": -0.1}, r"sgd_momentum: momentum"),
        (sgd_momentum, {"learning_rate": 0}, r"sgd_momentum: learning_rate"),
        (rmsprop, {"decay_rate": 1.0}, r"rmsprop: decay_rate"),
        (rmsprop, {"decay_rate": -0.5}, r"rmsprop: decay_rate"),
        (rmsprop, {"epsilon": 0.0}, r"rmsprop: epsilon"),
        (adam, {"beta1": 1.0}, r"adam: beta1"),
        (adam, {"beta2": 1.5}, r"adam: beta2"),
        (adam, {"beta2": -1e-9}, r"adam: beta2"),
        (adam, {"epsilon": -1e-8}, r"adam: epsilon"),
        (adam, {"learning_rate": -0.1}, r"adam: learning_rate"),
    ],
)
def test_bad_hyperparameters(make, kwargs, match):
    with pytest.raises(ValueError, match=match):
        make(**kwargs)


def test_non_number_learning_rate():
    with pytest.raises(TypeError, match=r"adam: learning_rate"):
        adam(learning_rate="0.1")  # type: ignore[arg-type]


def test_boundary_hyperparameters_are_accepted():
    sgd_momentum(momentum=0.0)
    rmsprop(decay_rate=0.0)
    adam(beta1=0.0, beta2=0.0)


@pytest.mark.parametrize(
    "make, args, match",
    [
        (step_decay, (0.0, 0.5, 10), r"step_decay: lr"),
        (step_decay, (0.1, 0.5, 0), r"step_decay: decay_steps"),
        (step_decay, (0.1, 0.0, 10), r"step_decay: decay_rate"),
        (exponential_decay, (0.1, 0.5, 2.5), r"exponential_decay: decay_steps"),
        (constant, (-1.0,), r"constant: lr"),
    ],
)
def test_bad_schedules(make, args, match):
    with pytest.raises((ValueError, TypeError), match=match):  # a float decay_steps is a TypeError
        make(*args)


def test_schedule_rejects_negative_step():
    with pytest.raises(ValueError, match="step_decay: step"):
        step_decay(0.1, 0.5, 10)(-1)


def test_schedule_returning_a_negative_lr_is_refused_and_zero_is_a_step_that_stays():
    opt = sgd(lambda step: 0.1 - 0.1 * step)  # 0.1 at step 0, 0 at step 1 (where cosine schedules end), then < 0
    p, state = opt.update(np.ones(2), opt.init(np.zeros(2)), np.zeros(2))
    same, state = opt.update(np.ones(2), state, p)
    np.testing.assert_array_equal(same, p)
    with pytest.raises(ValueError, match=r"sgd: learning_rate schedule returned -0.1 at step 2; it must be >= 0"):
        opt.update(np.ones(2), state, same)


@pytest.mark.parametrize("make", ALL)
def test_grads_missing_key(make):
    opt = make()
    params = {"w": np.zeros(2), "b": np.zeros(1)}
    with pytest.raises(ValueError, match=rf'(?s){make.__name__}: grads.*lacks params\["b"\]'):
        opt.update({"w": np.zeros(2)}, opt.init(params), params)


def test_grads_extra_key_and_kind():
    opt = adam()
    params = ({"w": np.zeros(2)},)
    with pytest.raises(ValueError, match=r'extra grads\[0\]\["v"\]'):
        opt.update(({"w": np.zeros(2), "v": np.zeros(2)},), opt.init(params), params)
    with pytest.raises(ValueError, match="differ in structure"):  # list where params have a tuple
        opt.update([{"w": np.zeros(2)}], opt.init(params), params)


@pytest.mark.parametrize("make", ALL)
def test_grads_shape_mismatch_names_key_path(make):
    opt = make()
    params = ({"w": np.zeros((3, 2))}, [np.zeros(2)])
    grads = ({"w": np.zeros((2, 3))}, [np.zeros(2)])
    with pytest.raises(ValueError, match=rf'{make.__name__}: grads\[0\]\["w"\] has shape \(2, 3\)'):
        opt.update(grads, opt.init(params), params)


@pytest.mark.parametrize("make", ALL)
def test_non_float_params(make):
    with pytest.raises(TypeError, match=rf'{make.__name__}: params\["w"\] must be a NumPy float array'):
        make().init({"w": np.zeros(2, dtype=np.int64)})
    with pytest.raises(TypeError, match=rf"{make.__name__}: params\[1\]"):
        make().init((np.zeros(2), 3.0))


@pytest.mark.parametrize("make", ALL)
def test_non_float_grads(make):
    opt = make()
    params = {"w": np.zeros(2)}
    with pytest.raises(TypeError, match=rf'{make.__name__}: grads\["w"\] must be a float array'):
        opt.update({"w": np.array([1, 2])}, opt.init(params), params)


def test_state_of_another_optimizer_is_rejected():
    params = np.zeros(2)
    with pytest.raises(ValueError, match=r"sgd_momentum: state must be a dict with keys \['t', 'velocity'\]"):
        sgd_momentum().update(np.ones(2), adam().init(params), params)


def test_state_of_other_params_is_rejected():
    opt = adam()
    with pytest.raises(ValueError, match=r"adam: state\['m'\] has shape"):
        opt.update(np.ones(3), opt.init(np.zeros(2)), np.zeros(3))


# ------------------------------------------------------------------------------------------------
# torch.optim agrees (float64, 5 steps, the same gradients)

TORCH_CASES = [
    ("sgd", {"learning_rate": 0.1}, "SGD", {"lr": 0.1}),
    ("sgd_momentum", {"learning_rate": 0.05, "momentum": 0.8}, "SGD", {"lr": 0.05, "momentum": 0.8}),
    (
        "rmsprop",
        {"learning_rate": 0.01, "decay_rate": 0.9, "epsilon": 1e-6},
        "RMSprop",
        {"lr": 0.01, "alpha": 0.9, "eps": 1e-6},
    ),
    ("rmsprop", {}, "RMSprop", {"lr": 1e-2, "alpha": 0.99, "eps": 1e-8}),
    (
        "adam",
        {"learning_rate": 0.01, "beta1": 0.8, "beta2": 0.95, "epsilon": 1e-7},
        "Adam",
        {"lr": 0.01, "betas": (0.8, 0.95), "eps": 1e-7},
    ),
    ("adam", {}, "Adam", {"lr": 1e-3, "betas": (0.9, 0.999), "eps": 1e-8}),
    (
        "adamw",
        {"learning_rate": 0.01, "weight_decay": 0.1, "mask": lambda path: True},
        "AdamW",
        {"lr": 0.01, "weight_decay": 0.1},
    ),
]


@pytest.mark.parametrize("name, ours, torch_name, theirs", TORCH_CASES)
def test_matches_torch_optim(name, ours, torch_name, theirs):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(5)
    params = {"w": rng.normal(size=(4, 3)), "b": rng.normal(size=3)}
    tensors = {k: torch.tensor(v, dtype=torch.float64, requires_grad=True) for k, v in params.items()}
    torch_opt = getattr(torch.optim, torch_name)(list(tensors.values()), **theirs)
    opt = OPTIMIZERS[name](**ours)
    state = opt.init(params)
    start, seen = params, []
    hyper = {k: v for k, v in opt.hyperparams.items() if k != "learning_rate"}
    for _ in range(5):
        grads = {k: rng.normal(size=v.shape) for k, v in params.items()}
        seen.append(grads)
        params, state = opt.update(grads, state, params)
        for k, t in tensors.items():
            t.grad = torch.tensor(grads[k], dtype=torch.float64)
        torch_opt.step()
        lrs = [opt.hyperparams["learning_rate"]] * len(seen)
        for k, t in tensors.items():  # the same steps in another order
            bound = rounding_bound(name, start[k], [g[k] for g in seen], lrs, **hyper)
            assert_within(params[k], t.detach().numpy(), bound, k)


@pytest.mark.parametrize("make", [sgd, sgd_momentum, rmsprop, adam])
def test_restore_state_takes_a_state_as_read_back_from_a_file(make, tmp_path):
    from funcnn.optim import restore_state
    from funcnn.training import load_checkpoint, save_checkpoint

    params = {"w": np.ones((2, 3), np.float32), "b": np.zeros(3, np.float32)}
    opt = make()
    _, state = opt.update(tree_map(np.ones_like, params), opt.init(params), params)
    save_checkpoint(tmp_path / "s.npz", state)
    loaded = load_checkpoint(tmp_path / "s.npz", tree_map(lambda _: None, state))
    assert isinstance(loaded["t"], np.ndarray)
    restored = restore_state(opt, loaded, params)
    assert type(restored["t"]) is int and restored["t"] == 1
    assert trees_equal(restored, state)
    opt.update(tree_map(np.ones_like, params), restored, params)  # update takes it
    if make is not sgd:
        slot = next(k for k in state if k != "t")
        float64 = {**loaded, slot: tree_map(lambda a: a.astype(np.float64), loaded[slot])}
        assert all(a.dtype == np.float32 for a in tree_leaves(restore_state(opt, float64, params)[slot]))
        with pytest.raises(
            ValueError, match=rf'{make.__name__}: state\["{slot}"\]\["w"\] must be numbers of shape \(2, 3\)'
        ):
            restore_state(opt, {**loaded, slot: {**loaded[slot], "w": np.ones(6)}}, params)
    with pytest.raises(ValueError, match=rf'{make.__name__}: state\["t"\] must be a whole number >= 0, got 1.5'):
        restore_state(opt, {**loaded, "t": np.asarray(1.5)}, params)
    with pytest.raises(ValueError, match=f"{make.__name__}: the saved state has structure"):
        restore_state(opt, {"t": loaded["t"], "other": ()}, params)
