"""Pytrees of parameters: nested dicts (string keys), tuples and lists with arrays as leaves.

The names follow ``jax.tree_util``. Dict keys are visited in sorted order, so two dicts with the
same keys always flatten alike. ``()`` is an empty tree: the params of a layer that has none.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
from typing_extensions import TypeIs, override

__all__ = [
    "PyTree",
    "TreeDef",
    "is_empty",
    "is_node",
    "is_shape",
    "keystr",
    "tree_add",
    "tree_allclose",
    "tree_flatten",
    "tree_leaves",
    "tree_leaves_with_path",
    "tree_map",
    "tree_map_with_path",
    "tree_scale",
    "tree_structure",
    "tree_sub",
    "tree_unflatten",
    "tree_vdot",
    "tree_zeros_like",
]

PyTree = Any
KeyPath = tuple[str | int, ...]
Node = dict[str, Any] | tuple[Any, ...] | list[Any]


def is_node(tree: object) -> TypeIs[Node]:
    """Whether ``tree`` is an inner node, a dict, tuple or list whose entries the tree functions visit;
    anything else (an array, a number, None) is a leaf.

    Args:
        tree: any value.

    Returns:
        True for a dict, tuple or list; a type checker then knows ``tree`` is one of them.
    """
    return isinstance(tree, (dict, tuple, list))


def is_empty(tree: object) -> TypeIs[tuple[()]]:
    """Whether ``tree`` is ``()``, the params or state of a layer that has none (safe on arrays, which
    ``tree == ()`` is not).

    Args:
        tree: any value.

    Returns:
        True for the empty tuple only.
    """
    return isinstance(tree, tuple) and tree == ()


def is_shape(tree: object) -> TypeIs[tuple[int | np.integer[Any], ...]]:
    """Whether ``tree`` is one shape (a tuple of ints), not a tree of shapes such as a tuple input's
    ``((T, D), (H,))``.

    Args:
        tree: a shape or a tree of shapes.

    Returns:
        True for a tuple whose entries are all integers (``()`` included).
    """
    return isinstance(tree, tuple) and all(isinstance(d, (int, np.integer)) for d in tree)


@dataclass(frozen=True)
class TreeDef:
    """The shape of a tree without its leaves: ``kind`` is "leaf", "dict", "tuple" or "list"."""

    kind: str
    keys: tuple[Any, ...] = ()
    children: tuple[TreeDef, ...] = ()

    @property
    def num_leaves(self) -> int:
        if self.kind == "leaf":
            return 1
        return sum(child.num_leaves for child in self.children)

    @override
    def __repr__(self) -> str:
        if self.kind == "leaf":
            return "*"
        if self.kind == "dict":
            return "{" + ", ".join(f"{k!r}: {c!r}" for k, c in zip(self.keys, self.children)) + "}"
        inner = ", ".join(repr(c) for c in self.children)
        if self.kind == "tuple":
            return f"({inner},)" if len(self.children) == 1 else f"({inner})"
        return f"[{inner}]"


def _children(tree: PyTree) -> tuple[str, tuple[Any, ...], tuple[Any, ...]] | None:
    """(kind, keys, children) of an inner node, or None for a leaf."""
    if not is_node(tree):
        return None
    if isinstance(tree, dict):
        for key in tree:
            if not isinstance(key, str):
                raise TypeError(f"tree: dict keys must be strings, got {key!r}")
        keys = tuple(sorted(tree))
        return "dict", keys, tuple(tree[k] for k in keys)
    if isinstance(tree, tuple):
        return "tuple", tuple(range(len(tree))), tree
    return "list", tuple(range(len(tree))), tuple(tree)


def tree_structure(tree: PyTree) -> TreeDef:
    """The TreeDef of ``tree``.

    Args:
        tree: a tree.

    Returns:
        Its :class:`TreeDef`.
    """
    node = _children(tree)
    if node is None:
        return TreeDef("leaf")
    kind, keys, children = node
    return TreeDef(kind, keys, tuple(tree_structure(c) for c in children))


def _walk(tree: PyTree, path: KeyPath) -> Iterator[tuple[KeyPath, Any]]:
    node = _children(tree)
    if node is None:
        yield path, tree
        return
    _, keys, children = node
    for key, child in zip(keys, children):
        yield from _walk(child, (*path, key))


def tree_leaves(tree: PyTree) -> list[Any]:
    """The leaves of ``tree`` in flattening order.

    Args:
        tree: a tree.

    Returns:
        Its leaves, dict entries in sorted key order.
    """
    return [leaf for _, leaf in _walk(tree, ())]


def tree_leaves_with_path(tree: PyTree) -> list[tuple[KeyPath, Any]]:
    """``(key_path, leaf)`` pairs in flattening order; format a path with :func:`keystr`.

    Args:
        tree: a tree.

    Returns:
        ``(key_path, leaf)`` pairs, in the order of :func:`tree_leaves`.
    """
    return list(_walk(tree, ()))


def keystr(path: KeyPath, root: str = "") -> str:
    """A key path as it would be written in Python: ``keystr((0, "w"), "params")`` is
    ``params[0]["w"]``.

    Args:
        path: a key path, as :func:`tree_leaves_with_path` gives.
        root: the name put in front.

    Returns:
        The path as Python source.
    """
    return root + "".join(f'["{k}"]' if isinstance(k, str) else f"[{k}]" for k in path)


def tree_flatten(tree: PyTree) -> tuple[list[Any], TreeDef]:
    """``(leaves, treedef)``; :func:`tree_unflatten` inverts it.

    Args:
        tree: a tree.

    Returns:
        ``(leaves, treedef)``.
    """
    return tree_leaves(tree), tree_structure(tree)


def tree_unflatten(treedef: TreeDef, leaves: list[Any]) -> PyTree:
    """Rebuild a tree of shape ``treedef`` from ``leaves`` (as many as ``treedef.num_leaves``).

    Args:
        treedef: the structure.
        leaves: as many leaves as it holds.

    Returns:
        The tree.
    """
    leaves = list(leaves)
    if len(leaves) != treedef.num_leaves:
        raise ValueError(f"tree_unflatten: {treedef!r} needs {treedef.num_leaves} leaves, got {len(leaves)}")
    return _build(treedef, iter(leaves))


def _build(node: TreeDef, leaves: Iterator[Any]) -> PyTree:
    """The tree of shape ``node`` taking its leaves from ``leaves`` in order. (A module function, not a
    closure that calls itself: such a closure is a reference cycle that kept every leaf alive until the
    garbage collector ran.)"""
    if node.kind == "leaf":
        return next(leaves)
    built = [_build(child, leaves) for child in node.children]
    if node.kind == "dict":
        return dict(zip(node.keys, built))
    return tuple(built) if node.kind == "tuple" else built


def tree_map(f: Callable[..., Any], tree: PyTree, *rest: PyTree) -> PyTree:
    """Apply ``f`` leaf by leaf to ``tree`` and the trees in ``rest``, which must share its
    structure; a mismatch raises ValueError printing both structures.

    Args:
        f: a function of one leaf of each tree.
        tree: the first tree.
        *rest: trees of the same structure.

    Returns:
        A tree of the same structure holding ``f``'s results.
    """
    leaves, treedef = tree_flatten(tree)
    others = []
    for other in rest:
        other_leaves, other_def = tree_flatten(other)
        if other_def != treedef:
            raise ValueError(f"tree_map: tree structures differ:\n  {treedef!r}\n  {other_def!r}")
        others.append(other_leaves)
    return tree_unflatten(treedef, [f(*args) for args in zip(leaves, *others)])


def tree_map_with_path(f: Callable[[KeyPath, Any], Any], tree: PyTree) -> PyTree:
    """Apply ``f(key_path, leaf)`` to every leaf of ``tree``, keeping its structure.

    Args:
        f: ``f(key_path, leaf)``.
        tree: a tree.

    Returns:
        A tree of the same structure holding ``f``'s results.
    """
    return tree_unflatten(tree_structure(tree), [f(path, leaf) for path, leaf in tree_leaves_with_path(tree)])


def tree_zeros_like(tree: PyTree) -> PyTree:
    """A tree of zero arrays with the shapes and dtypes of ``tree``'s leaves.

    Args:
        tree: a tree of arrays.

    Returns:
        The same tree of zeros (same shapes and dtypes).
    """
    return tree_map(np.zeros_like, tree)


def tree_add(a: PyTree, b: PyTree) -> PyTree:
    """Leafwise ``a + b``.

    Args:
        a: a tree of arrays.
        b: a tree of the same structure.

    Returns:
        ``a + b`` leaf by leaf.
    """
    return tree_map(np.add, a, b)


def tree_sub(a: PyTree, b: PyTree) -> PyTree:
    """Leafwise ``a - b``.

    Args:
        a: a tree of arrays.
        b: a tree of the same structure.

    Returns:
        ``a - b`` leaf by leaf.
    """
    return tree_map(np.subtract, a, b)


def tree_scale(tree: PyTree, s: float) -> PyTree:
    """Leafwise ``s * leaf``, keeping each leaf's dtype.

    Args:
        tree: a tree of arrays.
        s: the factor.

    Returns:
        ``s * tree`` leaf by leaf.
    """
    return tree_map(lambda leaf: (leaf * s).astype(np.result_type(leaf), copy=False), tree)


def tree_vdot(a: PyTree, b: PyTree) -> float:
    """The inner product of two trees of the same structure, summed over all leaves, as a float.

    Args:
        a: a tree of arrays.
        b: a tree of the same structure.

    Returns:
        The sum over leaves of their inner products.
    """
    products = tree_leaves(tree_map(lambda x, y: np.vdot(np.ravel(x), np.ravel(y)), a, b))
    return float(sum(products, 0.0))


def tree_allclose(a: PyTree, b: PyTree, rtol: float = 1e-5, atol: float = 1e-8, equal_nan: bool = False) -> bool:
    """True when ``a`` and ``b`` have the same structure and leaf shapes and every leaf pair is
    ``np.allclose``.

    Args:
        a: a tree.
        b: another tree.
        rtol: as in ``np.allclose``.
        atol: as in ``np.allclose``.
        equal_nan: count NaN as equal to NaN.

    Returns:
        True when both have one structure and every pair of leaves is close.
    """
    if tree_structure(a) != tree_structure(b):
        return False
    return all(
        np.shape(x) == np.shape(y) and bool(np.allclose(x, y, rtol=rtol, atol=atol, equal_nan=equal_nan))
        for x, y in zip(tree_leaves(a), tree_leaves(b))
    )
