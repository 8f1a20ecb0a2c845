"""Multi-head attention, positional encoding, the last-axis layer norm and the transformer layers: against
plain NumPy references (and PyTorch when installed), gradient-checked in float64 and float32, hand-computed
cases, pure, with exact memory accounting and clear errors on bad input."""

import numpy as np
import pytest
from bounds import gamma
from hypothesis import given, settings
from hypothesis import strategies as st
from test_summary import kept_bytes

import funcnn as fn
from funcnn.tree import tree_leaves, tree_map

KEYS = ("query", "key", "value", "proj")


def reference_attention(p, q, k, v, heads, mask=None):
    """The course's MultiHeadAttention, one head and one example at a time, in float64."""
    q, k, v = (np.asarray(a, np.float64) for a in (q, k, v))
    p = tree_map(lambda a: np.asarray(a, np.float64), p)
    n, s, e = q.shape
    dh = e // heads
    qp, kp, vp = (a @ p[key]["w"] + p[key]["b"] for a, key in ((q, "query"), (k, "key"), (v, "value")))
    out = np.zeros((n, s, e))
    for i in range(n):
        for h in range(heads):
            cols = slice(h * dh, (h + 1) * dh)
            scores = qp[i][:, cols] @ kp[i][:, cols].T / np.sqrt(dh)
            if mask is not None:
                scores = np.where(mask, scores, -np.inf)
            w = np.exp(scores - scores.max(axis=1, keepdims=True))
            out[i][:, cols] = (w / w.sum(axis=1, keepdims=True)) @ vp[i][:, cols]
    return out @ p["proj"]["w"] + p["proj"]["b"]


def reference_norm(p, x, eps=1e-5):
    mean, var = x.mean(axis=-1, keepdims=True), x.var(axis=-1, keepdims=True)
    return p["gamma"] * (x - mean) / np.sqrt(var + eps) + p["beta"]


def reference_ffn(p, x):
    return np.maximum(x @ p["ffn1"]["w"] + p["ffn1"]["b"], 0) @ p["ffn2"]["w"] + p["ffn2"]["b"]


def reference_encoder(p, x, heads, mask, norm_first):
    def sa(h):
        return reference_attention(p["self_attn"], h, h, h, heads, mask)

    if norm_first:
        x = x + sa(reference_norm(p["norm1"], x))
        return x + reference_ffn(p, reference_norm(p["norm2"], x))
    x = reference_norm(p["norm1"], x + sa(x))
    return reference_norm(p["norm2"], x + reference_ffn(p, x))


def reference_decoder(p, x, memory, heads, mask, norm_first):
    def sa(h):
        return reference_attention(p["self_attn"], h, h, h, heads, mask)

    def ca(h):
        return reference_attention(p["cross_attn"], h, memory, memory, heads)

    if norm_first:
        x = x + sa(reference_norm(p["norm1"], x))
        x = x + ca(reference_norm(p["norm2"], x))
        return x + reference_ffn(p, reference_norm(p["norm3"], x))
    x = reference_norm(p["norm1"], x + sa(x))
    x = reference_norm(p["norm2"], x + ca(x))
    return reference_norm(p["norm3"], x + reference_ffn(p, x))


def jittered(params, rng, dtype):
    """Params with nonzero biases and norms (init gives zeros and ones)."""
    return tree_map(lambda a: (a + 0.2 * rng.standard_normal(a.shape)).astype(dtype), params)


def random_mask(rng, s, t):
    mask = rng.random((s, t)) < 0.6
    mask[np.arange(s), rng.integers(t, size=s)] = True  # every query attends to some key
    return mask


@st.composite
def problems(draw, dtype=None):
    """(heads, params, query (N, S, E), key (N, T, E), value, mask or None)."""
    dtype = draw(st.sampled_from([np.float32, np.float64])) if dtype is None else dtype
    n, s, t, heads, dh = (draw(st.integers(1, 4)) for _ in range(5))
    e = heads * dh
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    _, p = fn.init_params(fn.multi_head_attention(heads), rng, ((s, e), (t, e), (t, e)), dtype)
    q, k, v = (rng.standard_normal(shape).astype(dtype) for shape in ((n, s, e), (n, t, e), (n, t, e)))
    mask = random_mask(rng, s, t) if draw(st.booleans()) else None
    return heads, jittered(p, rng, dtype), q, k, v, mask


