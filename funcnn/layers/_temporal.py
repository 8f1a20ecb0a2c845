"""The temporal affine layer: one affine map applied at every time step, ``(N, T, D)`` -> ``(N, T, M)``."""

from __future__ import annotations

import numpy as np

from funcnn._checks import check_ndim, cotangent, dict_params, example_shape, float_array, int_at_least, same_dtype
from funcnn.core import VJP, Layer, Shape, WeightScale, layer_factory
from funcnn.layers._weights import weight_std, weights_and_bias
from funcnn.tree import PyTree

NAME = "temporal_affine"


def _temporal_affine(params: PyTree, x: np.ndarray) -> tuple[np.ndarray, VJP]:
    """``out[n, t] = x[n, t] @ w + b``, the course's ``temporal_affine_forward``.

    params: ``{"w": (D, M), "b": (M,)}``; x: ``(N, T, D)``. Returns ``out (N, T, M)`` and
    ``vjp(dout) -> ({"w": dw, "b": db}, dx)``.

    >>> out, vjp = fn.temporal_affine({"w": np.ones((2, 3)), "b": np.zeros(3)}, np.ones((4, 5, 2)))
    >>> out.shape, vjp(np.ones_like(out))[0]["b"]
    ((4, 5, 3), array([20., 20., 20.]))
    """
    w, b = dict_params(NAME, params, ("w", "b")).values()
    x = float_array(NAME, "x", x)
    same_dtype(NAME, x=x, w=w, b=b)
    check_ndim(NAME, "x", x, 3, "(N, T, D)")
    check_ndim(NAME, "params['w']", w, 2, "(D, M)")
    if x.shape[2] != w.shape[0]:
        raise ValueError(f"{NAME}: x has D={x.shape[2]} (shape {x.shape}) but params['w'] has shape {w.shape}")
    if b.shape != (w.shape[1],):
        raise ValueError(
            f"{NAME}: params['b'] must have shape ({w.shape[1]},) to match params['w'] {w.shape}, got {b.shape}"
        )
    n, t, d = x.shape
    x2 = x.reshape(n * t, d)
    out = (x2 @ w + b).reshape(n, t, -1)

    def vjp(dout: np.ndarray) -> tuple[PyTree, np.ndarray]:
        d2 = cotangent(NAME, dout, out).reshape(n * t, -1)
        return {"w": x2.T @ d2, "b": d2.sum(axis=0)}, (d2 @ w.T).reshape(x.shape)

    return out, vjp


def _out_shape(shape: Shape) -> Shape:
    example_shape(NAME, shape, 2, "(T, D)")
    raise ValueError(f"{NAME}: its output size M comes from params['w']; use fn.temporal_dense(out_dim)")


temporal_affine = Layer(_temporal_affine, NAME, param_keys=("w", "b"), out_shape=_out_shape, op="temporal_affine")


@layer_factory
def temporal_dense(out_dim: int) -> Layer:
    """:data:`temporal_affine` with its output size ``M``, for :func:`funcnn.init_params`: input shape
    ``(T, D)`` -> ``(T, M)``, params ``{"w": (D, M), "b": (M,)}`` (He-scaled or ``weight_scale``, bias 0).

    Args:
        out_dim: M, the number of outputs per step.

    Returns:
        A temporal affine layer that knows its output size: ``(N, T, D) -> (N, T, M)``.

    >>> fn.temporal_dense(7).out_shape((5, 3))
    (5, 7)
    """
    name = f"temporal_affine({out_dim})"
    out_dim = int_at_least(name, "out_dim", out_dim, 1)

    def out_shape(shape: Shape) -> Shape:
        return (example_shape(name, shape, 2, "(T, D)")[0], out_dim)

    def init(
        rng: np.random.Generator, shape: Shape, dtype: np.dtype, weight_scale: WeightScale
    ) -> tuple[Shape, PyTree]:
        d = example_shape(name, shape, 2, "(T, D)")[1]
        return out_shape(shape), weights_and_bias(rng, (d, out_dim), out_dim, dtype, weight_std(name, weight_scale, d))

    def apply(params: PyTree, x: np.ndarray) -> tuple[np.ndarray, VJP]:
        w = params.get("w") if isinstance(params, dict) else None
        if w is not None and np.ndim(w) == 2 and np.shape(w)[1] != out_dim:
            raise ValueError(
                f"{name}: params['w'] has shape {np.shape(w)}, but the layer was declared with out_dim={out_dim}"
            )
        return _temporal_affine(params, x)

    return Layer(
        apply,
        name,
        param_keys=("w", "b"),
        init=init,
        out_shape=out_shape,
        op="temporal_affine",
        hparams={"out_dim": out_dim},
    )
