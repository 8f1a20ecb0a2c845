import numpy as np
import pytest
from bounds import gamma
from hypothesis import given
from hypothesis import strategies as st

from funcnn.tree import (
    keystr,
    tree_add,
    tree_allclose,
    tree_flatten,
    tree_leaves,
    tree_leaves_with_path,
    tree_map,
    tree_map_with_path,
    tree_scale,
    tree_structure,
    tree_sub,
    tree_unflatten,
    tree_vdot,
    tree_zeros_like,
)

leaves = st.builds(
    lambda shape, seed: np.random.default_rng(seed).standard_normal(shape),
    st.lists(st.integers(0, 3), max_size=2).map(tuple),
    st.integers(0, 1000),
)
trees = st.recursive(
    leaves,
    lambda children: st.one_of(
        st.dictionaries(st.text("abwxyz", min_size=1, max_size=3), children, max_size=3),
        st.lists(children, max_size=3).map(tuple),
        st.lists(children, max_size=3),
    ),
    max_leaves=8,
)


@given(trees)
def test_flatten_unflatten_round_trip(tree):
    leaves_, treedef = tree_flatten(tree)
    rebuilt = tree_unflatten(treedef, leaves_)
    assert tree_structure(rebuilt) == treedef
    assert all(a is b for a, b in zip(tree_leaves(rebuilt), leaves_))
    assert treedef.num_leaves == len(leaves_)


@given(trees)
def test_map_keeps_structure_and_applies_to_every_leaf(tree):
    doubled = tree_map(lambda a: 2 * a, tree)
    assert tree_structure(doubled) == tree_structure(tree)
    for a, b in zip(tree_leaves(doubled), tree_leaves(tree)):
        np.testing.assert_array_equal(a, 2 * b)


@given(trees)
def test_arithmetic_and_vdot(tree):
    zeros = tree_zeros_like(tree)
    assert tree_allclose(tree_add(tree, zeros), tree, rtol=0, atol=0)  # the same operations: exactly equal
    assert tree_allclose(tree_sub(tree, tree), zeros, rtol=0, atol=0)
    assert tree_allclose(tree_scale(tree, 3.0), tree_map(lambda a: 3.0 * a, tree), rtol=0, atol=0)
    expected = sum(float(np.sum(a * a)) for a in tree_leaves(tree))
    # two orders of the same sum of squares: gamma(n) of the sum itself (no cancellation)
    n = sum(np.size(a) for a in tree_leaves(tree))
    assert tree_vdot(tree, tree) == pytest.approx(expected, rel=2 * gamma(n + 1, np.float64), abs=1e-300)
    assert tree_vdot(zeros, tree) == 0.0


@given(trees)
def test_paths_lead_to_their_leaves(tree):
    for path, leaf in tree_leaves_with_path(tree):
        node = tree
        for key in path:
            node = node[key]
        assert node is leaf


def test_dict_keys_are_sorted_and_paths_read_like_python():
    tree = ({"w": np.ones(2), "b": np.zeros(1)}, ())
    assert [keystr(p, "params") for p, _ in tree_leaves_with_path(tree)] == ['params[0]["b"]', 'params[0]["w"]']
    assert tree_leaves(()) == []


def test_map_over_mismatched_trees_prints_both_structures():
    with pytest.raises(ValueError, match=r"(?s)structures differ:.*'w'.*'v'"):
        tree_map(np.add, {"w": np.ones(1)}, {"v": np.ones(1)})


def test_allclose_is_false_for_different_structure_or_values():
    assert not tree_allclose({"w": np.ones(2)}, {"w": np.ones(3)})
    assert not tree_allclose({"w": np.ones(2)}, ({"w": np.ones(2)},))
    assert not tree_allclose({"w": np.ones(2)}, {"w": np.ones(2) + 1e-3})


def test_scale_keeps_float32():
    assert tree_scale({"w": np.ones(2, np.float32)}, 0.5)["w"].dtype == np.float32


def test_non_string_dict_keys_are_rejected():
    with pytest.raises(TypeError, match="keys must be strings"):
        tree_leaves({1: np.ones(1)})


@given(trees)
def test_map_with_path_sees_each_leaf_with_its_path(tree):
    named = tree_map_with_path(lambda path, leaf: keystr(path), tree)
    assert tree_structure(named) == tree_structure(tree)
    assert tree_leaves(named) == [keystr(p) for p, _ in tree_leaves_with_path(tree)]
    doubled = tree_map_with_path(lambda path, leaf: 2 * leaf, tree)
    assert tree_allclose(doubled, tree_map(lambda a: 2 * a, tree), rtol=0, atol=0)