def output_bound(dtype, e, t):
    # Each stage is a sum of at most max(E, T) products of values of size ~1-10 (the projections, the
    # scores, the weighted sum, the output projection): 4 stages, each within gamma(max(E, T) + 1) of
    # exact relative to its terms, amplified at most e-fold by the softmax of a perturbed score; a
    # magnitude factor of 100 covers the sums of |terms| of these jittered unit-scale weights.
    return 4 * 3 * 100 * gamma(max(e, t) + 1, dtype)


@settings(max_examples=40, deadline=None)
@given(problems())
def test_attention_matches_the_numpy_reference(problem):
    heads, p, q, k, v, mask = problem
    x = (q, k, v) if mask is None else (q, k, v, mask)
    y, _ = fn.multi_head_attention(heads)(p, x)
    assert y.dtype == q.dtype and y.shape == q.shape
    want = reference_attention(p, q, k, v, heads, mask)
    np.testing.assert_allclose(
        y, want, rtol=0, atol=output_bound(q.dtype, q.shape[2], k.shape[1]) * (1 + abs(want).max())
    )


@settings(max_examples=15, deadline=None)
@given(problems(dtype=np.float64))
def test_attention_passes_check_vjp(problem):
    heads, p, q, k, v, mask = problem
    x = (q, k, v) if mask is None else (q, k, v, mask)
    report = fn.check_vjp(fn.multi_head_attention(heads), p, x)
    assert {"x[0]", "x[1]", "x[2]", 'params["proj"]["w"]'} <= {leaf.path for leaf in report.leaves}


@settings(max_examples=15, deadline=None)
@given(problems(dtype=np.float32))
def test_float32_attention_passes_the_mixed_check_vjp(problem):
    heads, p, q, k, v, mask = problem
    x = (q, k, v) if mask is None else (q, k, v, mask)
    report = fn.check_vjp(fn.multi_head_attention(heads), p, x, dtype=np.float32, numeric_dtype=np.float64)
    assert len(report.leaves) == len(tree_leaves((p, (q, k, v))))


def sized_layers():
    """(layer, input shape per example, input builder) for every new layer, dropout off."""
    return [
        (fn.self_attention(2), (3, 4)),
        (fn.self_attention(2, causal=True), (3, 4)),
        (fn.self_attention(2, recompute=True), (3, 4)),
        (fn.multi_head_attention(2), ((3, 4), (5, 4), (5, 4))),
        (fn.temporal_layer_norm(), (3, 4)),
        (fn.positional_encoding(), (3, 4)),
        (fn.transformer_encoder_layer(2, 8), (3, 4)),
        (fn.transformer_encoder_layer(2, 8, norm_first=True, causal=True), (3, 4)),
        (fn.transformer_decoder_layer(2, 8), ((3, 4), (5, 4))),
        (fn.transformer_decoder_layer(2, 8, norm_first=True), ((3, 4), (5, 4))),
    ]


def inputs_for(shape, rng, dtype, n=2):
    if isinstance(shape[0], tuple):
        return tuple(rng.standard_normal((n, *s)).astype(dtype) for s in shape)
    return rng.standard_normal((n, *shape)).astype(dtype)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize(("layer", "shape"), sized_layers(), ids=lambda v: getattr(v, "name", str(v)))
def test_every_layer_passes_check_vjp(layer, shape, dtype):
    rng = np.random.default_rng(1)
    _, p = fn.init_params(layer, rng, shape, np.float64)
    p = jittered(p, rng, np.float64)
    report = fn.check_vjp(layer, p, inputs_for(shape, rng, np.float64), dtype=dtype, numeric_dtype=np.float64)
    assert report.leaves


