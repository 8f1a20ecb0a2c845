"""Rounding-error bounds for comparing two computations of one quantity, derived from the computation.

A sum of n products computed in floating point, in any order and with or without FMA, is within
``gamma(n) * sum |terms|`` of the exact sum (Higham, *Accuracy and Stability of Numerical Algorithms*,
section 3.1), where ``gamma(n) = n u / (1 - n u)`` and u is the unit roundoff of the dtype. Two such
computations (a fast kernel and a reference) therefore differ by at most twice that. ``sum |terms|``
of a bilinear layer (conv, affine, their vjps) is the layer itself applied to the absolute values of
its operands, computed here in float64. These bounds hold on every BLAS kernel and thread count: they
do not depend on the order in which a machine adds the terms.
"""

from __future__ import annotations

import numpy as np

import funcnn as fn
from funcnn.gradcheck._numerical import each_element_moved


def unit_roundoff(dtype: np.dtype | type) -> float:
    """u = eps / 2: the largest relative error of rounding one real number to ``dtype``."""
    return float(np.finfo(dtype).eps) / 2


def gamma(n: int, dtype: np.dtype | type) -> float:
    """Higham's gamma_n: the relative error bound of a sum of n products, in ``dtype``."""
    nu = n * unit_roundoff(dtype)
    assert nu < 0.5, f"gamma({n}) undefined in {dtype}"
    return nu / (1 - nu)


def assert_within(got: np.ndarray, want: np.ndarray, bound: np.ndarray | float, what: str = "") -> None:
    """``|got - want| <= bound`` elementwise (NaN only where both are NaN), with the worst element named."""
    got64, want64 = np.asarray(got, np.float64), np.asarray(want, np.float64)
    np.testing.assert_array_equal(np.isnan(got64), np.isnan(want64), err_msg=f"{what}: NaN in different places")
    excess = np.where(np.isnan(want64), 0.0, np.abs(got64 - want64) - bound)
    if excess.size and excess.max() > 0:
        i = np.unravel_index(int(np.argmax(excess)), excess.shape)
        limit = np.broadcast_to(bound, excess.shape)[i]
        raise AssertionError(f"{what}: at {i} got {got64[i]!r}, want {want64[i]!r}, |diff| exceeds bound {limit:.3g}")


def conv_magnitudes(conv_param: dict, params: dict, x: np.ndarray, dy: np.ndarray) -> dict[str, np.ndarray]:
    """``sum |terms|`` of each element of a conv's y, dx, dw and db: the reference conv and its vjp run
    on the absolute values of x, w, b and dy in float64 (the conv is bilinear, so that is exact up to
    float64 rounding, negligible against float32's and below the float64 factor of 2 in the bounds)."""
    absolute = {k: np.abs(v).astype(np.float64) for k, v in params.items()}
    y, vjp = fn.conv_naive(**conv_param)(absolute, np.abs(x).astype(np.float64))
    grads, dx = vjp(np.abs(dy).astype(np.float64))
    return {"y": y, "dx": dx, "w": grads["w"], "b": grads["b"]}


