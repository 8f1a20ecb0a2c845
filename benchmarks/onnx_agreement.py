"""How closely ONNX Runtime reproduces funcnn's evaluation-mode outputs after ``funcnn.export.to_onnx``.

    pip install -e ".[onnx]"
    python benchmarks/onnx_agreement.py

Prints, per network (float32, random inputs: a batch of 500 for the convnets, 64 for the attention layers
and nets), ``max|ort - funcnn|`` and ``max|ort - funcnn| / max|funcnn|``.
"""

import tempfile
from pathlib import Path

import numpy as np
import onnxruntime as ort

import funcnn as fn
import funcnn.export


def normal(*shape):
    return lambda rng, n: rng.standard_normal((n, *shape)).astype(np.float32)


def some_mask(s, t):
    """A boolean (S, T) mask, every query seeing at least one key."""

    def make(rng, n):
        mask = rng.random((s, t)) < 0.5
        mask[:, 0] = True
        return mask

    return make


def tokens(vocab, t):
    return lambda rng, n: rng.integers(0, vocab, (n, t))


WORDS = {"<NULL>": 0, "<START>": 1, "<END>": 2, **{f"w{i}": i + 3 for i in range(97)}}
CAPTIONING = fn.nets.captioning_transformer(WORDS, input_dim=512, wordvec_dim=64, num_heads=4, dim_feedforward=256)
# name: (net, one example's shape)
NETS = {
    "digits convnet": (fn.nets.three_layer_convnet(num_filters=32, filter_size=3, hidden_dim=100), (1, 8, 8)),
    "fc + batch norm + dropout": (fn.nets.fc_net((64, 32), batch_norm=True, dropout=0.3), (64,)),
    "residual": (
        fn.chain(
            fn.conv(1, 1, filters=4, kernel_size=3),
            fn.residual(fn.sandwich(fn.conv(1, 1, filters=4, kernel_size=3), fn.relu)),
            fn.global_avg_pool,
            fn.dense(10),
        ),
        (3, 8, 8),
    ),
}
# name: (net, one example's shape, a maker of each input entry, the params' maker or None for fn.init_params)
SEQUENCE_NETS = {
    "multi-head attention + mask": (
        fn.multi_head_attention(4), ((16, 64), (12, 64), (12, 64), (16, 12)),
        (normal(16, 64), normal(12, 64), normal(12, 64), some_mask(16, 12)), None,
    ),
    "decoder layer, causal mask": (
        fn.transformer_decoder_layer(4, 256), ((16, 64), (12, 64), (16, 16)),
        (normal(16, 64), normal(12, 64), lambda rng, n: fn.causal_mask(16)), None,
    ),
    "encoder layer, pre-norm": (
        fn.transformer_encoder_layer(4, 256, norm_first=True, causal=True), (16, 64), (normal(16, 64),), None
    ),
    "char_transformer": (fn.nets.char_transformer(65, 64, 4, 2), (32,), (tokens(65, 32),), None),
    "captioning_transformer": (
        CAPTIONING.net, ((512,), (16,)), (normal(512), tokens(100, 16)), CAPTIONING.init_params,
    ),
}  # fmt: skip


def agreement(net, params, shape, inputs, state=None):
    """``(max|ort - funcnn|, max|funcnn|)`` for ``inputs``, a tuple fed to the graph's inputs in order."""
    entries = inputs if isinstance(inputs, tuple) else (inputs,)
    y, _, _ = fn.run(net, params, inputs, state if state is not None else fn.init_state(net, shape), train=False)
    path = Path(tempfile.mkdtemp()) / "net.onnx"
    funcnn.export.to_onnx(net, params, shape, path, state)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    out = session.run(None, {i.name: a for i, a in zip(session.get_inputs(), entries)})[0]
    return float(np.abs(out - y).max()), float(np.abs(y).max())


def main() -> None:
    rng = np.random.default_rng(0)
    rows = []
    for name, (net, shape) in NETS.items():
        _, params = fn.init_params(net, rng, shape, np.float32)
        state = fn.init_state(net, shape, np.float32)
        x = rng.standard_normal((500, *shape)).astype(np.float32)
        if net.moded:  # running statistics moved away from their initial values
            _, _, state = net.run(params, x, state, train=True, rng=np.random.default_rng(1))
        rows.append((name, *agreement(net, params, shape, x, state if net.moded else None)))
    for name, (net, shape, makers, init) in SEQUENCE_NETS.items():
        params = init(rng) if init else fn.init_params(net, rng, shape, np.float32)[1]
        inputs = tuple(make(rng, 64) for make in makers)
        rows.append((name, *agreement(net, params, shape, inputs if len(inputs) > 1 else inputs[0])))
    for name, error, largest in rows:
        print(f"{name:<30} max|ort - funcnn| = {error:.2e}   / max|funcnn| = {error / largest:.2e}")


if __name__ == "__main__":
    main()