def masked_cases():
    rng = np.random.default_rng(2)
    mask = random_mask(rng, 3, 3)
    return [
        (fn.multi_head_attention(2), ((3, 4), (3, 4), (3, 4)), mask),
        (fn.transformer_encoder_layer(2, 8), (3, 4), mask),
        (fn.transformer_encoder_layer(2, 8, norm_first=True, causal=True), (3, 4), mask),
        (fn.transformer_decoder_layer(2, 8), ((3, 4), (5, 4)), mask),
    ]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize(("layer", "shape", "mask"), masked_cases(), ids=lambda v: getattr(v, "name", ""))
def test_masked_layers_pass_check_vjp_with_a_none_mask_cotangent(layer, shape, mask, dtype):
    rng = np.random.default_rng(3)
    _, p = fn.init_params(layer, rng, shape, np.float64)
    x = inputs_for(shape, rng, np.float64)
    x = (*x, mask) if isinstance(x, tuple) else (x, mask)
    report = fn.check_vjp(layer, jittered(p, rng, np.float64), x, dtype=dtype, numeric_dtype=np.float64)
    assert report.leaves
    _, vjp = layer(p, x)
    assert vjp(np.ones(x[0].shape))[1][-1] is None


def training(layer, seed=1):
    """A plain layer running ``layer`` in training mode with a fresh generator each call (one mask)."""
    return lambda p, x: layer.run(p, x, train=True, rng=np.random.default_rng(seed))[:2]


DROPPING = [
    (fn.multi_head_attention(2, dropout=0.3), ((3, 4), (5, 4), (5, 4))),
    (fn.self_attention(2, dropout=0.3, causal=True), (3, 4)),
    (fn.positional_encoding(dropout=0.3), (3, 4)),
    (fn.transformer_encoder_layer(2, 8, dropout=0.3), (3, 4)),
    (fn.transformer_decoder_layer(2, 8, dropout=0.3, norm_first=True), ((3, 4), (5, 4))),
]


@pytest.mark.parametrize("train", [True, False])
@pytest.mark.parametrize(("layer", "shape"), DROPPING, ids=lambda v: getattr(v, "name", str(v)))
def test_dropout_in_both_modes_passes_check_vjp(layer, shape, train):
    rng = np.random.default_rng(4)
    _, p = fn.init_params(layer, rng, shape, np.float64)
    f = training(layer) if train else (lambda p, x: layer.run(p, x, train=False)[:2])
    fn.check_vjp(f, jittered(p, rng, np.float64), inputs_for(shape, rng, np.float64))
    fn.check_vjp(f, p, inputs_for(shape, rng, np.float32), dtype=np.float32, numeric_dtype=np.float64)


@pytest.mark.parametrize(("layer", "shape"), DROPPING, ids=lambda v: getattr(v, "name", str(v)))
def test_bind_fixes_the_mask_also_for_a_tuple_input(layer, shape):
    rng = np.random.default_rng(6)
    _, p = fn.init_params(layer, rng, shape, np.float64)
    x = inputs_for(shape, rng, np.float64)
    bound = fn.bind(layer, train=True, rng=np.random.default_rng(7))
    np.testing.assert_array_equal(bound(p, x)[0], training(layer, 7)(p, x)[0])


@pytest.mark.parametrize(("layer", "shape"), DROPPING, ids=lambda v: getattr(v, "name", str(v)))
def test_summary_memory_in_training_is_what_the_vjp_keeps(layer, shape):
    rng = np.random.default_rng(8)
    _, p = fn.init_params(layer, rng, shape, np.float64)
    _, vjp = training(layer)(p, inputs_for(shape, rng, np.float64))
    assert fn.summary(layer, shape, np.float64, batch_size=2).total.memory == kept_bytes(vjp, tree_leaves(p))


@pytest.mark.parametrize(("layer", "shape"), DROPPING, ids=lambda v: getattr(v, "name", str(v)))
def test_dropout_is_off_in_evaluation_and_drawn_from_rng_in_training(layer, shape):
    rng = np.random.default_rng(5)
    _, p = fn.init_params(layer, rng, shape, np.float64)
    x = inputs_for(shape, rng, np.float64)
    quiet = {"multi_head_attention": fn.multi_head_attention(2), "self_attention": fn.self_attention(2, causal=True)}
    plain = quiet.get(layer.op)
    evaluated = layer.run(p, x, train=False)[0]
    if plain is not None:
        np.testing.assert_array_equal(evaluated, plain(p, x)[0])
    once, twice = training(layer, 7)(p, x)[0], training(layer, 7)(p, x)[0]
    np.testing.assert_array_equal(once, twice)
    assert not np.allclose(once, evaluated)
    with pytest.raises(ValueError, match="rng"):
        layer.run(p, x, train=True)


