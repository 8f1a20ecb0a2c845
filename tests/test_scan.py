"""fn.scan: the same as the cell unrolled by hand (as a chain of steps), reversed, with one step,
gradient-checked, and a clear error for a carry that changes its structure."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import funcnn as fn
from funcnn.layers._scan import Outer, _joined, _stack, gives_outer
from funcnn.tree import tree_leaves


def carry_cell(params, inputs):
    """A cell with a tuple carry ``(h, s)`` and a tuple input ``(x_t, u_t)``:
    ``h' = tanh(x_t w + h v)``, ``s' = s + u_t * h'``, ``y_t = h' * 2``."""
    (h, s), (x_t, u_t) = inputs
    (new_h, vjp_h) = fn.rnn_step({"wx": params["w"], "wh": params["v"], "b": params["b"]}, (x_t, h))
    new_s = s + u_t * new_h

    def vjp(d):
        (dh, ds), dy = d
        dnew_h = dh + ds * u_t + 2 * dy
        dp, (dx, dh_prev) = vjp_h(dnew_h)
        return {"w": dp["wx"], "v": dp["wh"], "b": dp["b"]}, ((dh_prev, ds), (dx, ds * new_h))

    return ((new_h, new_s), 2 * new_h), vjp


CELL = fn.layer(carry_cell, param_keys=("w", "v", "b"))


@st.composite
def problems(draw, max_steps=3):
    n, d, h = (draw(st.integers(1, 3)) for _ in range(3))
    t = draw(st.integers(1, max_steps))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    params = {
        "w": rng.standard_normal((d, h)),
        "v": rng.standard_normal((h, h)) / np.sqrt(h),
        "b": rng.standard_normal(h),
    }
    carry = (rng.standard_normal((n, h)), rng.standard_normal((n, h)))
    xs = (rng.standard_normal((n, t, d)), rng.standard_normal((n, t, h)))
    return params, carry, xs, rng


def step_layer(t):
    """Step ``t`` as a layer of a chain: ``(carry, xs) -> (carry', xs)``, its y dropped."""

    def apply(params, inputs):
        carry, xs = inputs
        ((new, _), vjp) = carry_cell(params, (carry, tuple(a[:, t] for a in xs)))

        def step_vjp(d):
            dcarry, dxs = d
            dp, (dprev, dx_t) = vjp((dcarry, np.zeros_like(new[0])))
            dxs = tuple(a.copy() for a in dxs)
            for a, b in zip(dxs, dx_t):
                a[:, t] += b
            return dp, (dprev, dxs)

        return (new, xs), step_vjp

    return fn.layer(apply)


@settings(max_examples=40, deadline=None)
@given(problems())
def test_scan_is_the_unrolled_chain(problem):
    params, carry, xs, rng = problem
    steps = xs[0].shape[1]
    unrolled = fn.chain(*(step_layer(t) for t in range(steps)))
    (last, _), chain_vjp = unrolled((params,) * steps, (carry, xs))
    (ys, scan_last), scan_vjp = fn.scan(CELL)(params, (carry, xs))
    for a, b in zip(tree_leaves(scan_last), tree_leaves(last)):
        np.testing.assert_array_equal(a, b)  # the same operations in the same order
    dcarry = tuple(rng.standard_normal(a.shape) for a in carry)
    dparams, (dcarry0, dxs) = scan_vjp((None, dcarry))
    chain_grads, (chain_dcarry0, chain_dxs) = chain_vjp((dcarry, tuple(np.zeros_like(a) for a in xs)))
    summed = {k: sum(g[k] for g in chain_grads) for k in params}
    for a, b in zip(tree_leaves((dparams, dcarry0, dxs)), tree_leaves((summed, chain_dcarry0, chain_dxs))):
        # the same terms, summed in another order: a few roundings of the largest term, per step
        np.testing.assert_allclose(a, b, rtol=0, atol=8 * np.finfo(float).eps * steps * (1 + np.abs(b).max()))


@settings(max_examples=40, deadline=None)
@given(problems())
def test_ys_are_each_steps_y(problem):
    params, carry, xs, _ = problem
    (ys, _), _ = fn.scan(CELL)(params, (carry, xs))
    for t in range(xs[0].shape[1]):
        ((carry, y), _) = carry_cell(params, (carry, tuple(a[:, t] for a in xs)))
        np.testing.assert_array_equal(ys[:, t], y)


@settings(max_examples=30, deadline=None)
@given(problems())
def test_reverse_is_scan_of_the_flipped_sequence(problem):
    params, carry, xs, rng = problem
    (ys, last), vjp = fn.scan(CELL, reverse=True)(params, (carry, xs))
    (flipped_ys, flipped_last), flipped_vjp = fn.scan(CELL)(params, (carry, tuple(a[:, ::-1] for a in xs)))
    np.testing.assert_array_equal(ys, flipped_ys[:, ::-1])
    for a, b in zip(last, flipped_last):
        np.testing.assert_array_equal(a, b)
    dys = rng.standard_normal(ys.shape)
    got = vjp((dys, None))
    want = flipped_vjp((dys[:, ::-1], None))
    np.testing.assert_array_equal(got[1][1][0], want[1][1][0][:, ::-1])
    for a, b in zip(tree_leaves(got[0]), tree_leaves(want[0])):
        np.testing.assert_array_equal(a, b)


@settings(max_examples=30, deadline=None)
@given(problems())
def test_one_step_is_the_cell(problem):
    params, carry, xs, rng = problem
    xs = tuple(a[:, :1] for a in xs)
    (ys, last), vjp = fn.scan(CELL)(params, (carry, xs))
    ((cell_last, y), cell_vjp) = carry_cell(params, (carry, tuple(a[:, 0] for a in xs)))
    np.testing.assert_array_equal(ys[:, 0], y)
    dy, dcarry = rng.standard_normal(y.shape), tuple(rng.standard_normal(a.shape) for a in carry)
    dp, (dc0, dxs) = vjp((dy[:, None], dcarry))
    cell_dp, (cell_dc0, cell_dx) = cell_vjp((dcarry, dy))
    for a, b in zip(tree_leaves((dp, dc0)), tree_leaves((cell_dp, cell_dc0))):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(dxs, cell_dx):
        np.testing.assert_array_equal(a[:, 0], b)


@settings(max_examples=15, deadline=None)
@given(problems(), st.booleans())
def test_scan_passes_check_vjp(problem, reverse):
    params, carry, xs, _ = problem
    report = fn.check_vjp(fn.scan(CELL, reverse=reverse), params, (carry, xs))
    assert len(report.leaves) == len(tree_leaves((params, carry, xs)))


def test_carry_structure_errors():
    x = (np.zeros((2, 3)), np.zeros((2, 4, 3)))

    def grows(params, inputs):
        carry, x_t = inputs
        return ((carry, carry), x_t), None

    def widens(params, inputs):
        carry, x_t = inputs
        return (np.zeros((2, 4)), x_t), None

    def casts(params, inputs):
        carry, x_t = inputs
        return (carry.astype(np.float32), x_t), None

    with pytest.raises(ValueError, match=r"^scan\(grows\): at step 0 the cell returned a carry of structure"):
        fn.scan(grows)((), x)
    with pytest.raises(ValueError, match=r"^scan\(widens\): at step 0 .*shape \(2, 4\).*got shape \(2, 3\)"):
        fn.scan(widens)((), x)
    with pytest.raises(ValueError, match=r"^scan\(casts\): .*float32.*float64"):
        fn.scan(casts)((), x)
    with pytest.raises(TypeError, match=r"^scan\(casts\): x must be a tuple \(carry, xs\)"):
        fn.scan(casts)((), x[1])
    with pytest.raises(ValueError, match=r"^scan\(casts\): every leaf of xs must share \(N, T\)"):
        fn.scan(casts)((), (x[0], (x[1], np.zeros((2, 5, 3)))))
    with pytest.raises(ValueError, match=r"^scan\(casts\): xs must have at least one time step"):
        fn.scan(casts)((), (x[0], np.zeros((2, 0, 3))))


def test_init_and_out_shape_through_the_cell():
    def cell(params, inputs):
        h, x_t = inputs
        h, vjp = fn.rnn_step(params, (x_t, h))
        return (h, h), lambda d: (lambda g: (g[0], (g[1][1], g[1][0])))(vjp(d[0] + d[1]))

    sized = fn.rnn_cell(5)

    def init(rng, shape, dtype, weight_scale):
        (h, x_t) = shape
        (out, params) = sized.init(rng, (x_t, h), dtype, weight_scale)
        return (out, out), params

    layer = fn.scan(fn.Layer(cell, "cell", param_keys=("wx", "wh", "b"), init=init, out_shape=lambda s: (s[0], s[0])))
    out, params = fn.init_params(layer, np.random.default_rng(0), ((5,), (7, 3)))
    assert out == ((7, 5), (5,)) and params["wx"].shape == (3, 5)
    assert layer.out_shape(((5,), (7, 3))) == ((7, 5), (5,))
    (ys, last), _ = layer(params, (np.zeros((2, 5), np.float32), np.ones((2, 7, 3), np.float32)))
    assert ys.shape == (2, 7, 5) and ys.dtype == np.float32
    h, _ = fn.rnn(params, (np.ones((2, 7, 3), np.float32), np.zeros((2, 5), np.float32)))
    # rnn is scan of rnn_step with the projection hoisted: BLAS may sum the D + H products in another order
    np.testing.assert_allclose(ys, h, rtol=0, atol=10 * np.finfo(np.float32).eps * (3 + 5) * 7)


@pytest.mark.parametrize("adjacent", [True, False])
def test_outer_gradients_are_summed_as_one_product(adjacent):
    """A cell whose vjp gives its weight gradient as factors (``Outer``) gets the sum of the products,
    whether its factors lie one after another in one buffer (joined as a view) or not (concatenated)."""
    rng = np.random.default_rng(0)
    n, t, h = 3, 5, 4
    buffer, used = np.empty(t * n * h), [0]  # the vjps' cotangents one after another, as an arena gives them

    def cotangent_array():
        if not adjacent:
            return np.empty((n, h))
        used[0] += n * h
        return buffer[used[0] - n * h : used[0]].reshape(n, h)

    def cell(params, inputs):
        carry, x_t = inputs
        y = carry @ params["w"] + x_t

        @gives_outer
        def vjp(d, outer=False):
            dcarry, dy = d
            total = np.add(dcarry, dy, out=cotangent_array())
            return {"w": Outer(carry, total) if outer else carry.T @ total}, (total @ params["w"].T, total)

        return (y, y), vjp

    params = {"w": rng.standard_normal((h, h)) / 2}
    xs, carry0 = rng.standard_normal((n, t, h)), rng.standard_normal((n, h))
    (ys, _), vjp = fn.scan(fn.layer(cell, param_keys=("w",)))(params, (carry0, xs))
    grads, (_, dxs) = vjp((rng.standard_normal(ys.shape), None))
    previous = np.concatenate([carry0[:, None], ys[:, :-1]], axis=1)  # each step's carry
    # dxs are the steps' (dcarry + dy): the same terms, summed in one product instead of one per step
    want = sum(previous[:, s].T @ dxs[:, s] for s in range(t))
    np.testing.assert_allclose(grads["w"], want, rtol=0, atol=8 * np.finfo(float).eps * t * n * np.abs(want).max())


def test_adjacent_factors_are_joined_without_a_copy():
    whole = np.arange(24.0).reshape(6, 4)
    joined = _joined([whole[0:2], whole[2:4], whole[4:6]])
    assert np.shares_memory(joined, whole) and np.array_equal(joined, whole)
    apart = _joined([whole[0:2], whole[4:6]])  # a gap between them: concatenated
    assert not np.shares_memory(apart, whole) and np.array_equal(apart, whole[[0, 1, 4, 5]])


@pytest.mark.parametrize("order", [1, -1])
def test_evenly_spaced_cotangents_are_stacked_as_a_read_only_view(order):
    """Steps' cotangents at evenly spaced places of one buffer (an arena's, either way round) are stacked
    without a copy, equal to np.stack; anything else is stacked by np.stack."""
    whole = np.arange(2 * 3 * 5 * 4.0).reshape(5, 2, 3, 4)  # 5 slots of (2, 3) steps, every other one used
    steps = [whole[s, 0] for s in (0, 2, 4)][::order]
    stacked = _stack(steps, view=True)
    assert np.shares_memory(stacked, whole) and not stacked.flags.writeable
    np.testing.assert_array_equal(stacked, np.stack(steps, axis=1))
    uneven = _stack([whole[0, 0], whole[1, 0], whole[4, 0]], view=True)
    assert not np.shares_memory(uneven, whole) and np.array_equal(uneven, whole[[0, 1, 4], 0].transpose(1, 0, 2))
    assert not np.shares_memory(_stack(steps), whole)  # only when asked: a layer's outputs are never views
