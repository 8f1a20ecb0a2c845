"""The course's recurrent layers, embedding, temporal affine and temporal softmax loss: against plain
NumPy references, gradient-checked, pure, dtype-keeping, and with clear errors on bad input."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import funcnn as fn
from funcnn.tree import tree_leaves, tree_map

EPS = {np.float32: np.finfo(np.float32).eps, np.float64: np.finfo(np.float64).eps}
CELLS = {"rnn": fn.rnn_cell, "lstm": fn.lstm_cell, "gru": fn.gru_cell}
LAYERS = {"rnn": fn.rnn_layer, "lstm": fn.lstm_layer, "gru": fn.gru_layer}
STEPS = {"rnn": fn.rnn_step, "lstm": fn.lstm_step, "gru": fn.gru_step}
SEQUENCES = {"rnn": fn.rnn, "lstm": fn.lstm, "gru": fn.gru}


def sigmoid(a):
    return 1 / (1 + np.exp(-a))


def reference_step(kind, p, x, h, c=None):
    """The course's (and PyTorch's, for the GRU) equations, written out with NumPy."""
    if kind == "rnn":
        return np.tanh(x @ p["wx"] + h @ p["wh"] + p["b"])
    if kind == "lstm":
        i, f, o, g = np.split(x @ p["wx"] + h @ p["wh"] + p["b"], 4, axis=1)
        next_c = sigmoid(f) * c + sigmoid(i) * np.tanh(g)
        return sigmoid(o) * np.tanh(next_c), next_c
    xr, xz, xn = np.split(x @ p["wx"] + p["bx"], 3, axis=1)
    hr, hz, hn = np.split(h @ p["wh"] + p["bh"], 3, axis=1)
    r, z = sigmoid(xr + hr), sigmoid(xz + hz)
    n = np.tanh(xn + r * hn)
    return (1 - z) * n + z * h


def reference_sequence(kind, p, x, h0):
    h, c, out = h0, np.zeros_like(h0), []
    for t in range(x.shape[1]):
        if kind == "lstm":
            h, c = reference_step(kind, p, x[:, t], h, c)
        else:
            h = reference_step(kind, p, x[:, t], h)
        out.append(h)
    return np.stack(out, axis=1)


@st.composite
def problems(draw, kind=None, dtype=None):
    """(kind, params, x (N, T, D), h0 (N, H)) with the course's initial scale."""
    kind = draw(st.sampled_from(sorted(CELLS))) if kind is None else kind
    dtype = draw(st.sampled_from([np.float32, np.float64])) if dtype is None else dtype
    n, t, d, h = (draw(st.integers(1, 4)) for _ in range(4))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    _, params = fn.init_params(LAYERS[kind](h), rng, ((t, d), (h,)), dtype)
    params = tree_map(lambda a: a + rng.standard_normal(a.shape).astype(dtype) * 0.1, params)  # nonzero biases
    return kind, params, rng.standard_normal((n, t, d)).astype(dtype), rng.standard_normal((n, h)).astype(dtype)


def bound(dtype, x, h0):
    # each output is a sum of D + H products through a few bounded gates: rounding grows like eps * (D + H + 1)
    return 30 * EPS[dtype] * (x.shape[-1] + h0.shape[-1] + 1)


@settings(max_examples=40, deadline=None)
@given(problems())
def test_cells_match_the_numpy_reference(problem):
    kind, p, x, h0 = problem
    inputs = (x[:, 0], h0, h0 * 0.5) if kind == "lstm" else (x[:, 0], h0)
    out, _ = STEPS[kind](p, inputs)
    expected = reference_step(kind, p, *inputs)
    for got, want in zip(tree_leaves(out), tree_leaves(expected)):
        assert got.dtype == x.dtype
        np.testing.assert_allclose(got, want, rtol=0, atol=bound(x.dtype.type, x, h0) * (1 + np.abs(want).max()))


@settings(max_examples=40, deadline=None)
@given(problems())
def test_sequences_match_the_numpy_reference(problem):
    kind, p, x, h0 = problem
    h, _ = SEQUENCES[kind](p, (x, h0))
    want = reference_sequence(kind, p, x, h0)
    assert h.shape == want.shape and h.dtype == x.dtype
    # the state passes through T steps, each contracting (tanh, gates <= 1): errors add up over T
    np.testing.assert_allclose(h, want, rtol=0, atol=x.shape[1] * bound(x.dtype.type, x, h0) * (1 + np.abs(want).max()))


