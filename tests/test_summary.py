"""fn.summary: shapes, parameter counts, FLOPs and the memory the vjps keep, checked against
init_params, hand-computed counts, and the arrays the vjp closures really hold."""

import dataclasses
import math
import re
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given

import funcnn as fn
from funcnn.testing import networks
from funcnn.training._memory_report import closure_arrays, closure_bytes
from funcnn.tree import tree_leaves

SUMMARY_PAGE = Path(__file__).resolve().parents[1] / "docs" / "summary.md"


def kept_bytes(vjp, exclude):
    """Bytes of the distinct arrays reachable from ``vjp``'s closures (views count as their base),
    leaving out the arrays in ``exclude`` (the params)."""
    return closure_bytes(vjp, list(exclude))


def kept_arrays(vjp, exclude):
    """The distinct base arrays reachable from ``vjp``'s closures, but those in ``exclude``."""
    return closure_arrays(vjp, list(exclude))


def measured_memory(net, shape, dtype, batch=2, seed=0):
    rng = np.random.default_rng(seed)
    _, params = fn.init_params(net, rng, shape, dtype)
    x = rng.standard_normal((batch, *shape)).astype(dtype)
    _, vjp, _ = fn.run(net, params, x, fn.init_state(net, shape, dtype), train=True, rng=rng)
    return kept_bytes(vjp, tree_leaves(params))


