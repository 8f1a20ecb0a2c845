"""Batch normalization with running statistics as explicit state: ``batch_norm`` for (N, D),
``spatial_batch_norm`` for NCHW (statistics per channel over N, H and W).

Moded layers: ``layer.run(params, x, state, train=...) -> (y, vjp, new_state)``. In training the
batch's mean and (biased) variance normalize ``x`` and the running statistics move towards them:
``running = momentum * running + (1 - momentum) * batch`` (the course's convention: momentum 0.9
is PyTorch's 0.1), with the unbiased batch variance for ``running_var`` as in PyTorch. In evaluation
the running statistics normalize ``x`` and the state is returned unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from funcnn._checks import (
    check_ndim,
    cotangent,
    dict_params,
    example_shape,
    float_array,
    fraction,
    like,
    number_at_least,
    same_dtype,
)
from funcnn.core import VJP, Layer, Shape, State, WeightScale, layer_factory, moded_layer
from funcnn.tree import PyTree


@dataclass(frozen=True)
class _Spec:
    """What a batch norm is: its name, x's rank and layout, the axes its statistics run over, its settings."""

    name: str
    ndim: int
    layout: str
    axes: tuple[int, ...]
    momentum: float
    eps: float

    @property
    def features(self) -> str:
        return "C" if self.ndim == 4 else "D"

    def per_feature(self) -> tuple[int, ...]:
        """The shape that broadcasts a (D,) or (C,) vector against x."""
        return (1, -1) + (1,) * (self.ndim - 2)


def _checked(spec: _Spec, params: PyTree, x: Any, state: State) -> tuple[np.ndarray, ...]:
    """``(x, gamma, beta, running_mean, running_var)``, refused with the layer's name unless they fit."""
    name, features = spec.name, spec.features
    x = float_array(name, "x", x)
    check_ndim(name, "x", x, spec.ndim, spec.layout)
    width = x.shape[1]
    if width == 0:
        raise ValueError(f"{name}: x must have at least one feature ({features}), got shape {x.shape}")
    statistics = dict_params(name, state, ("running_mean", "running_var"), "state")
    arrays = dict_params(name, params, ("gamma", "beta")) | statistics
    for key, array in arrays.items():
        if array.shape != (width,):
            what = "params" if key in ("gamma", "beta") else "state"
            raise ValueError(
                f"{name}: {what}['{key}'] must have shape ({width},) for x of shape {x.shape} "
                f"({features}={width}), got {array.shape}"
            )
    same_dtype(name, x=x, **arrays)
    return x, arrays["gamma"], arrays["beta"], arrays["running_mean"], arrays["running_var"]


def _batch_statistics(
    spec: _Spec, x: np.ndarray, running_mean: np.ndarray, running_var: np.ndarray
) -> tuple[np.ndarray, np.ndarray, State]:
    """``(x_hat, inv_std, new_state)`` of a training step: x normalized by its batch's statistics, which
    the running statistics move towards (the unbiased variance for ``running_var``, as in PyTorch)."""
    count = x.size // x.shape[1]
    if count < 2:
        raise ValueError(
            f"{spec.name}: training needs more than one value per {spec.features} to estimate a variance, "
            f"got x of shape {x.shape}"
        )
    tiny = float(np.finfo(x.dtype).eps) * 1024
    with np.errstate(all="ignore"):  # NaN, inf or overflow: the careful path below decides
        mean = x.mean(axis=spec.axes)
        centred = x - mean.reshape(spec.per_feature())
        var = (centred * centred).mean(axis=spec.axes)
        ill = ~np.isfinite(var) | (var > np.finfo(x.dtype).max / 8) | (var < (tiny * mean) ** 2)
    if ill.any():  # extreme or constant features: statistics that stay finite and right
        return _careful_statistics(spec, x, count, running_mean, running_var)
    inv_std = 1 / np.sqrt(var + spec.eps)
    x_hat = np.multiply(centred, inv_std.reshape(spec.per_feature()), out=centred)  # centred is ours: reused
    momentum = spec.momentum
    new_state = {
        "running_mean": momentum * running_mean + (1 - momentum) * mean,
        "running_var": momentum * running_var + (1 - momentum) * var * (count / (count - 1)),
    }
    return x_hat, inv_std, new_state


