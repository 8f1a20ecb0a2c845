"""fn.measure_memory: what each layer's vjp keeps and the step's peak, measured by running the step; the
per-layer bytes agree with fn.summary's shape rules, and a float32 step keeps no float64 copy."""

import numpy as np
import pytest

import funcnn as fn
from funcnn.training._memory_report import closure_arrays
from funcnn.tree import tree_leaves


def course(batch_norm=False, dropout=0.0):
    return fn.nets.three_layer_convnet(4, 3, 6, batch_norm=batch_norm, dropout=dropout)


def measured(net, dtype=np.float32, batch=5):
    rng = np.random.default_rng(0)
    _, params = fn.init_params(net, rng, (3, 8, 8), dtype)
    state = fn.init_state(net, (3, 8, 8), dtype) if net.moded else ()
    x = rng.standard_normal((batch, 3, 8, 8)).astype(dtype)
    return fn.measure_memory(net, params, x, rng.integers(0, 10, batch), state, rng=rng), params, x


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("options", [{}, {"batch_norm": True, "dropout": 0.5}])
def test_each_layers_bytes_are_what_summary_says(dtype, options):
    net = course(**options)
    report, _, _ = measured(net, dtype)
    table = fn.summary(net, (3, 8, 8), dtype, batch_size=5)
    assert [row.kept for row in report.rows] == [row.memory for row in table.rows]
    assert [row.depth for row in report.rows] == [row.depth for row in table.rows]


def test_the_input_column_counts_what_a_layer_keeps_of_its_input():
    report, _, x = measured(course())
    conv = report.rows[2]
    assert conv.op == "conv" and conv.input == conv.kept == x.nbytes  # conv keeps x for dw, nothing else
    relu = report.rows[3]
    # a bit an element of the pooled output: the chain runs ReLU after the max-pool behind it
    assert relu.op == "relu" and relu.input == 0 and relu.kept == -(-5 * 4 * 4 * 4 // 8)


def test_the_peak_holds_at_least_what_the_vjps_keep():
    report, params, _ = measured(course())
    grads = sum(leaf.nbytes for leaf in tree_leaves(params))
    # the step holds every kept array at the end of the forward pass, then makes gradients of the params' size
    assert report.peak >= report.rows[0].kept
    assert report.peak >= grads
    assert "measured" in str(report) and f"{report.peak:,}" in str(report)


@pytest.mark.parametrize("layer", [fn.relu, fn.tanh, fn.sigmoid, fn.max_pool(), fn.conv(pad=1), fn.dense(6)])
def test_a_float32_closure_keeps_no_float64_array(layer):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, 8, 8)).astype(np.float32)
    params = {"w": rng.standard_normal((4, 3, 3, 3)).astype(np.float32), "b": np.zeros(4, np.float32)}
    if layer.op == "affine":
        _, params = fn.init_params(layer, rng, (3, 8, 8), np.float32)
    _, vjp = layer(params if layer.param_keys else (), x)
    kinds = {(a.dtype.kind, a.dtype.itemsize) for a in closure_arrays(vjp, params)}
    assert kinds <= {("f", 4), ("u", 1)}, kinds


def test_the_summary_command_measures(capsys):
    from funcnn.app.cli import main

    assert main(["summary", "--dataset", "digits", "--batch-size", "4", "--measure"]) == 0
    out = capsys.readouterr().out
    assert "measured on a random batch of 4" in out and "a training step's peak" in out