def test_one_hot_keys_by_hand():
    # E = 2, one head, identity projections: scores q.k / sqrt(2) = [c / sqrt(2), 0] with c = sqrt(2) ln 3
    # give weights [3/4, 1/4], so y = 3/4 [1, 2] + 1/4 [3, 4] = [1.5, 2.5]
    eye = {"w": np.eye(2), "b": np.zeros(2)}
    p = {key: eye for key in KEYS}
    q = np.array([[[np.sqrt(2) * np.log(3), 0.0]]])
    k, v = np.array([[[1.0, 0.0], [0.0, 1.0]]]), np.array([[[1.0, 2.0], [3.0, 4.0]]])
    y, _ = fn.multi_head_attention(1)(p, (q, k, v))
    np.testing.assert_allclose(y, [[[1.5, 2.5]]], rtol=4 * np.finfo(float).eps)


def test_one_key_gives_its_value_whatever_the_query():
    rng = np.random.default_rng(6)
    _, p = fn.init_params(fn.multi_head_attention(2), rng, ((3, 4), (1, 4), (1, 4)), np.float64)
    v = rng.standard_normal((2, 1, 4))
    want = v @ p["value"]["w"] @ p["proj"]["w"]  # T = 1: every weight is exactly 1
    for q in (rng.standard_normal((2, 3, 4)), 10 * rng.standard_normal((2, 3, 4))):
        y, _ = fn.multi_head_attention(2)(p, (q, rng.standard_normal((2, 1, 4)), v))
        np.testing.assert_allclose(y, np.broadcast_to(want, y.shape), rtol=0, atol=1e-14)


def test_causal_mask_on_two_steps():
    # with a causal mask on T = 2, the first position sees only the first key: changing the second input
    # leaves the first output alone, and the first output is attention over the first step alone
    rng = np.random.default_rng(7)
    layer = fn.self_attention(2, causal=True)
    _, p = fn.init_params(layer, rng, (2, 4), np.float64)
    x = rng.standard_normal((3, 2, 4))
    y, _ = layer(p, x)
    x2 = x.copy()
    x2[:, 1] += 5
    np.testing.assert_array_equal(layer(p, x2)[0][:, 0], y[:, 0])
    np.testing.assert_allclose(y[:, :1], fn.self_attention(2)(p, x[:, :1])[0], rtol=0, atol=1e-14)
    np.testing.assert_array_equal(fn.causal_mask(2), [[True, False], [True, True]])


def test_self_attention_is_attention_of_x_three_times_with_the_cotangents_summed():
    rng = np.random.default_rng(8)
    _, p = fn.init_params(fn.self_attention(2), rng, (5, 6), np.float64)
    x, dy = rng.standard_normal((2, 5, 6)), rng.standard_normal((2, 5, 6))
    y, vjp = fn.self_attention(2, causal=True)(p, x)
    y3, vjp3 = fn.multi_head_attention(2)(p, (x, x, x, fn.causal_mask(5)))
    np.testing.assert_allclose(y, y3, rtol=0, atol=1e-14)
    (g, dx), (g3, d3) = vjp(dy), vjp3(dy)
    np.testing.assert_allclose(dx, d3[0] + d3[1] + d3[2], rtol=0, atol=1e-13)
    for a, b in zip(tree_leaves(g), tree_leaves(g3)):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-13)