@settings(max_examples=15, deadline=None)
@given(problems(dtype=np.float64))
def test_sequences_pass_check_vjp(problem):
    kind, p, x, h0 = problem
    report = fn.check_vjp(SEQUENCES[kind], p, (x, h0))
    assert {leaf.path for leaf in report.leaves} >= {"x[0]", "x[1]", 'params["wh"]'}


@settings(max_examples=30, deadline=None)
@given(problems(dtype=np.float32))
def test_float32_sequences_backprop_as_float64_does(problem):
    # check_vjp's mixed check does not allow for cancellation inside the vjp, and backprop through time
    # sums many terms into dh0 (a case found by hypothesis: 3.5e-5 relative on a small dh0); so compare
    # the float32 vjp with the float64 one, whose gradient check runs in test_sequences_pass_check_vjp.
    kind, p, x, h0 = problem
    dh = np.random.default_rng(0).standard_normal((*x.shape[:2], h0.shape[1]))
    h32, vjp32 = SEQUENCES[kind](p, (x, h0))
    h64, vjp64 = SEQUENCES[kind](*tree_map(lambda a: a.astype(np.float64), (p, (x, h0))))
    got, want = vjp32(dh.astype(np.float32)), vjp64(dh)
    # T steps back, each a sum of (D + H) * gates products of terms bounded by |dh| and the weights
    scale = (
        bound(np.float32, x, h0)
        * x.shape[1]
        * 4
        * (1 + np.abs(dh).max())
        * (1 + max(np.abs(a).max() for a in p.values()))
    )
    for a, b in zip(tree_leaves(got), tree_leaves(want)):
        assert a.dtype == np.float32
        np.testing.assert_allclose(a, b, rtol=0, atol=scale * max(1, x.shape[0] * x.shape[1]))


@settings(max_examples=15, deadline=None)
@given(problems(), st.sampled_from([np.float32, np.float64]))
def test_cells_pass_check_vjp(problem, dtype):
    kind, p, x, h0 = problem
    inputs = (x[:, 0], h0, h0 * 0.5) if kind == "lstm" else (x[:, 0], h0)
    numeric = np.float64 if dtype == np.float32 else None
    report = fn.check_vjp(STEPS[kind], p, inputs, dtype=dtype, numeric_dtype=numeric)
    assert len(report.leaves) == len(tree_leaves((p, inputs)))


def frozen(tree):
    def freeze(a):
        a = np.array(a)
        a.flags.writeable = False
        return a

    return tree_map(freeze, tree)


@settings(max_examples=20, deadline=None)
@given(problems())
def test_pure_and_repeatable(problem):
    kind, p, x, h0 = problem
    p, inputs = frozen(p), frozen((x, h0))  # a layer that writes into its inputs raises
    h, vjp = SEQUENCES[kind](p, inputs)
    dh = frozen(np.ones_like(h))
    first, second = vjp(dh), vjp(dh)
    for a, b in zip(tree_leaves(first), tree_leaves(second)):
        assert a.dtype == x.dtype
        np.testing.assert_array_equal(a, b)


@settings(max_examples=20, deadline=None)
@given(problems())
def test_lstm_sequence_is_its_step_repeated_with_c0_zero(problem):
    _, p, x, h0 = problem
    kind = "lstm"
    _, p = fn.init_params(
        fn.lstm_layer(h0.shape[1]), np.random.default_rng(1), ((x.shape[1], x.shape[2]), (h0.shape[1],)), x.dtype
    )

    def cell(params, inputs):
        (h, c), x_t = inputs
        (h, c), step_vjp = fn.lstm_step(params, (x_t, h, c))

        def vjp(d):
            (dh, dc), dy = d
            dp, (dx, dh_prev, dc_prev) = step_vjp((dh + dy, dc))
            return dp, ((dh_prev, dc_prev), dx)

        return ((h, c), h), vjp

    (hs, _), scan_vjp = fn.scan(cell)(p, ((h0, np.zeros_like(h0)), x))
    h, vjp = SEQUENCES[kind](p, (x, h0))
    # the same operations, but BLAS may sum the step's D products in another order for N rows than for N * T
    np.testing.assert_allclose(hs, h, rtol=0, atol=x.shape[1] * bound(x.dtype.type, x, h0))
    dh = np.random.default_rng(2).standard_normal(h.shape).astype(x.dtype)
    dp_scan, ((dh0, _), dx_scan) = scan_vjp((dh, None))
    dp, (dx, dh0_seq) = vjp(dh)
    # the sequence sums the weight gradients of all steps in one product, scan step by step
    tol = 10 * EPS[x.dtype.type] * x.shape[1] * (x.shape[0] + 1)
    for a, b in zip(tree_leaves((dp, dx, dh0_seq)), tree_leaves((dp_scan, dx_scan, dh0))):
        np.testing.assert_allclose(a, b, rtol=0, atol=tol * (1 + np.abs(b).max()))


