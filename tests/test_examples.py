"""The one list of example layers (tests/examples.py) covers every public layer, and every op in it has a
rule in each op-keyed analysis: a cost rule for ``summary``, an ONNX exporter (or a listed reason not to)."""

import inspect

import numpy as np
import pytest
from examples import EXAMPLES, example_input

import funcnn as fn
import funcnn.export
from funcnn.analysis import COST_RULES
from funcnn.core import Layer

# The combinations summary walks through (their cost is their children's), the leaves by their rules.
SUMMED = {"chain", "sandwich", "fan_out", "residual", "bind", "remat"}


def makes_a_layer(value):
    if isinstance(value, Layer):
        return True
    if not inspect.isfunction(value):
        return False
    return inspect.signature(value).return_annotation in ("Layer", Layer)


def public_layers():
    """Every ``fn`` (and ``fn.nets``) name that is a Layer or returns one."""
    names = {name for name in dir(fn) if not name.startswith("_") and makes_a_layer(getattr(fn, name))}
    nets = {
        f"nets.{name}" for name in dir(fn.nets) if not name.startswith("_") and makes_a_layer(getattr(fn.nets, name))
    }
    return names | nets | {"nets.captioning_rnn"}  # its model holds the layer (model.net)


def ops(layer):
    """The ops of ``layer`` and of every layer inside it."""
    return {layer.op}.union(*(ops(child) for child in layer.children))


def test_the_examples_cover_every_public_layer():
    assert set(EXAMPLES) == public_layers()


def test_every_example_is_a_layer_of_its_name():
    for name, (layer, _) in EXAMPLES.items():
        assert isinstance(layer, Layer), name


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_every_op_has_a_cost_rule(name):
    missing = sorted(ops(EXAMPLES[name][0]) - COST_RULES.ops - SUMMED)
    assert not missing, f"{name}: ops {missing} have no cost rule in funcnn.analysis.COST_RULES"


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_every_op_has_an_exporter_or_is_listed_as_not_exportable(name):
    found = ops(EXAMPLES[name][0])
    missing = sorted(found - funcnn.export.EXPORTERS.ops - set(funcnn.export.NOT_EXPORTABLE))
    assert not missing, f"{name}: ops {missing} are neither in funcnn.export.EXPORTERS nor in NOT_EXPORTABLE"


def test_no_op_is_both_exported_and_listed_as_not_exportable():
    assert not funcnn.export.EXPORTERS.ops & set(funcnn.export.NOT_EXPORTABLE)


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_summary_counts_the_params_the_layers_init_makes(name):
    layer, shape = EXAMPLES[name]
    try:
        _, params = fn.init_params(layer, np.random.default_rng(0), shape, np.float64)
    except TypeError:  # a course-style layer without its sizes, a user's function without init: no count
        try:
            counted = fn.summary(layer, shape).total.params
        except (TypeError, ValueError):  # its output shape is unknown too: no summary
            return
        assert counted is None
        return
    expected = sum(np.size(leaf) for leaf in fn.tree.tree_leaves(params))
    assert fn.summary(layer, shape, np.float64).total.params == expected


def test_a_layer_of_an_op_without_rules_is_named_with_the_registry_to_fill():
    new = Layer(fn.relu.apply, "mystery", param_keys=(), out_shape=lambda shape: shape, op="mystery")
    with pytest.raises(LookupError, match=r"mystery \(op 'mystery'\) has no cost rule: add one with @funcnn"):
        fn.summary(new, (3,))
    with pytest.raises(LookupError, match=r"has no ONNX exporter: add one with @funcnn.export.exporter"):
        funcnn.export.EXPORTERS.of(new)


def test_an_op_gets_one_rule():
    with pytest.raises(ValueError, match="op 'relu' already has a cost rule"):
        fn.analysis.cost_rule("relu")(lambda *args: None)


@pytest.mark.parametrize(
    "name", sorted(name for name in EXAMPLES if name not in ("layer", "moded_layer", "nets.captioning_rnn"))
)
def test_a_layer_made_by_a_factory_shows_the_factorys_docstring(name):
    """Every factory is a ``@layer_factory``; ``fn.layer`` and ``fn.moded_layer`` show the user's function's."""
    made, factory = EXAMPLES[name][0], getattr(fn.nets, name[5:]) if name.startswith("nets.") else getattr(fn, name)
    if not isinstance(factory, Layer):
        assert made.__doc__ == factory.__doc__, name


def shape_of(y):
    return np.shape(y) if isinstance(y, np.ndarray) else tuple(shape_of(part) for part in y)


def with_batch(shape, n):
    """A rule's per-example output shape with the batch axis (a loss's ``()`` has none)."""
    if shape and isinstance(shape[0], tuple):
        return tuple(with_batch(part, n) for part in shape)
    return (n, *shape) if shape else ()


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_every_example_gives_the_output_shape_its_rule_says(name):
    """Params and state from the input shape alone, then a run in training mode on a batch of 2."""
    layer, shape = EXAMPLES[name]
    rng = np.random.default_rng(0)
    try:
        out, params = fn.init_params(layer, rng, shape, np.float64)
    except TypeError:  # a course-style layer without its sizes, a user's function: params come from the user
        pytest.skip(f"{name} has no init")
    x = example_input(name, shape, rng)
    y, _, _ = fn.run(layer, params, x, fn.init_state(layer, shape, np.float64), train=True, rng=rng)
    assert shape_of(y) == with_batch(out, 2)