@pytest.mark.parametrize(
    "make",
    [
        lambda **kw: fn.self_attention(2, **kw),
        lambda **kw: fn.transformer_encoder_layer(2, 8, causal=True, **kw),
        lambda **kw: fn.transformer_decoder_layer(2, 8, dropout=0.2, **kw),
    ],
)
def test_recompute_gives_the_same_gradients_and_keeps_less(make):
    rng = np.random.default_rng(9)
    layer, again = make(), make(recompute=True)
    shape = ((5, 6), (3, 6)) if layer.op == "transformer_decoder_layer" else (5, 6)
    _, p = fn.init_params(layer, rng, shape, np.float32)
    x = inputs_for(shape, rng, np.float32)
    dy = rng.standard_normal((2, 5, 6)).astype(np.float32)
    kept, redone = training(layer)(p, x)[1], training(again)(p, x)[1]
    for a, b in zip(tree_leaves(kept(dy)), tree_leaves(redone(dy))):
        np.testing.assert_array_equal(a, b)  # the same operations on the same arrays
    assert kept_bytes(redone, tree_leaves(p)) < kept_bytes(kept, tree_leaves(p))


def test_the_key_bias_gets_an_exact_zero_gradient():
    # softmax is unchanged by adding one number to every score of a row, which is what the key bias does
    rng = np.random.default_rng(10)
    _, p = fn.init_params(fn.self_attention(2), rng, (5, 6), np.float64)
    grads, _ = fn.self_attention(2)(p, rng.standard_normal((2, 5, 6)))[1](rng.standard_normal((2, 5, 6)))
    assert not grads["key"]["b"].any() and grads["key"]["w"].any()


@settings(max_examples=20, deadline=None)
@given(
    st.integers(1, 3),
    st.integers(1, 5),
    st.integers(1, 3),
    st.integers(1, 3),
    st.integers(1, 6),
    st.booleans(),
    st.integers(0, 2**32 - 1),
)
def test_encoder_layers_match_the_oracle_over_shapes_and_heads(n, s, heads, dh, ff, norm_first, seed):
    rng = np.random.default_rng(seed)
    layer = fn.transformer_encoder_layer(heads, ff, norm_first=norm_first, causal=True)
    _, p = fn.init_params(layer, rng, (s, heads * dh), np.float64)
    p = jittered(p, rng, np.float64)
    x = rng.standard_normal((n, s, heads * dh))
    want = reference_encoder(p, x, heads, fn.causal_mask(s), norm_first)
    # float64, sums of at most E + F + S products of unit-scale terms, two norms dividing by a std that
    # can be as small as sqrt(eps) ~ 3e-3 when E = 1: 1e-9 leaves a factor of 1e3 over that rounding
    np.testing.assert_allclose(layer(p, x)[0], want, rtol=0, atol=1e-9 * (1 + np.abs(want).max()))


@pytest.mark.parametrize("norm_first", [False, True])
def test_transformer_layers_match_the_numpy_oracle(norm_first):
    rng = np.random.default_rng(11)
    mask = random_mask(rng, 4, 4)
    enc = fn.transformer_encoder_layer(2, 16, norm_first=norm_first)
    _, p = fn.init_params(enc, rng, (4, 6), np.float64)
    p = jittered(p, rng, np.float64)
    x, memory = rng.standard_normal((3, 4, 6)), rng.standard_normal((3, 5, 6))
    np.testing.assert_allclose(enc(p, (x, mask))[0], reference_encoder(p, x, 2, mask, norm_first), atol=1e-12)
    dec = fn.transformer_decoder_layer(2, 16, norm_first=norm_first)
    _, p = fn.init_params(dec, rng, ((4, 6), (5, 6)), np.float64)
    p = jittered(p, rng, np.float64)
    got = dec(p, (x, memory, mask))[0]
    np.testing.assert_allclose(got, reference_decoder(p, x, memory, 2, mask, norm_first), atol=1e-12)
    causal = fn.transformer_encoder_layer(2, 16, norm_first=norm_first, causal=True)
    _, p = fn.init_params(causal, rng, (4, 6), np.float64)
    np.testing.assert_allclose(causal(p, x)[0], enc(p, (x, fn.causal_mask(4)))[0], rtol=0, atol=0)


def torch_mha(torch, module, p):
    with torch.no_grad():
        module.in_proj_weight.copy_(torch.tensor(np.concatenate([p[k]["w"].T for k in KEYS[:3]])))
        module.in_proj_bias.copy_(torch.tensor(np.concatenate([p[k]["b"] for k in KEYS[:3]])))
        module.out_proj.weight.copy_(torch.tensor(p["proj"]["w"].T))
        module.out_proj.bias.copy_(torch.tensor(p["proj"]["b"]))