def conv_error_bounds(
    conv_param: dict, params: dict, x: np.ndarray, dy: np.ndarray, winograd: bool = False
) -> dict[str, np.ndarray | float]:
    """Bounds on |fast - reference| for a conv's y, dx, dw and db computed in ``x.dtype`` by two
    different summation orders (each within gamma(n) * sum|terms| of the exact value).

    Direct methods (naive loops, im2col + BLAS): componentwise, n the length of each reduction.
    Winograd F(2x2, 3x3): normwise, from the transforms' absolute row sums (B^T: 2, G: 1.5, A^T: 3 per
    dimension, so a 3x3 output tile's terms are at most 81 C max|x| max|w|, against 9 C for a direct
    conv), with 20 more roundings for the transforms; dw's (dU = dM V^T, then G^T dU G): 64 T max|x| max|dy|.
    """
    f, c, hh, ww = params["w"].shape
    n, _, out_h, out_w = dy.shape
    dtype = x.dtype
    m = conv_magnitudes(conv_param, params, x, dy)
    bounds: dict[str, np.ndarray | float] = {
        "y": 2 * gamma(c * hh * ww + 1, dtype) * m["y"],
        "dx": 2 * gamma(f * hh * ww, dtype) * m["dx"],
        "w": 2 * gamma(n * out_h * out_w, dtype) * m["w"],
        "b": 2 * gamma(n * out_h * out_w, dtype) * m["b"],
    }
    if winograd:
        ax, aw, ady = (float(np.abs(a).max(initial=0.0)) for a in (x, params["w"], dy))
        tiles = n * -(-out_h // 2) * -(-out_w // 2)
        bounds["y"] = bounds["y"] + 2 * gamma(c + 20, dtype) * 81 * c * ax * aw
        bounds["dx"] = bounds["dx"] + 2 * gamma(f + 20, dtype) * 81 * f * ady * aw
        bounds["w"] = bounds["w"] + 2 * gamma(tiles + 20, dtype) * 64 * tiles * ax * ady
    return bounds


def assert_conv_matches_reference(fast_y, fast_grads, fast_dx, conv_param, params, x, dy, winograd=False):
    """The fast conv's y, dw, db and dx equal ``conv_naive``'s within :func:`conv_error_bounds`."""
    y_ref, vjp_ref = fn.conv_naive(**conv_param)(params, x)
    grads_ref, dx_ref = vjp_ref(dy)
    bounds = conv_error_bounds(conv_param, params, x, dy, winograd)
    assert_within(fast_y, y_ref, bounds["y"], "y")
    assert_within(fast_dx, dx_ref, bounds["dx"], "dx")
    assert_within(fast_grads["w"], grads_ref["w"], bounds["w"], "dw")
    assert_within(fast_grads["b"], grads_ref["b"], bounds["b"], "db")


def norm_error_bounds(
    x: np.ndarray, dy: np.ndarray, gamma_: np.ndarray, eps: float, dtype: np.dtype | type, kappa: float | None = None
) -> dict[str, np.ndarray]:
    """Bounds on |a - b| for two computations in ``dtype``, with different summation orders, of a
    normalization over the last axis of ``x`` (m values per group; batch, layer and group norm all reshape to
    that): y = gamma xhat + beta, dx = gamma / sigma (dy - mean dy - xhat mean(dy xhat)), and the terms
    ``dy xhat`` and ``dy`` that dgamma and dbeta sum (the caller sums their bounds over its own axes).

    Each statistic is a mean of m terms (relative error gamma(m) of its terms' magnitude); the mean's error
    moves xhat by about gamma(m) mean|x| / sigma, so the condition is kappa = 1 + mean|x| / sigma per group
    (``kappa`` overrides it, for a layer whose statistics avoid it). Every output element takes at most 8
    further roundings: each bound is twice (two computations) gamma(m + 8) * kappa times the magnitude of
    the terms of its formula. ``gamma_`` broadcasts against ``x``.
    """
    x64, dy64 = np.asarray(x, np.float64), np.asarray(dy, np.float64)
    m = x.shape[-1]
    g = np.abs(np.asarray(gamma_, np.float64))
    mu = x64.mean(axis=-1, keepdims=True)
    sigma = np.sqrt(((x64 - mu) ** 2).mean(axis=-1, keepdims=True) + eps)
    xhat = np.abs(x64 - mu) / sigma
    if kappa is None:
        kappa = 1 + np.abs(x64).mean(axis=-1, keepdims=True) / sigma
    rel = 2 * gamma(m + 8, dtype) * kappa
    gdy = np.abs(dy64) * g
    dx = (gdy + gdy.mean(axis=-1, keepdims=True) + (xhat + 1) * (gdy * (xhat + 1)).mean(axis=-1, keepdims=True)) / sigma
    return {
        "y": rel * (g * (xhat + 1)),
        "dx": rel * dx,
        "gamma_terms": rel * (np.abs(dy64) * (xhat + 1)),
        "beta_terms": 2 * gamma(m, dtype) * np.abs(dy64),
    }


def batch_norm_error_bounds(
    x: np.ndarray,
    dy: np.ndarray,
    gamma_: np.ndarray,
    eps: float,
    axes: tuple[int, ...],
    dtype: np.dtype | type,
    kappa: float | None = None,
) -> dict[str, np.ndarray]:
    """:func:`norm_error_bounds` for batch norm over ``axes`` of (N, D) or (N, C, H, W), channel axis 1:
    bounds on y and dx in x's shape, on dgamma and dbeta per channel."""
    order = (1, *axes)
    grouped = np.transpose(x, order).shape

    def to_groups(a: np.ndarray) -> np.ndarray:
        return np.transpose(a, order).reshape(a.shape[1], -1)

    def back(a: np.ndarray) -> np.ndarray:
        return np.transpose(a.reshape(grouped), np.argsort(order))

    b = norm_error_bounds(to_groups(x), to_groups(dy), np.reshape(gamma_, (-1, 1)), eps, dtype, kappa)
    return {"y": back(b["y"]), "dx": back(b["dx"]), "gamma": b["gamma_terms"].sum(-1), "beta": b["beta_terms"].sum(-1)}


# An elementary function (exp, log, tanh) from NumPy's SIMD loops or the C library is within a few units in the
# last place of the truth, depending on the CPU's instruction set; 8 ulps covers every implementation NumPy uses.
LIBM_ULPS = 8


def ulps(k: float, dtype: np.dtype | type = np.float64) -> float:
    """k units in the last place, as a relative tolerance (k * eps)."""
    return k * float(np.finfo(dtype).eps)


def affine_error_bounds(params: dict, x: np.ndarray, dy: np.ndarray) -> dict[str, np.ndarray]:
    """:func:`conv_error_bounds` for an affine layer: x (N, D) @ w (D, M) + b, and its vjp."""
    absolute = {k: np.abs(v).astype(np.float64) for k, v in params.items()}
    y, vjp = fn.affine(absolute, np.abs(x).astype(np.float64))
    grads, dx = vjp(np.abs(dy).astype(np.float64))
    (d, m), n = params["w"].shape, x.shape[0]
    return {
        "y": 2 * gamma(d + 1, x.dtype) * y,
        "dx": 2 * gamma(m, x.dtype) * dx,
        "w": 2 * gamma(n, x.dtype) * grads["w"],
        "b": 2 * gamma(n, x.dtype) * grads["b"],
    }


def printed_rel_error_bound(correct: np.ndarray, decimals: int = 8) -> float:
    """The largest ``rel_error(got, correct)`` (the course's ``|a - b| / max(1e-8, |a| + |b|)``) when ``correct``
    is the exact value printed to ``decimals`` places (off by half a unit of the last one) and ``got`` is within
    a few float64 roundings of the exact value. A printed 0 is taken as exact (ReLU's zeros)."""
    correct = np.abs(np.asarray(correct, np.float64))
    off = 0.5 * 10.0**-decimals + ulps(8) * correct
    bound = np.where(correct == 0, 0.0, off / np.maximum(1e-8, 2 * correct - off))
    return float(bound.max(initial=0.0))


def central_difference_error(
    magnitude: float | np.ndarray,
    n_terms: int,
    x: np.ndarray,
    slope: np.ndarray,
    h: float = 1e-5,
    truncation: float = 0.0,
) -> np.ndarray:
    """A bound on |numeric - exact| for each element of a float64 central difference
    ``sum(dy * (f(x + h e_i) - f(x - h e_i))) / 2h``: the rounding of the outputs that move, at most
    ``gamma(n_terms) * magnitude`` at each end (``magnitude`` = sum_j |dy_j| times the magnitude of the terms
    of output j), over 2h; the rounding of x_i +- h (u |x_i| each) times the slope, over h; and the
    truncation error ``truncation`` (h^2 / 6 times the third derivative; 0 for piecewise-linear layers away
    from their kinks, as these seeded problems are)."""
    u = unit_roundoff(np.float64)
    return 2 * gamma(n_terms, np.float64) * magnitude / (2 * h) + 2 * u * np.abs(x) * np.abs(slope) / h + truncation


def course_rel_error_bound(analytic: np.ndarray, error: np.ndarray) -> float:
    """The largest ``rel_error(analytic, numeric)`` when ``|numeric - analytic| <= error`` elementwise and the
    analytic gradient is exact to a few float64 roundings."""
    a = np.abs(np.asarray(analytic, np.float64))
    error = error + ulps(8) * a
    return float(np.max(error / np.maximum(1e-8, 2 * a - error), initial=0.0))


def moved_magnitude(f, x: np.ndarray, dy: np.ndarray, terms: np.ndarray, h: float = 1e-5) -> np.ndarray:
    """For each element i of x: sum_j |dy_j| ``terms``_j over the outputs j of ``f`` that move when x_i moves by
    +-h (the others are computed the same way at both ends, so they cancel exactly in the difference)."""
    out = np.zeros(np.shape(x))
    for index, plus, minus in each_element_moved(f, x, h):
        out[index] = np.sum(np.where(plus != minus, np.abs(dy) * terms, 0.0))
    return out


def layer_terms(layer, params, x: np.ndarray) -> np.ndarray:
    """The magnitude of each output's terms, for a layer built of conv, affine, ReLU, max-pool and the other
    monotone layers: the layer on |params| and |x| (each is monotone on non-negative values, and 1-Lipschitz
    where it selects). ``params`` may be any tree."""
    return np.asarray(layer(fn.tree.tree_map(np.abs, params), np.abs(x))[0])


def network_rounding_bound(net, input_shape: tuple[int, ...], dtype: np.dtype | type) -> float:
    """A normwise relative bound on how far two evaluations of ``net`` in ``dtype`` with different summation
    orders (funcnn's and ONNX Runtime's) can end apart, as a fraction of the largest output: each layer's
    output element is a sum of n = FLOPs / (2 * outputs) products (``fn.summary``), computed within gamma(n)
    plus 8 roundings (an exp, a square root, a division) of its terms; the errors of the layers add up along
    the network. The layers of these networks scale their output's errors by at most their own gain, and
    their outputs are of the order of the largest output (the norms renormalize), so the terms' magnitude is
    taken as the largest output's. Doubled for two evaluations."""
    rows = fn.summary(net, input_shape).rows
    total = 0
    for row, after in zip(rows, [*rows[1:], None]):
        if after is not None and after.depth > row.depth:
            continue  # a combination: its layers are counted
        outputs = int(np.prod(row.output_shape))
        total += max(1, -(-(row.forward_flops or 0) // (2 * outputs))) + 8
    return 2 * gamma(total, dtype)