def _careful_statistics(
    spec: _Spec, x: np.ndarray, count: int, running_mean: np.ndarray, running_var: np.ndarray
) -> tuple[np.ndarray, np.ndarray, State]:
    """:func:`_batch_statistics` for features whose plain statistics overflow or lose their precision
    (values near the dtype's limit, or a variance far below the mean's rounding)."""
    axes, shape = spec.axes, spec.per_feature()
    # A feature whose sum of squares could overflow (x around 1e19 in float32) is scaled down by a
    # power of two first: that is exact, so the statistics are the same, only representable.
    with np.errstate(invalid="ignore"):  # NaN or inf in x: NaN out, without a warning here
        exponent = np.frexp(np.maximum(x.max(axis=axes), -x.min(axis=axes)))[1]
    safe = (np.finfo(x.dtype).maxexp - 3 - int(count).bit_length()) // 2  # 4 * count * 2**(2 * safe) < max
    exponent = np.where(exponent > safe, exponent, 0)
    scale = np.ldexp(np.ones(x.shape[1], x.dtype), -exponent)
    x_scaled = x * scale.reshape(shape) if exponent.any() else x
    # The mean is summed in float64: float32 sums of a constant feature round, and (x - mean) / sqrt(eps)
    # magnifies that.
    mean_scaled = x_scaled.mean(axis=axes, dtype=np.float64).astype(x.dtype)
    centred = x_scaled - mean_scaled.reshape(shape)
    var_scaled = (centred * centred).mean(axis=axes)
    # eps * scale**2 underflows float32 below 2**-149 (a constant feature near 1e19): add it in float64.
    eps_scaled = np.ldexp(spec.eps, -2 * exponent)
    inv_std64 = 1 / np.sqrt(np.maximum(var_scaled + eps_scaled, np.finfo(np.float64).tiny))
    # Only a constant feature (centred all 0) exceeds the dtype here, near 3e38 in float32: any finite value does.
    inv_std_scaled = np.minimum(inv_std64, np.finfo(x.dtype).max).astype(x.dtype)
    x_hat = np.multiply(centred, inv_std_scaled.reshape(shape), out=centred)  # centred is ours: reused
    inv_std = np.ldexp(inv_std64, -exponent).astype(x.dtype)
    with np.errstate(over="ignore"):  # a variance beyond the dtype's range is refused below
        var = var_scaled / scale / scale
        momentum = spec.momentum
        new_state = {
            "running_mean": momentum * running_mean + (1 - momentum) * mean_scaled / scale,
            "running_var": momentum * running_var + (1 - momentum) * var * (count / (count - 1)),
        }
    overflow = np.flatnonzero(np.isfinite(var_scaled) & ~np.isfinite(new_state["running_var"]))
    if overflow.size:
        i = overflow[0]
        raise ValueError(
            f"{spec.name}: the variance of x for {spec.features} index {i} overflows {x.dtype} in "
            f"state['running_var'] (x of shape {x.shape} reaches about ±{2.0 ** int(exponent[i]):.2g}); "
            "scale x down or use float64"
        )
    return x_hat, inv_std, new_state


def _vjp(spec: _Spec, y: np.ndarray, x_hat: np.ndarray, inv_std: np.ndarray, gamma: np.ndarray, train: bool) -> VJP:
    """The backward pass: it keeps x_hat and inv_std, not y (only its shape and dtype, to check dy)."""
    out, axes, shape = like(y), spec.axes, spec.per_feature()

    def vjp(dy: np.ndarray) -> tuple[PyTree, np.ndarray]:
        dy = cotangent(spec.name, dy, out)
        grads = {"gamma": (dy * x_hat).sum(axis=axes), "beta": dy.sum(axis=axes)}
        dx_hat = dy * gamma.reshape(shape)
        if not train:  # the running statistics are constants
            return grads, dx_hat * inv_std.reshape(shape)
        # Closed form of the batch-statistics backward, one pass over the sums.
        mean_dx_hat = dx_hat.mean(axis=axes).reshape(shape)
        mean_dx_hat_x_hat = (dx_hat * x_hat).mean(axis=axes).reshape(shape)
        return grads, inv_std.reshape(shape) * (dx_hat - mean_dx_hat - x_hat * mean_dx_hat_x_hat)

    return vjp