def torch_layer(torch, module, p):
    """Copy funcnn's params into a torch Transformer{Encoder,Decoder}Layer (torch's Linear weights are w.T)."""
    torch_mha(torch, module.self_attn, p["self_attn"])
    if "cross_attn" in p:
        torch_mha(torch, module.multihead_attn, p["cross_attn"])
    with torch.no_grad():
        for key, linear in (("ffn1", module.linear1), ("ffn2", module.linear2)):
            linear.weight.copy_(torch.tensor(p[key]["w"].T))
            linear.bias.copy_(torch.tensor(p[key]["b"]))
        for i in (1, 2, 3):
            if f"norm{i}" in p:
                getattr(module, f"norm{i}").weight.copy_(torch.tensor(p[f"norm{i}"]["gamma"]))
                getattr(module, f"norm{i}").bias.copy_(torch.tensor(p[f"norm{i}"]["beta"]))


@pytest.mark.parametrize("norm_first", [False, True])
def test_torch_agrees_on_the_transformer_layers(norm_first):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(12)
    n, s, t, e, heads, ff = 2, 5, 4, 8, 2, 16
    x, memory, dy = rng.standard_normal((n, s, e)), rng.standard_normal((n, t, e)), rng.standard_normal((n, s, e))
    torch_mask = torch.tensor(~fn.causal_mask(s))  # torch's boolean mask: True may NOT attend
    enc = fn.transformer_encoder_layer(heads, ff, norm_first=norm_first, causal=True)
    dec = fn.transformer_decoder_layer(heads, ff, norm_first=norm_first)
    for layer, shape, module_type in (
        (enc, (s, e), torch.nn.TransformerEncoderLayer),
        (dec, ((s, e), (t, e)), torch.nn.TransformerDecoderLayer),
    ):
        _, p = fn.init_params(layer, rng, shape, np.float64)
        p = jittered(p, rng, np.float64)
        module = module_type(e, heads, ff, dropout=0.0, batch_first=True, norm_first=norm_first).double()
        torch_layer(torch, module, p)
        tx, tm = torch.tensor(x, requires_grad=True), torch.tensor(memory, requires_grad=True)
        if layer is enc:
            want = module(tx, src_mask=torch_mask)
            y, vjp = layer(p, x)
        else:
            want = module(tx, tm, tgt_mask=torch_mask)
            y, vjp = layer(p, (x, memory, fn.causal_mask(s)))
        want.backward(torch.tensor(dy))
        grads, dx = vjp(dy)
        # float64 on both sides, a few sums of <= 16 products and two norms: far below 1e-12
        np.testing.assert_allclose(y, want.detach().numpy(), rtol=0, atol=1e-12)
        if layer is dec:
            dx, dmemory, _ = dx
            np.testing.assert_allclose(dmemory, tm.grad.numpy(), rtol=0, atol=1e-12)
        np.testing.assert_allclose(dx, tx.grad.numpy(), rtol=0, atol=1e-12)
        np.testing.assert_allclose(grads["ffn1"]["w"], module.linear1.weight.grad.numpy().T, rtol=0, atol=1e-12)
        torch_q = module.self_attn.in_proj_weight.grad.numpy()[:e].T
        np.testing.assert_allclose(grads["self_attn"]["query"]["w"], torch_q, rtol=0, atol=1e-12)


def test_positional_encoding_is_the_course_table():
    y, vjp = fn.positional_encoding(max_len=10)((), np.zeros((2, 7, 6)))
    i, j = 5, 3  # odd j: cos(i * 10000^(-(j - 1) / D))
    assert y[1, i, j] == pytest.approx(np.cos(i * 10000 ** (-(j - 1) / 6)), abs=1e-15)
    assert y[0, i, 2] == pytest.approx(np.sin(i * 10000 ** (-2 / 6)), abs=1e-15)
    dy = np.arange(84.0).reshape(2, 7, 6)
    np.testing.assert_array_equal(vjp(dy)[1], dy)
    assert fn.positional_encoding()((), np.zeros((1, 3, 4), np.float32))[0].dtype == np.float32


