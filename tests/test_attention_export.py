"""ONNX export of the attention layers, the transformer layers and nets, run in ONNX Runtime against funcnn's
evaluation-mode outputs: single inputs, tuple inputs (one graph input per entry, masks as bool inputs),
token indices as int64; and the refusal of the layers that still have no counterpart."""

import numpy as np
import pytest
from bounds import gamma
from hypothesis import given, settings
from hypothesis import strategies as st

import funcnn as fn
from funcnn.export import to_onnx

onnx = pytest.importorskip("onnx", reason="the onnx extra is not installed")
ort = pytest.importorskip("onnxruntime", reason="the onnx extra is not installed")

SHAPE = (5, 8)  # S, E
NETS = [
    fn.self_attention(2),
    fn.self_attention(4, causal=True),
    fn.temporal_layer_norm(),
    fn.positional_encoding(),
    fn.transformer_encoder_layer(2, 16),
    fn.transformer_encoder_layer(2, 16, norm_first=True, causal=True),
    fn.transformer_encoder_layer(2, 16, dropout=0.1),  # exported in evaluation mode: no dropout
    fn.chain(fn.positional_encoding(), fn.transformer_encoder_layer(2, 16, causal=True), fn.temporal_layer_norm()),
]


def bound(stages, terms, want):
    """How far two float32 evaluations in other summation orders may be apart: each of ``stages`` stages
    (a product, a softmax, a norm) rounds within gamma(terms + 1) of its terms' absolute sum, at most
    ``terms`` terms (E, T, Dh or the feed-forward width); with unit-scale inputs and 1/sqrt(fan-in) weights
    those sums stay within 10x of the unit-scale outputs (softmax weights sum to 1, norms rescale)."""
    return stages * 10 * gamma(terms + 1, np.float32) * (1 + np.abs(want).max())


def exported(tmp_path, net, params, shape):
    """The model written by ``to_onnx``, checked by onnx.checker, as an ONNX Runtime session."""
    path = to_onnx(net, params, shape, tmp_path / "net.onnx", overwrite=True)
    onnx.checker.check_model(onnx.load(str(path)), full_check=True)
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def ort_and_funcnn(session, net, params, x):
    """(ONNX Runtime's output, funcnn's evaluation-mode output) for ``x``, a tuple fed to the graph's inputs
    in order."""
    entries = x if isinstance(x, tuple) else (x,)
    (got,) = session.run(["y"], {i.name: a for i, a in zip(session.get_inputs(), entries)})
    want, _, _ = fn.run(net, params, x, train=False)
    assert got.shape == want.shape and got.dtype == np.float32
    return got, want


def normal(rng, *shape):
    return rng.standard_normal(shape).astype(np.float32)


def random_mask(rng, s, t):
    """A boolean (S, T) mask in which every query sees at least one key."""
    mask = rng.random((s, t)) < 0.5
    mask[np.arange(s), rng.integers(0, t, s)] = True
    return mask


@pytest.mark.parametrize("net", NETS, ids=lambda net: net.name)
def test_onnx_runtime_agrees_with_funcnn(tmp_path, net):
    rng = np.random.default_rng(0)
    _, params = fn.init_params(net, rng, SHAPE)
    session = exported(tmp_path, net, params, SHAPE)
    for n in (3, 1):  # the batch axis is dynamic
        got, want = ort_and_funcnn(session, net, params, normal(rng, n, *SHAPE))
        # <= 6 stages of products (projections, scores, weighted sum, feed-forward) and norms, <= 16 terms each
        assert np.abs(got - want).max() <= bound(6, 16, want)