def test_torch_agrees_on_lstm_and_gru():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    n, t, d, h = 3, 5, 4, 6
    x, h0 = rng.standard_normal((n, t, d)), rng.standard_normal((n, h))
    for kind, module in (("lstm", torch.nn.LSTM), ("gru", torch.nn.GRU)):
        net = module(d, h, batch_first=True).double()
        sd = {k: v.detach().numpy() for k, v in net.state_dict().items()}
        if kind == "gru":
            p = {"wx": sd["weight_ih_l0"].T, "wh": sd["weight_hh_l0"].T, "bx": sd["bias_ih_l0"], "bh": sd["bias_hh_l0"]}
            want = net(torch.tensor(x), torch.tensor(h0[None]))[0]
        else:  # torch's gate order i, f, g, o; the course's i, f, o, g
            order = np.r_[0 : 2 * h, 3 * h : 4 * h, 2 * h : 3 * h]
            p = {
                "wx": sd["weight_ih_l0"][order].T,
                "wh": sd["weight_hh_l0"][order].T,
                "b": (sd["bias_ih_l0"] + sd["bias_hh_l0"])[order],
            }
            want = net(torch.tensor(x), (torch.tensor(h0[None]), torch.zeros(1, n, h, dtype=torch.float64)))[0]
        dh = rng.standard_normal((n, t, h))
        want.backward(torch.tensor(dh))
        got, vjp = SEQUENCES[kind](p, (x, h0))
        # float64 on both sides, T steps of D + H products: far below 1e-10
        np.testing.assert_allclose(got, want.detach().numpy(), rtol=0, atol=1e-10)
        dwh = vjp(dh)[0]["wh"]
        torch_dwh = net.weight_hh_l0.grad.numpy().T
        np.testing.assert_allclose(dwh, torch_dwh[:, order] if kind == "lstm" else torch_dwh, rtol=0, atol=1e-10)


def good_sequence(kind, n=2, t=3, d=4, h=5):
    rng = np.random.default_rng(0)
    _, p = fn.init_params(LAYERS[kind](h), rng, ((t, d), (h,)), np.float64)
    return p, rng.standard_normal((n, t, d)), rng.standard_normal((n, h))


@pytest.mark.parametrize("kind", sorted(CELLS))
def test_bad_inputs_are_named(kind):
    p, x, h0 = good_sequence(kind)
    layer = SEQUENCES[kind]
    with pytest.raises(ValueError, match=rf"^{kind}: h0 must have shape \(N, H\) = \(2, 5\).*got \(2, 4\)"):
        layer(p, (x, h0[:, :4]))
    with pytest.raises(ValueError, match=rf"^{kind}: x must be 3-D \(N, T, D\)"):
        layer(p, (x[:, 0], h0))
    with pytest.raises(ValueError, match=rf"^{kind}: x has D=3"):
        layer(p, (x[..., :3], h0))
    with pytest.raises(TypeError, match=rf"^{kind}: x must be a tuple \(x, h0\), got an array"):
        layer(p, x)
    with pytest.raises(TypeError, match=rf"^{kind}: arrays must share one dtype"):
        layer(p, (x.astype(np.float32), h0))
    with pytest.raises(TypeError, match=rf"^{kind}: params must be a dict"):
        layer({"wx": p["wx"]}, (x, h0))
    with pytest.raises(ValueError, match=rf"^{kind} vjp: dy must have the output's shape"):
        layer(p, (x, h0))[1](np.ones((2, 3)))
    with pytest.raises(ValueError, match=rf"^{kind}\(6\): params\['wh'\] has shape \(5, "):
        LAYERS[kind](6)(p, (x, h0))


