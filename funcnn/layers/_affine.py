"""Fully connected layer."""

from __future__ import annotations

import math

import numpy as np

from funcnn._checks import (
    check_ndim,
    cotangent,
    dict_params,
    example_shape,
    float_array,
    int_at_least,
    like,
    same_dtype,
)
from funcnn.core import VJP, Layer, Shape, WeightScale, layer_factory, skips_dx
from funcnn.layers._weights import weight_std, weights_and_bias
from funcnn.tree import PyTree

NAME = "affine"


def _affine(params: PyTree, x: np.ndarray) -> tuple[np.ndarray, VJP]:
    """``y = x.reshape(N, D) @ w + b``.

    params: ``{"w": (D, M), "b": (M,)}``; x: ``(N, d1, ..., dk)`` with ``D = d1 * ... * dk``.
    Returns ``y`` of shape ``(N, M)`` and ``vjp(dy) -> ({"w": dw, "b": db}, dx)``.

    >>> x = np.arange(6.0).reshape(2, 3)                      # N=2 examples, D=3
    >>> params = {"w": np.ones((3, 2)), "b": np.array([0.0, 10.0])}
    >>> y, vjp = fn.affine(params, x)
    >>> y
    array([[ 3., 13.],
           [12., 22.]])
    >>> dparams, dx = vjp(np.ones_like(y))
    >>> dparams["b"], dx.shape
    (array([2., 2.]), (2, 3))
    """
    w, b = dict_params(NAME, params, ("w", "b")).values()
    x = float_array(NAME, "x", x)
    same_dtype(NAME, x=x, w=w, b=b)
    if x.ndim < 1:
        raise ValueError(f"{NAME}: x must be at least 1-D (N, d1, ..., dk), got shape {x.shape}")
    check_ndim(NAME, "params['w']", w, 2, "(D, M)")
    x2 = x.reshape(x.shape[0], math.prod(x.shape[1:]))
    if x2.shape[1] != w.shape[0]:
        raise ValueError(
            f"{NAME}: x of shape {x.shape} flattens to D={x2.shape[1]}, but params['w'] has shape {w.shape}"
        )
    if b.shape != (w.shape[1],):
        raise ValueError(
            f"{NAME}: params['b'] must have shape ({w.shape[1]},) to match params['w'] {w.shape}, got {b.shape}"
        )
    from funcnn.kernels.threads import matmul_split  # split over funcnn's threads, one BLAS thread each

    y = matmul_split(x2, w)
    y += b  # in place: y is this call's own array
    out = like(y)  # dw needs x, dx needs w: y itself is not kept

    @skips_dx
    def vjp(dy: np.ndarray, need_dx: bool = True) -> tuple[PyTree, np.ndarray | None]:
        dy = cotangent(NAME, dy, out)
        dx = matmul_split(dy, w.T).reshape(x.shape) if need_dx else None
        return {"w": matmul_split(x2.T, dy), "b": dy.sum(axis=0)}, dx

    return y, vjp


def _unknown_out_dim(shape: Shape) -> Shape:
    example_shape(NAME, shape, None, "(d1, ..., dk)")
    raise ValueError(
        f"{NAME}: its output size M comes from params['w'], so the output shape for input shape {tuple(shape)} "
        "is unknown before the params: use fn.dense(out_dim)"
    )


affine = Layer(_affine, NAME, param_keys=("w", "b"), out_shape=_unknown_out_dim, op="affine", hparams={"out_dim": None})


@layer_factory
def dense(out_dim: int) -> Layer:
    """:data:`affine` with a known output size ``M = out_dim``, so that :func:`funcnn.init_params`
    can make its params ``{"w": (D, M), "b": (M,)}`` (like stax's ``Dense``).

    x ``(N, d1, ..., dk)`` -> y ``(N, M)``.

    Args:
        out_dim: M, the number of outputs; the input size D comes from the input shape.

    Returns:
        An affine layer that knows its output size, for :func:`funcnn.init_params`; params ``{"w": (D, M), "b":
            (M,)}``.

    >>> layer = fn.dense(4)
    >>> layer.out_shape((2, 3))                               # x (N, 2, 3) is flattened to D = 6
    (4,)
    >>> _, params = fn.init_params(layer, np.random.default_rng(0), (2, 3))
    >>> params["w"].shape, params["b"].shape
    ((6, 4), (4,))
    """
    name = f"affine({out_dim})"
    out_dim = int_at_least(name, "out_dim", out_dim, 1)

    def out_shape(shape: Shape) -> Shape:
        example_shape(name, shape, None, "(d1, ..., dk)")
        return (out_dim,)

    def init(
        rng: np.random.Generator, shape: Shape, dtype: np.dtype, weight_scale: WeightScale
    ) -> tuple[Shape, PyTree]:
        fan_in = math.prod(example_shape(name, shape, None, "(d1, ..., dk)"))
        params = weights_and_bias(rng, (fan_in, out_dim), out_dim, dtype, weight_std(name, weight_scale, fan_in))
        return out_shape(shape), params

    def apply(params: PyTree, x: np.ndarray) -> tuple[np.ndarray, VJP]:
        w = params.get("w") if isinstance(params, dict) else None
        if w is not None and np.ndim(w) == 2 and np.shape(w)[1] != out_dim:
            raise ValueError(
                f"{name}: params['w'] has shape {np.shape(w)}, but the layer was declared with out_dim={out_dim} "
                f"(w must be (D, {out_dim}))"
            )
        return _affine(params, x)

    hparams = {"out_dim": out_dim}
    return Layer(
        apply,
        name,
        param_keys=("w", "b"),
        init=init,
        out_shape=out_shape,
        op="affine",
        hparams=hparams,
    )
