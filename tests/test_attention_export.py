"""ONNX export of the single-input attention layers, run in ONNX Runtime against funcnn's evaluation-mode
outputs, and the refusal of the tuple-input ones."""

import numpy as np
import pytest
from bounds import gamma

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


@pytest.mark.parametrize("net", NETS, ids=lambda net: net.name)
def test_onnx_runtime_agrees_with_funcnn(tmp_path, net):
    rng = np.random.default_rng(0)
    _, params = fn.init_params(net, rng, SHAPE)
    path = to_onnx(net, params, SHAPE, tmp_path / "net.onnx")
    onnx.checker.check_model(onnx.load(str(path)), full_check=True)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for n in (3, 1):  # the batch axis is dynamic
        x = rng.standard_normal((n, *SHAPE)).astype(np.float32)
        (got,) = session.run(["y"], {"x": x})
        want, _, _ = fn.run(net, params, x, train=False)
        assert got.shape == want.shape and got.dtype == np.float32
        # both in float32, in other summation orders: each of the <= 6 stages of products (projections,
        # scores, weighted sum, feed-forward) and norms within gamma(16 + 1) of its terms, whose sums stay
        # within 10x of the unit-scale outputs (the norms rescale them)
        assert np.abs(got - want).max() <= 6 * 10 * gamma(17, np.float32) * (1 + np.abs(want).max())


@pytest.mark.parametrize(
    ("net", "shape"),
    [
        (fn.multi_head_attention(2), ((5, 8), (5, 8), (5, 8))),
        (fn.transformer_decoder_layer(2, 16), ((5, 8), (3, 8))),
    ],
    ids=lambda v: getattr(v, "name", ""),
)
def test_tuple_input_layers_are_refused_by_name(tmp_path, net, shape):
    _, params = fn.init_params(net, np.random.default_rng(0), shape)
    with pytest.raises((ValueError, TypeError), match="to_onnx"):
        to_onnx(net, params, shape, tmp_path / "net.onnx")
    assert not (tmp_path / "net.onnx").exists()
