"""One example of every public layer of funcnn (every ``fn`` name that is a :class:`funcnn.Layer` or makes one),
with one example's input shape (no batch axis). ``tests/test_examples.py`` checks that it covers them all, so a
new layer is added here once and every test that walks the list (its op's cost rule and exporter, its shape
rule) sees it."""

import numpy as np

import funcnn as fn


def double(params, x):
    return 2 * x, lambda dy: ((), 2 * dy)


def passing(params, x, state, train, rng):
    return x, lambda dy: ((), dy), state


CELL = fn.rnn_cell(4)  # a scan's cell: carry (H,), x_t (D,)
EXAMPLES = {
    # layers
    "relu": (fn.relu, (3, 4)),
    "tanh": (fn.tanh, (7,)),
    "sigmoid": (fn.sigmoid, (7,)),
    "leaky_relu": (fn.leaky_relu(0.1), (3, 4)),
    "affine": (fn.affine, (3, 4)),
    "dense": (fn.dense(5), (3, 4)),
    "conv": (fn.conv(stride=2, pad=1, filters=4, kernel_size=3), (3, 7, 7)),
    "conv_naive": (fn.conv_naive(stride=1, pad=2, filters=2, kernel_size=(3, 2)), (3, 5, 6)),
    "max_pool": (fn.max_pool(3, 2, 1), (2, 5, 5)),
    "max_pool_naive": (fn.max_pool_naive(2, 2, 2), (2, 5, 5)),
    "avg_pool": (fn.avg_pool(2, 3, 2), (2, 5, 6)),
    "global_avg_pool": (fn.global_avg_pool, (3, 4, 5)),
    "batch_norm": (fn.batch_norm(), (5,)),
    "spatial_batch_norm": (fn.spatial_batch_norm(), (3, 4, 4)),
    "layer_norm": (fn.layer_norm(), (3, 4, 2)),
    "group_norm": (fn.group_norm(3), (6, 2, 2)),
    "dropout": (fn.dropout(0.3), (3, 4)),
    "embedding": (fn.embedding(10, 3), (5,)),
    "word_embedding": (fn.word_embedding, (5,)),
    "temporal_affine": (fn.temporal_affine, (5, 3)),
    "temporal_dense": (fn.temporal_dense(4), (5, 3)),
    "rnn": (fn.rnn, ((5, 3), (4,))),
    "lstm": (fn.lstm, ((5, 3), (4,))),
    "gru": (fn.gru, ((5, 3), (4,))),
    "rnn_step": (fn.rnn_step, ((3,), (4,))),
    "lstm_step": (fn.lstm_step, ((3,), (4,), (4,))),
    "gru_step": (fn.gru_step, ((3,), (4,))),
    "rnn_cell": (fn.rnn_cell(4), ((3,), (4,))),
    "lstm_cell": (fn.lstm_cell(4), ((3,), (4,), (4,))),
    "gru_cell": (fn.gru_cell(4), ((3,), (4,))),
    "rnn_layer": (fn.rnn_layer(4), ((5, 3), (4,))),
    "lstm_layer": (fn.lstm_layer(4), ((5, 3), (4,))),
    "gru_layer": (fn.gru_layer(4), ((5, 3), (4,))),
    "multi_head_attention": (fn.multi_head_attention(2, dropout=0.1), ((3, 4), (5, 4), (5, 4))),
    "self_attention": (fn.self_attention(2, causal=True), (3, 4)),
    "positional_encoding": (fn.positional_encoding(10, dropout=0.1), (3, 4)),
    "temporal_layer_norm": (fn.temporal_layer_norm(), (3, 4)),
    "transformer_encoder_layer": (fn.transformer_encoder_layer(2, 8, causal=True), (3, 4)),
    "transformer_decoder_layer": (fn.transformer_decoder_layer(2, 8, dropout=0.1), ((3, 4), (5, 4))),
    "scan": (fn.scan(fn.layer(lambda p, x: CELL(p, x[::-1]), "cell", ("wx", "wh", "b"))), ((4,), (5, 3))),
    # combinators and sandwiches
    "identity": (fn.identity, (3, 4)),
    "chain": (fn.chain(fn.dense(6), fn.identity, fn.relu, fn.dropout(0.5), fn.dense(3)), (2, 4)),
    "sandwich": (fn.sandwich(fn.dense(4), fn.batch_norm(), fn.relu, fn.dropout(0.2)), (3,)),
    "fan_out": (fn.fan_out(fn.relu, fn.identity, fn.tanh), (2, 4)),
    "residual": (fn.residual(fn.sandwich(fn.conv(1, 1, filters=2, kernel_size=3), fn.relu)), (2, 4, 4)),
    "remat": (fn.remat(fn.chain(fn.dense(4), fn.relu)), (3,)),
    "remat_chain": (fn.remat_chain(fn.dense(4), fn.relu, fn.dense(2), every=2), (3,)),
    "affine_relu": (fn.affine_relu, (3, 4)),
    "dense_relu": (fn.dense_relu(5), (3, 4)),
    "conv_relu": (fn.conv_relu(stride=1, pad=1, filters=2, kernel_size=3), (2, 4, 4)),
    "conv_relu_pool": (fn.conv_relu_pool({"stride": 1, "pad": 1, "filters": 2, "kernel_size": 3}), (2, 4, 4)),
    # core and losses
    "layer": (fn.layer(double, out_shape=lambda shape: shape), (3,)),
    "moded_layer": (
        fn.moded_layer(lambda p, x, s, train, rng: (x, lambda dy: ((), dy), s), "noise", out_shape=lambda shape: shape),
        (3,),
    ),
    "bind": (fn.bind(fn.dropout(0.5), train=True, rng=np.random.default_rng(0)), (3, 4)),
    "loss_layer": (fn.loss_layer(fn.softmax_loss, np.array([1, 0])), (3,)),
    # networks
    "nets.two_layer_net": (fn.nets.two_layer_net(8, 3), (1, 4, 4)),
    "nets.fc_net": (fn.nets.fc_net((4, 3), 2, batch_norm=True, dropout=0.1), (5,)),
    "nets.three_layer_convnet": (fn.nets.three_layer_convnet(2, 3, 4, 3, batch_norm=True), (1, 6, 6)),
    "nets.char_rnn": (fn.nets.char_rnn(6, 4, 3), (5,)),
    "nets.char_transformer": (fn.nets.char_transformer(6, 4, 2, 1), (5,)),
    "nets.captioning_rnn": (fn.nets.captioning_rnn({"<NULL>": 0, "<START>": 1, "<END>": 2}, 4, 3, 4).net, (4,)),
}

# The examples whose input is token indices (below this vocabulary size), not floats.
TOKENS = {"embedding": 10, "nets.char_rnn": 6, "nets.char_transformer": 6}


def example_input(name, shape, rng, batch=2, dtype=np.float64):
    """A batch of ``batch`` inputs of ``shape`` for ``EXAMPLES[name]``: floats, or token indices, or a tuple."""
    if name in TOKENS:
        return rng.integers(0, TOKENS[name], (batch, *shape))
    if shape and isinstance(shape[0], tuple):
        return tuple(example_input(name, part, rng, batch, dtype) for part in shape)
    return rng.standard_normal((batch, *shape)).astype(dtype)