def test_temporal_layer_norm_is_torchs_layer_norm_over_the_last_axis():
    rng = np.random.default_rng(13)
    x = rng.standard_normal((2, 3, 5))
    p = {"gamma": rng.standard_normal(5), "beta": rng.standard_normal(5)}
    y, _ = fn.temporal_layer_norm()(p, x)
    np.testing.assert_allclose(y, reference_norm(p, x), rtol=0, atol=1e-14)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(("layer", "shape"), sized_layers(), ids=lambda v: getattr(v, "name", str(v)))
def test_summary_memory_is_what_the_vjp_keeps(layer, shape, dtype):
    rng = np.random.default_rng(14)
    _, p = fn.init_params(layer, rng, shape, dtype)
    table = fn.summary(layer, shape, dtype, batch_size=2)
    assert table.total.params == sum(a.size for a in tree_leaves(p))
    assert table.total.memory == kept_bytes(layer(p, inputs_for(shape, rng, dtype))[1], tree_leaves(p))
    assert table.total.forward_flops > 0
    if layer.op != "positional_encoding":  # its backward pass copies dy: no arithmetic
        assert table.total.backward_flops > table.total.forward_flops


def test_pure_and_repeatable():
    rng = np.random.default_rng(15)
    layer = fn.transformer_decoder_layer(2, 8)
    _, p = fn.init_params(layer, rng, ((3, 4), (5, 4)), np.float64)
    x = inputs_for(((3, 4), (5, 4)), rng, np.float64)
    before = tree_map(np.copy, (p, x))
    y, vjp = layer(p, x)
    dy = rng.standard_normal(y.shape)
    first, second = vjp(dy), vjp(dy)
    for a, b in zip(tree_leaves(first), tree_leaves(second)):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(tree_leaves(before), tree_leaves((p, x))):
        np.testing.assert_array_equal(a, b)


def test_nan_in_nan_out():
    rng = np.random.default_rng(16)
    layer = fn.transformer_encoder_layer(2, 8, causal=True)
    _, p = fn.init_params(layer, rng, (3, 4), np.float64)
    x = rng.standard_normal((2, 3, 4))
    x[0, 1, 0] = np.nan
    y, _ = layer(p, x)
    # NaN reaches every position of its example, even the masked one (a weight of 0 times a NaN value
    # is NaN, in torch too); the other example is untouched
    assert np.isnan(y[0]).all() and not np.isnan(y[1]).any()


def good_attention(n=2, s=3, t=5, e=4):
    rng = np.random.default_rng(17)
    _, p = fn.init_params(fn.multi_head_attention(2), rng, ((s, e), (t, e), (t, e)), np.float64)
    return p, rng.standard_normal((n, s, e)), rng.standard_normal((n, t, e))