def _batch_norm_layer(
    name: str, ndim: int, layout: str, axes: tuple[int, ...], momentum: float, eps: float, op: str
) -> Layer:
    """The moded layer: :func:`_checked` inputs, :func:`_batch_statistics` in training (the running ones in
    evaluation, state unchanged), the affine map by gamma and beta, :func:`_vjp`."""
    spec = _Spec(
        name,
        ndim,
        layout,
        axes,
        fraction(name, "momentum", momentum),
        number_at_least(name, "eps", eps, 0.0, strict=True),
    )

    def run_fn(params: PyTree, x: np.ndarray, state: State, train: bool, rng: Any) -> tuple[np.ndarray, VJP, State]:
        x, gamma, beta, running_mean, running_var = _checked(spec, params, x, state)
        shape = spec.per_feature()
        if train:
            x_hat, inv_std, new_state = _batch_statistics(spec, x, running_mean, running_var)
        else:
            inv_std = 1 / np.sqrt(running_var + spec.eps)
            x_hat = (x - running_mean.reshape(shape)) * inv_std.reshape(shape)
            new_state = state
        y = gamma.reshape(shape) * x_hat + beta.reshape(shape)
        return y, _vjp(spec, y, x_hat, inv_std, gamma, train), new_state

    def out_shape(in_shape: Shape) -> Shape:
        shape = example_shape(name, in_shape, ndim - 1, layout.replace("N, ", ""))
        if shape[0] == 0:
            raise ValueError(f"{name}: the input shape must have at least one feature ({spec.features}), got {shape}")
        return shape

    def init(
        rng: np.random.Generator, in_shape: Shape, dtype: np.dtype, weight_scale: WeightScale
    ) -> tuple[Shape, PyTree]:
        width = out_shape(in_shape)[0]
        return out_shape(in_shape), {"gamma": np.ones(width, dtype), "beta": np.zeros(width, dtype)}

    def state_init(in_shape: Shape, dtype: np.dtype) -> State:
        width = out_shape(in_shape)[0]
        return {"running_mean": np.zeros(width, dtype), "running_var": np.ones(width, dtype)}

    return moded_layer(
        run_fn,
        name,
        ("gamma", "beta"),
        init,
        ("running_mean", "running_var"),
        state_init,
        out_shape=out_shape,
        op=op,
        hparams={"momentum": spec.momentum, "eps": spec.eps},
    )


@layer_factory
def batch_norm(momentum: float = 0.9, eps: float = 1e-5) -> Layer:
    """Batch normalization of x ``(N, D)``; params ``{"gamma": (D,), "beta": (D,)}``, state
    ``{"running_mean": (D,), "running_var": (D,)}``. Call ``.run(params, x, state, train=...)``
    for ``(y, vjp, new_state)``; y has the shape of x.

    Args:
        momentum: the share of the old running statistics kept at each training step (the course's 0.9;
            PyTorch's 0.1 means 0.9 here).
        eps: added to the variance before its square root.

    Returns:
        The moded layer: call it as ``layer.run(params, x, state, train=..., rng=...) -> (y, vjp, new_state)``.

    >>> layer = fn.batch_norm()
    >>> params = {"gamma": np.ones(2), "beta": np.zeros(2)}
    >>> state = fn.init_state(layer, (2,), np.float64)
    >>> y, vjp, state = layer.run(params, np.array([[1.0, 10.0], [3.0, 30.0]]), state, train=True)
    >>> y.round(3)
    array([[-1., -1.],
           [ 1.,  1.]])
    >>> state["running_mean"]                                 # 0.9 * 0 + 0.1 * the batch's mean
    array([0.2, 2. ])
    """
    name = f"batch_norm(momentum={momentum}, eps={eps})"
    return _batch_norm_layer(name, 2, "(N, D)", (0,), momentum, eps, "batch_norm")


@layer_factory
def spatial_batch_norm(momentum: float = 0.9, eps: float = 1e-5) -> Layer:
    """Batch normalization of x ``(N, C, H, W)`` per channel; params ``{"gamma": (C,), "beta": (C,)}``,
    state ``{"running_mean": (C,), "running_var": (C,)}``. Same calls as :func:`batch_norm`.

    Args:
        momentum: as in :func:`batch_norm`.
        eps: as in :func:`batch_norm`.

    Returns:
        The moded layer: call it as ``layer.run(params, x, state, train=..., rng=...) -> (y, vjp, new_state)``.

    >>> layer = fn.spatial_batch_norm()
    >>> layer.out_shape((3, 8, 8)), sorted(fn.init_state(layer, (3, 8, 8)))
    ((3, 8, 8), ['running_mean', 'running_var'])
    >>> x = np.random.default_rng(0).standard_normal((4, 3, 8, 8))
    >>> params = {"gamma": np.ones(3), "beta": np.zeros(3)}
    >>> y, _, _ = layer.run(params, x, fn.init_state(layer, (3, 8, 8), np.float64), train=True)
    >>> y.mean(axis=(0, 2, 3)).round(6) + 0.0, y.std(axis=(0, 2, 3)).round(3)   # each channel: mean 0, std 1
    (array([0., 0., 0.]), array([1., 1., 1.]))
    """
    name = f"spatial_batch_norm(momentum={momentum}, eps={eps})"
    return _batch_norm_layer(name, 4, "(N, C, H, W)", (0, 2, 3), momentum, eps, "spatial_batch_norm")