def test_step_errors_name_the_cell():
    p, x, h0 = good_sequence("lstm")
    with pytest.raises(TypeError, match=r"^lstm_step: x must be a tuple \(x, prev_h, prev_c\), got a tuple of 2"):
        fn.lstm_step(p, (x[:, 0], h0))
    with pytest.raises(ValueError, match=r"^lstm_step: prev_c must have shape \(N, H\)"):
        fn.lstm_step(p, (x[:, 0], h0, h0[:1]))


def test_nan_in_nan_out():
    p, x, h0 = good_sequence("lstm")
    x[0, 1, 0] = np.nan
    h, _ = fn.lstm(p, (x, h0))
    assert np.isnan(h[0, 1:]).all() and not np.isnan(h[1]).any() and not np.isnan(h[0, 0]).any()


SIZED = [
    (fn.rnn_layer(5), ((3, 4), (5,))),
    (fn.lstm_layer(5), ((3, 4), (5,))),
    (fn.gru_layer(5), ((3, 4), (5,))),
    (fn.rnn_cell(5), ((4,), (5,))),
    (fn.lstm_cell(5), ((4,), (5,), (5,))),
    (fn.gru_cell(5), ((4,), (5,))),
    (fn.temporal_dense(6), (3, 4)),
    (fn.embedding(7, 3), (4,)),
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(("net", "shape"), SIZED, ids=[net.name for net, _ in SIZED])
def test_summary_memory_is_what_the_vjp_keeps(net, shape, dtype):
    from test_summary import kept_bytes

    rng = np.random.default_rng(0)
    _, p = fn.init_params(net, rng, shape, dtype)
    if net.op == "word_embedding":
        x = rng.integers(7, size=(2, *shape))
    elif isinstance(shape[0], tuple):
        x = tuple(rng.standard_normal((2, *s)).astype(dtype) for s in shape)
    else:
        x = rng.standard_normal((2, *shape)).astype(dtype)
    table = fn.summary(net, shape, dtype, batch_size=2)
    assert table.total.params == sum(a.size for a in tree_leaves(p))
    assert table.total.memory == kept_bytes(net(p, x)[1], tree_leaves(p))


def test_init_and_shapes():
    _, p = fn.init_params(fn.gru_layer(5), np.random.default_rng(0), ((3, 4), (5,)))
    assert {k: v.shape for k, v in p.items()} == {"wx": (4, 15), "wh": (5, 15), "bx": (15,), "bh": (15,)}
    assert fn.lstm.out_shape(((3, 4), (5,))) == (3, 5)
    assert fn.lstm_step.out_shape(((4,), (5,), (5,))) == ((5,), (5,))
    assert fn.summary(fn.lstm_layer(5), ((3, 4), (5,))).total.params == (4 + 5 + 1) * 20
    with pytest.raises(ValueError, match=r"^lstm\(6\): the state's shape must be \(6,\)"):
        fn.init_params(fn.lstm_layer(6), np.random.default_rng(0), ((3, 4), (5,)))
    # the course's scale: wx ~ randn / sqrt(D), wh ~ randn / sqrt(H); 4000 draws estimate the std within ~5%
    _, p = fn.init_params(fn.rnn_layer(40), np.random.default_rng(0), ((1, 100), (40,)), np.float64)
    assert abs(p["wx"].std() * 10 - 1) < 0.05 and abs(p["wh"].std() * np.sqrt(40) - 1) < 0.05


# -- embedding, temporal affine, temporal softmax loss


@settings(max_examples=30, deadline=None)
@given(st.integers(1, 3), st.integers(1, 4), st.integers(1, 6), st.integers(1, 4), st.integers(0, 2**32 - 1))
def test_word_embedding(n, t, v, d, seed):
    rng = np.random.default_rng(seed)
    _, p = fn.init_params(fn.embedding(v, d), rng, (t,), np.float64)
    idx = rng.integers(v, size=(n, t))
    out, vjp = fn.word_embedding(p, idx)
    np.testing.assert_array_equal(out, p["w"][idx])
    dout = rng.standard_normal(out.shape)
    dw = np.zeros_like(p["w"])
    for i in range(n):
        for j in range(t):
            dw[idx[i, j]] += dout[i, j]
    grads, dx = vjp(dout)
    assert dx is None
    # the same additions, possibly in another order
    np.testing.assert_allclose(grads["w"], dw, rtol=0, atol=4 * EPS[np.float64] * n * t * np.abs(dout).max())
    fn.check_vjp(fn.word_embedding, p, idx)


def test_word_embedding_errors():
    w = {"w": np.ones((4, 2))}
    with pytest.raises(TypeError, match=r"^word_embedding: x must be an integer array of indices, got dtype float64"):
        fn.word_embedding(w, np.zeros((2, 3)))
    with pytest.raises(ValueError, match=r"^word_embedding: x must be in \[0, 4\), got min 0, max 4"):
        fn.word_embedding(w, np.array([[0, 4]]))
    with pytest.raises(ValueError, match=r"^word_embedding: x must be in \[0, 4\), got min -1"):
        fn.word_embedding(w, np.array([[-1]]))


@settings(max_examples=20, deadline=None)
@given(problems(dtype=np.float64), st.integers(1, 5))
def test_temporal_affine(problem, m):
    _, _, x, _ = problem
    _, p = fn.init_params(fn.temporal_dense(m), np.random.default_rng(0), x.shape[1:], np.float64)
    out, _ = fn.temporal_affine(p, x)
    np.testing.assert_allclose(out, np.einsum("ntd,dm->ntm", x, p["w"]) + p["b"], rtol=1e-12, atol=1e-12)
    fn.check_vjp(fn.temporal_affine, p, x)
    fn.check_vjp(fn.temporal_affine, p, x, dtype=np.float32, numeric_dtype=np.float64)


@settings(max_examples=30, deadline=None)
@given(st.integers(1, 3), st.integers(1, 4), st.integers(1, 5), st.integers(0, 2**32 - 1))
def test_temporal_softmax_loss(n, t, v, seed):
    rng = np.random.default_rng(seed)
    scores, y, mask = rng.standard_normal((n, t, v)), rng.integers(v, size=(n, t)), rng.random((n, t)) < 0.7
    loss, vjp = fn.temporal_softmax_loss(scores, y, mask)
    log_p = scores - np.log(np.exp(scores).sum(axis=2, keepdims=True))
    want = -sum(log_p[i, j, y[i, j]] for i in range(n) for j in range(t) if mask[i, j]) / n  # summed, divided by N
    assert abs(loss - want) <= 10 * EPS[np.float64] * (n * t * v + abs(want))  # sums of n*t*v terms
    loss_layer = fn.layer(lambda p, s: (lambda out: (np.asarray(out[0]), lambda d: ((), out[1](d))))(
        fn.temporal_softmax_loss(s, y, mask)))  # fmt: skip
    fn.check_vjp(loss_layer, (), scores)
    assert not vjp()[~mask].any()  # masked steps get no gradient


def test_temporal_softmax_loss_errors():
    scores = np.zeros((2, 3, 4))
    with pytest.raises(
        ValueError, match=r"^temporal_softmax_loss: mask must have shape \(N, T\) = \(2, 3\).*got \(2, 2\)"
    ):
        fn.temporal_softmax_loss(scores, np.zeros((2, 3), int), np.ones((2, 2), bool))
    with pytest.raises(ValueError, match=r"^temporal_softmax_loss: y must have shape"):
        fn.temporal_softmax_loss(scores, np.zeros((2, 4), int), np.ones((2, 3), bool))
    with pytest.raises(TypeError, match=r"^temporal_softmax_loss: labels y must be an integer array"):
        fn.temporal_softmax_loss(scores, np.zeros((2, 3)), np.ones((2, 3), bool))
    with pytest.raises(ValueError, match=r"^temporal_softmax_loss: labels y must be in \[0, 4\)"):
        fn.temporal_softmax_loss(scores, np.full((2, 3), 4), np.ones((2, 3), bool))
    with pytest.raises(TypeError, match=r"^temporal_softmax_loss: mask must hold booleans"):
        fn.temporal_softmax_loss(scores, np.zeros((2, 3), int), np.full((2, 3), 0.5))