@settings(max_examples=15, deadline=None)
@given(
    n=st.integers(1, 3), s=st.integers(1, 6), t=st.integers(1, 6), heads=st.integers(1, 3), dh=st.integers(1, 4),
    masked=st.booleans(), seed=st.integers(0, 2**16),
)  # fmt: skip
def test_multi_head_attention_with_and_without_a_mask(tmp_path_factory, n, s, t, heads, dh, masked, seed):
    rng, e = np.random.default_rng(seed), heads * dh
    net = fn.multi_head_attention(heads)
    shape = ((s, e), (t, e), (t, e), (s, t)) if masked else ((s, e), (t, e), (t, e))
    _, params = fn.init_params(net, rng, shape)
    session = exported(tmp_path_factory.mktemp("mha"), net, params, shape)
    names = ["query", "key", "value", "attn_mask"][: len(shape)]
    assert [i.name for i in session.get_inputs()] == names
    x = (normal(rng, n, s, e), normal(rng, n, t, e), normal(rng, n, t, e))
    got, want = ort_and_funcnn(session, net, params, (*x, random_mask(rng, s, t)) if masked else x)
    # projections (E terms), scores (Dh), softmax and weighted sum (T), output projection (E)
    assert np.abs(got - want).max() <= bound(5, max(e, t), want)


@settings(max_examples=10, deadline=None)
@given(
    t=st.integers(1, 5), s=st.integers(1, 5), heads=st.integers(1, 3), norm_first=st.booleans(),
    masked=st.booleans(), seed=st.integers(0, 2**16),
)  # fmt: skip
def test_decoder_layers_post_and_pre_norm(tmp_path_factory, t, s, heads, norm_first, masked, seed):
    rng, e, ff = np.random.default_rng(seed), 2 * heads, 12
    net = fn.transformer_decoder_layer(heads, ff, dropout=0.2, norm_first=norm_first)  # dropout: identity here
    shape = ((t, e), (s, e), (t, t)) if masked else ((t, e), (s, e))
    _, params = fn.init_params(net, rng, shape)
    session = exported(tmp_path_factory.mktemp("decoder"), net, params, shape)
    assert [i.name for i in session.get_inputs()] == ["tgt", "memory", "tgt_mask"][: len(shape)]
    x = (normal(rng, 2, t, e), normal(rng, 2, s, e))
    got, want = ort_and_funcnn(session, net, params, (*x, fn.causal_mask(t)) if masked else x)
    # two attentions of 5 stages, a feed-forward of 2, three norms; at most ff = 12 terms per stage
    assert np.abs(got - want).max() <= bound(15, ff, want)


def test_input_types_masks_are_bool_without_a_batch_axis(tmp_path):
    net = fn.multi_head_attention(2)
    shape = ((5, 4), (3, 4), (3, 4), (5, 3))
    _, params = fn.init_params(net, np.random.default_rng(0), shape)
    exported(tmp_path, net, params, shape)
    model = onnx.load(str(tmp_path / "net.onnx"))
    types = {i.name: (i.type.tensor_type.elem_type, [d.dim_value or d.dim_param for d in i.type.tensor_type.shape.dim])
             for i in model.graph.input}  # fmt: skip
    f, b = onnx.TensorProto.FLOAT, onnx.TensorProto.BOOL
    assert types == {"query": (f, ["N", 5, 4]), "key": (f, ["N", 3, 4]), "value": (f, ["N", 3, 4]),
                     "attn_mask": (b, [5, 3])}  # fmt: skip


def test_a_row_masking_every_key_averages_the_values_instead_of_nan(tmp_path):
    """funcnn refuses such a mask; the graph cannot, and gives the mean of the projected values."""
    rng = np.random.default_rng(3)
    net, shape = fn.multi_head_attention(2), ((3, 4), (5, 4), (5, 4), (3, 5))
    _, params = fn.init_params(net, rng, shape)
    session = exported(tmp_path, net, params, shape)
    q, kv = normal(rng, 2, 3, 4), normal(rng, 2, 5, 4)
    mask = np.ones((3, 5), bool)
    mask[1] = False
    (got,) = session.run(["y"], {"query": q, "key": kv, "value": kv, "attn_mask": mask})
    p = params
    want = (kv @ p["value"]["w"] + p["value"]["b"]).mean(axis=1) @ p["proj"]["w"] + p["proj"]["b"]
    # the mean of 5 projected values (4 terms each), then the projection (4 terms)
    assert np.abs(got[:, 1] - want).max() <= bound(3, 5, want)