LAYERS = [
    ("conv", fn.conv(stride=2, pad=1, filters=4, kernel_size=3), (3, 7, 7)),
    ("conv (Winograd)", fn.conv(stride=1, pad=1, filters=16, kernel_size=3), (16, 6, 6)),
    ("conv_naive", fn.conv_naive(stride=1, pad=2, filters=2, kernel_size=(3, 2)), (3, 5, 6)),
    ("affine", fn.dense(5), (3, 4)),
    ("relu", fn.relu, (3, 4)),
    ("leaky_relu", fn.leaky_relu(0.1), (3, 4)),
    ("tanh", fn.tanh, (7,)),
    ("sigmoid", fn.sigmoid, (7,)),
    ("max_pool", fn.max_pool(3, 2, 1), (2, 5, 5)),
    ("max_pool_naive", fn.max_pool_naive(2, 2, 2), (2, 5, 5)),
    ("avg_pool", fn.avg_pool(2, 3, 2), (2, 5, 6)),
    ("global_avg_pool", fn.global_avg_pool, (3, 4, 5)),
    ("batch_norm", fn.batch_norm(), (5,)),
    ("spatial_batch_norm", fn.spatial_batch_norm(), (3, 4, 4)),
    ("layer_norm", fn.layer_norm(), (3, 4, 2)),
    ("group_norm", fn.group_norm(3), (6, 2, 2)),
    ("dropout", fn.dropout(0.3), (3, 4)),
    ("identity", fn.identity, (3, 4)),
    ("residual", fn.residual(fn.sandwich(fn.conv(1, 1, filters=2, kernel_size=3), fn.relu)), (2, 4, 4)),
    ("fan_out", fn.fan_out(fn.relu, fn.identity, fn.tanh), (2, 4)),
    ("chain", fn.chain(fn.dense(6), fn.identity, fn.relu, fn.dropout(0.5), fn.dense(3)), (2, 4)),
    ("course convnet with batch norm", fn.nets.three_layer_convnet(4, 3, 6, batch_norm=True, dropout=0.5), (3, 8, 8)),
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(("title", "net", "shape"), LAYERS, ids=[title for title, _, _ in LAYERS])
def test_memory_is_what_the_vjp_keeps(title, net, shape, dtype):
    table = fn.summary(net, shape, dtype, batch_size=2)
    assert table.total.memory == measured_memory(net, shape, dtype)


@pytest.mark.parametrize(("title", "net", "shape"), LAYERS, ids=[title for title, _, _ in LAYERS])
def test_no_vjp_keeps_a_float64_copy_of_float32(title, net, shape):
    rng = np.random.default_rng(0)
    _, params = fn.init_params(net, rng, shape, np.float32)
    x = rng.standard_normal((2, *shape)).astype(np.float32)
    _, vjp, _ = fn.run(net, params, x, fn.init_state(net, shape, np.float32), train=True, rng=rng)
    kinds = {(a.dtype.kind, a.dtype.itemsize) for a in kept_arrays(vjp, tree_leaves(params))}
    assert ("f", 8) not in kinds, title


@given(networks())
def test_networks_shapes_params_and_memory(problem):
    body, params = problem.net.children[0], problem.params[0]
    x = problem.x
    table = fn.summary(body, x.shape[1:], np.float64, batch_size=len(x))
    y, vjp = body(params, x)
    assert table.total.output_shape == y.shape
    _, fresh = fn.init_params(body, np.random.default_rng(0), x.shape[1:], np.float64)
    assert table.total.params == sum(leaf.size for leaf in tree_leaves(fresh))
    top_level = [row for row in table.rows if row.depth == 1]
    assert [row.params for row in top_level] == [sum(leaf.size for leaf in tree_leaves(p)) for p in fresh]
    assert table.total.memory == kept_bytes(vjp, tree_leaves(params))


def test_conv_and_affine_flops_are_the_hand_computed_counts():
    conv = fn.summary(fn.conv(stride=2, pad=1, filters=4, kernel_size=3), (3, 8, 8), batch_size=2).total
    # N=2, F=4, H'=W'=(8 + 2 - 3) // 2 + 1 = 4, C=3, HH=WW=3
    assert conv.output_shape == (2, 4, 4, 4)
    assert conv.forward_flops == 2 * 2 * 4 * 4 * 4 * 3 * 3 * 3 == 6912
    assert conv.backward_flops == 2 * 6912  # dx and dw
    assert conv.params == 4 * 3 * 3 * 3 + 4
    affine = fn.summary(fn.dense(5), (3, 4), batch_size=3).total
    assert (affine.forward_flops, affine.backward_flops, affine.params) == (2 * 3 * 12 * 5, 4 * 3 * 12 * 5, 12 * 5 + 5)


def test_the_course_convnet():
    table = fn.summary(fn.nets.three_layer_convnet(), (3, 32, 32))
    conv, relu, pool = table.rows[2:5]
    assert conv.params == 32 * 3 * 7 * 7 + 32 and conv.forward_flops == 2 * 32 * 32 * 32 * 3 * 7 * 7
    assert (relu.output_shape, pool.output_shape) == ((1, 32, 32, 32), (1, 32, 16, 16))
    assert table.total.params == 4736 + (32 * 16 * 16 + 1) * 100 + 101 * 10
    assert [row.depth for row in table.rows] == [0, 1, 2, 2, 2, 1, 2, 2, 1]


def test_the_guide_shows_the_course_convnets_summary():
    text = SUMMARY_PAGE.read_text()
    call = re.escape("print(fn.summary(fn.nets.three_layer_convnet(), (3, 32, 32)))")
    shown = re.search(call + r"\n```\n\n.*?```text\n(.*?)```", text, re.DOTALL)
    assert shown, "docs/summary.md: the course convnet's summary is missing"
    assert shown.group(1).rstrip("\n") == str(fn.summary(fn.nets.three_layer_convnet(), (3, 32, 32)))


def test_a_users_layer_shows_question_marks_or_a_clear_error():
    def double(params, x):
        return 2 * x, lambda dy: ((), 2 * dy)

    table = fn.summary(fn.chain(fn.layer(double, out_shape=lambda s: s), fn.relu), (3,))
    assert table.rows[1].name == "double" and table.rows[1].forward_flops is None and table.rows[1].params == 0
    assert table.total.forward_flops is None and "?: a user's layer" in str(table)
    with pytest.raises((TypeError, ValueError), match=r"double does not say its output shape"):
        fn.summary(fn.chain(double, fn.relu), (3,))
    with pytest.raises(dataclasses.FrozenInstanceError):
        table.total.params = 1


def test_bad_options_are_refused():
    with pytest.raises(ValueError, match="summary: batch_size"):
        fn.summary(fn.relu, (3,), batch_size=0)
    with pytest.raises(ValueError, match="summary: dtype must be a float type"):
        fn.summary(fn.relu, (3,), np.int32)
    assert math.prod(fn.summary(fn.relu, (3, 2), np.float64).input_shape) == 6


@pytest.mark.parametrize("shape", [(1, 8.9, 8), "1,8,8", (1, -8, 8), (1, 0, 8), (8.0,), 8])
def test_a_bad_input_shape_is_named(shape):
    with pytest.raises((TypeError, ValueError), match=r"summary: input_shape must be a tuple of whole numbers >= 1"):
        fn.summary(fn.relu, shape)