def test_bad_inputs_are_named():
    p, q, kv = good_attention()
    name = r"^multi_head_attention\(num_heads=2\)"
    layer = fn.multi_head_attention(2)
    with pytest.raises(ValueError, match=r"^multi_head_attention\(num_heads=3\): num_heads=3 must divide .* E=4"):
        fn.multi_head_attention(3)(p, (q, kv, kv))
    with pytest.raises(ValueError, match=r"num_heads=3 must divide the embedding size E=4"):
        fn.init_params(fn.self_attention(3), np.random.default_rng(0), (3, 4))
    with pytest.raises(ValueError, match=name + r": attn_mask must have shape \(S, T\) = \(3, 5\).*got \(3, 3\)"):
        layer(p, (q, kv, kv, fn.causal_mask(3)))
    with pytest.raises(TypeError, match=name + r": attn_mask must be a boolean \(S, T\) array.*got dtype float64"):
        layer(p, (q, kv, kv, np.ones((3, 5))))
    with pytest.raises(TypeError, match=name + r": attn_mask must be a boolean"):
        layer(p, (q, kv, kv, np.full((3, 5), 2)))
    with pytest.raises(
        ValueError, match=name + r": key and value must both be \(N, T, E\).*key \(2, 5, 4\).*\(2, 4, 4\)"
    ):
        layer(p, (q, kv, kv[:, :4]))
    mask = np.ones((3, 5), bool)
    mask[1] = False
    with pytest.raises(ValueError, match=name + r": attn_mask row 1 masks every key"):
        layer(p, (q, kv, kv, mask))
    with pytest.raises(TypeError, match=name + r": x must be a tuple \(query, key, value\)"):
        layer(p, q)
    with pytest.raises(TypeError, match=name + r": arrays must share one dtype"):
        layer(p, (q.astype(np.float32), kv, kv))
    with pytest.raises(TypeError, match=name + r": params must be a dict with keys.*missing \['proj'\]"):
        layer({k: p[k] for k in KEYS[:3]}, (q, kv, kv))
    with pytest.raises(ValueError, match=name + r": params\['query'\] must be \{'w': \(4, 4\)"):
        layer({**p, "query": {"w": np.ones((4, 3)), "b": np.ones(3)}}, (q, kv, kv))
    with pytest.raises(ValueError, match=name + r": query must be 3-D"):
        layer(p, (q[0], kv, kv))
    with pytest.raises(ValueError, match=r"multi_head_attention\(num_heads=2\) vjp: dy must have the output's shape"):
        layer(p, (q, kv, kv))[1](np.ones((2, 3)))
    with pytest.raises(ValueError, match=r"dropout must be in \[0, 1\)"):
        fn.multi_head_attention(2, dropout=1.0)
    with pytest.raises(TypeError, match=r"num_heads must be an int"):
        fn.multi_head_attention(2.0)


def test_transformer_errors_name_the_layer():
    rng = np.random.default_rng(18)
    enc = fn.transformer_encoder_layer(2, 8)
    _, p = fn.init_params(enc, rng, (3, 4), np.float64)
    x = rng.standard_normal((2, 3, 4))
    with pytest.raises(ValueError, match=r"^transformer_encoder_layer\(2, 8\): num_heads=2 must divide.*E=5"):
        enc(p, rng.standard_normal((2, 3, 5)))
    with pytest.raises(TypeError, match=r"^transformer_encoder_layer\(2, 8\): params must be a dict.*missing"):
        enc({k: v for k, v in p.items() if k != "norm2"}, x)
    with pytest.raises(
        ValueError, match=r"^transformer_encoder_layer\(2, 8\): params\['ffn2'\]\['w'\] must be \(F, E\)"
    ):
        enc({**p, "ffn2": {"w": np.ones((8, 3)), "b": np.ones(3)}}, x)
    with pytest.raises(
        ValueError, match=r"^transformer_encoder_layer\(2, 8\): params\['ffn1'\]\['b'\] must have shape \(8,\)"
    ):
        enc({**p, "ffn1": {"w": p["ffn1"]["w"], "b": np.ones(1)}}, x)
    with pytest.raises(ValueError, match=r"^transformer_encoder_layer\(2, 8\): attn_mask must have shape"):
        enc(p, (x, fn.causal_mask(4)))
    dec = fn.transformer_decoder_layer(2, 8)
    _, p = fn.init_params(dec, rng, ((3, 4), (5, 4)), np.float64)
    with pytest.raises(ValueError, match=r"^transformer_decoder_layer\(2, 8\): memory must be \(N, S, E\)"):
        dec(p, (x, rng.standard_normal((1, 5, 4))))
    with pytest.raises(TypeError, match=r"^transformer_decoder_layer\(2, 8\): x must be a tuple \(tgt, memory\)"):
        dec(p, x)
    with pytest.raises(ValueError, match=r"^positional_encoding\(max_len=2\): x has S=3 positions"):
        fn.positional_encoding(max_len=2)((), x)
    with pytest.raises(
        ValueError, match=r"^temporal_layer_norm\(eps=1e-05\): params\['gamma'\] must have shape \(4,\)"
    ):
        fn.temporal_layer_norm()({"gamma": np.ones(3), "beta": np.ones(4)}, x)
    with pytest.raises(ValueError, match=r"^causal_mask: T must be >= 1"):
        fn.causal_mask(0)