def test_token_indices_are_an_int64_input(tmp_path):
    rng = np.random.default_rng(1)
    net = fn.chain(
        fn.embedding(11, 8), fn.positional_encoding(), fn.transformer_encoder_layer(2, 16, causal=True),
        fn.temporal_dense(11),
    )  # fmt: skip
    _, params = fn.init_params(net, rng, (6,))
    session = exported(tmp_path, net, params, (6,))
    assert [(i.name, i.type) for i in session.get_inputs()] == [("x", "tensor(int64)")]
    got, want = ort_and_funcnn(session, net, params, rng.integers(0, 11, (3, 6)))
    # the encoder's 6 stages, then the scores (8 terms); the embedding and positions are exact or one rounding
    assert np.abs(got - want).max() <= bound(7, 16, want)


def test_course_style_embedding_and_temporal_affine_take_their_sizes_from_the_params(tmp_path):
    rng = np.random.default_rng(2)
    net = fn.chain(fn.word_embedding, fn.temporal_affine)
    params = ({"w": normal(rng, 9, 4)}, {"w": normal(rng, 4, 3), "b": normal(rng, 3)})
    session = exported(tmp_path, net, params, (5,))
    got, want = ort_and_funcnn(session, net, params, rng.integers(0, 9, (2, 5)))
    assert np.abs(got - want).max() <= bound(1, 4, want)  # one product of 4 terms


def test_the_char_transformer(tmp_path):
    rng = np.random.default_rng(4)
    net = fn.nets.char_transformer(vocab_size=13, dim=8, num_heads=2, num_layers=2)
    _, params = fn.init_params(net, rng, (7,))
    session = exported(tmp_path, net, params, (7,))
    got, want = ort_and_funcnn(session, net, params, rng.integers(0, 13, (3, 7)))
    # two encoder layers of 6 stages, the final norm and the scores; the feed-forward has 32 terms
    assert np.abs(got - want).max() <= bound(14, 32, want)


def test_the_captioning_transformer(tmp_path):
    rng = np.random.default_rng(5)
    words = {"<NULL>": 0, "<START>": 1, "<END>": 2, "cat": 3, "dog": 4}
    model = fn.nets.captioning_transformer(words, input_dim=6, wordvec_dim=8, num_heads=2, dim_feedforward=16)
    params = model.init_params(rng)
    params = fn.tree.tree_map(lambda a: a + np.float32(0.1), params)  # biases, betas not 0: all of them used
    session = exported(tmp_path, model.net, params, ((6,), (7,)))
    assert [(i.name, i.type) for i in session.get_inputs()] == [("features", "tensor(float)"),
                                                                  ("captions", "tensor(int64)")]  # fmt: skip
    got, want = ort_and_funcnn(session, model.net, params, (normal(rng, 3, 6), rng.integers(0, 5, (3, 7))))
    # the projection, two decoder layers of 15 stages, the scores; at most 16 terms per stage
    assert np.abs(got - want).max() <= bound(32, 16, want)


@pytest.mark.parametrize(
    ("net", "shape"),
    [
        (fn.nets.char_rnn(7, 8, 4), (5,)),
        (fn.layer(lambda p, x: (x[0] + x[1], lambda dy: ((), (dy, dy))), out_shape=lambda s: s[0]), ((3,), (3,))),
    ],
    ids=["char_rnn", "a user's tuple-input function"],
)
def test_layers_without_a_counterpart_are_refused_by_name(tmp_path, net, shape):
    params = fn.init_params(net, np.random.default_rng(0), shape)[1] if net.init else ()
    with pytest.raises(ValueError, match=rf"to_onnx: .*\(op '{net.op}'\) has no ONNX counterpart"):
        to_onnx(net, params, shape, tmp_path / "net.onnx")
    assert not (tmp_path / "net.onnx").exists()
