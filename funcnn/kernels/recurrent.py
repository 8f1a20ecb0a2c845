"""The LSTM and GRU gate arithmetic of one time step, forward and backward, each one fused pass over ``(N, H)``.

The matrix products (the input projection of all steps, ``h @ wh`` of each step) stay in BLAS; these
kernels do all the gate arithmetic around them in one pass each. Their loops have no calls: float32's
tanh is a rational function (:func:`tanh`), so LLVM vectorises the whole pass (16 lanes with AVX-512);
float64 keeps libm's tanh, a scalar call, so its LSTM forward takes NumPy's SIMD tanh first and then
:func:`lstm_gates_from_tanh`. Arrays may be strided views (one time step of an ``(N, T, ...)`` array) but
are contiguous along H (they vectorise when each row is C-contiguous); outputs are written in place.
LSTM gates are in the course's order i, f, o, g; GRU gates in PyTorch's order r, z, n.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numba import types
from numba.extending import overload

from funcnn.kernels._jit import jit

# Eigen's float32 tanh (generic_fast_tanh_float): a 13/6-degree rational interpolant on [-9, 9], accurate to a
# couple of ulp there; outside it tanh rounds to +-1 in float32. Odd numerator and even denominator in x^2.
_NUMERATOR = tuple(
    np.float32(c)
    for c in (
        -2.76076847742355e-16, 2.00018790482477e-13, -8.60467152213735e-11, 5.12229709037114e-08,
        1.48572235717979e-05, 6.37261928875436e-04, 4.89352455891786e-03,
    )
)  # fmt: skip
_DENOMINATOR = tuple(
    np.float32(c) for c in (1.19825839466702e-06, 1.18534705686654e-04, 2.26843463243900e-03, 4.89352518554385e-03)
)
_A13, _A11, _A9, _A7, _A5, _A3, _A1 = _NUMERATOR
_B6, _B4, _B2, _B0 = _DENOMINATOR
_NINE = np.float32(9.0)
_HALF = np.float32(0.5)
_ONE = np.float32(1.0)  # an int literal would make float32 arithmetic float64


def tanh(v: Any) -> Any:
    """tanh in a kernel: the rational interpolant for float32 (no call, so the loop vectorises), libm's otherwise."""
    return np.tanh(v)


def _rational_tanh(v: Any) -> Any:  # pragma: no cover - compiled
    x = _NINE if v > _NINE else (-_NINE if v < -_NINE else v)  # a NaN stays NaN
    x2 = x * x
    p = ((((((_A13 * x2 + _A11) * x2 + _A9) * x2 + _A7) * x2 + _A5) * x2 + _A3) * x2 + _A1) * x
    q = ((_B6 * x2 + _B4) * x2 + _B2) * x2 + _B0
    t = p / q
    return _ONE if t > _ONE else (-_ONE if t < -_ONE else t)  # near +-9 the interpolant passes 1 by an ulp


def _libm_tanh(v: Any) -> Any:  # pragma: no cover - compiled
    return np.tanh(v)


@overload(tanh)
def _tanh_for(v: Any) -> Any:
    return _rational_tanh if v == types.float32 else _libm_tanh


@jit()
def tanh_kernel(a: np.ndarray, out: np.ndarray) -> None:  # pragma: no cover - compiled
    """``out = tanh(a)`` elementwise with the kernels' :func:`tanh`, for tests (1-D arrays)."""
    for i in range(a.shape[0]):
        out[i] = tanh(a[i])


@jit()
def lstm_forward_step(
    hw: np.ndarray,
    xw: np.ndarray,
    prev_c: np.ndarray,
    gates: np.ndarray,
    next_c: np.ndarray,
    tanh_c: np.ndarray,
    next_h: np.ndarray,
) -> None:  # pragma: no cover - compiled
    """From the pre-activations ``a = hw + xw = [a_i, a_f, a_o, a_g]`` (N, 4H) writes the gates ``[i, f, o, g]``
    (``sigmoid(a) = (1 + tanh(a / 2)) / 2``), ``next_c = f * prev_c + i * g``, ``tanh_c = tanh(next_c)``
    and ``next_h = o * tanh_c``."""
    n, h = prev_c.shape
    for row in range(n):
        hi, hf, ho, hg = hw[row, :h], hw[row, h : 2 * h], hw[row, 2 * h : 3 * h], hw[row, 3 * h :]
        xi, xf, xo, xg = xw[row, :h], xw[row, h : 2 * h], xw[row, 2 * h : 3 * h], xw[row, 3 * h :]
        gi, gf, go, gg = gates[row, :h], gates[row, h : 2 * h], gates[row, 2 * h : 3 * h], gates[row, 3 * h :]
        pc, nc, tcs, nh = prev_c[row], next_c[row], tanh_c[row], next_h[row]
        for j in range(h):
            i = _HALF * tanh(_HALF * (hi[j] + xi[j])) + _HALF
            f = _HALF * tanh(_HALF * (hf[j] + xf[j])) + _HALF
            o = _HALF * tanh(_HALF * (ho[j] + xo[j])) + _HALF
            g = tanh(hg[j] + xg[j])
            gi[j], gf[j], go[j], gg[j] = i, f, o, g
            c = f * pc[j] + i * g
            tc = tanh(c)
            nc[j], tcs[j], nh[j] = c, tc, o * tc


@jit()
def lstm_gates_from_tanh(
    t: np.ndarray, prev_c: np.ndarray, gates: np.ndarray, next_c: np.ndarray
) -> None:  # pragma: no cover - compiled
    """float64's LSTM step after NumPy's SIMD tanh (libm's is scalar): from ``t = tanh([a_i / 2, a_f / 2,
    a_o / 2, a_g])`` (N, 4H) writes the gates ``[i, f, o, g]`` and ``next_c = f * prev_c + i * g``."""
    n, h = prev_c.shape
    for row in range(n):
        ti, tf, to, tg = t[row, :h], t[row, h : 2 * h], t[row, 2 * h : 3 * h], t[row, 3 * h :]
        gi, gf, go, gg = gates[row, :h], gates[row, h : 2 * h], gates[row, 2 * h : 3 * h], gates[row, 3 * h :]
        pc, nc = prev_c[row], next_c[row]
        for j in range(h):
            i, f, o, g = _HALF * ti[j] + _HALF, _HALF * tf[j] + _HALF, _HALF * to[j] + _HALF, tg[j]
            gi[j], gf[j], go[j], gg[j] = i, f, o, g
            nc[j] = f * pc[j] + i * g


@jit()
def lstm_backward_step(
    gates: np.ndarray,
    prev_c: np.ndarray,
    tanh_c: np.ndarray,
    dh_out: np.ndarray,
    dh_rec: np.ndarray,
    dc: np.ndarray,
    da: np.ndarray,
    dprev_c: np.ndarray,
) -> None:  # pragma: no cover - compiled
    """From the cotangent of ``next_h = o * tanh_c`` (``dh_out + dh_rec``) and of ``next_c`` (``dc``),
    writes ``da`` (N, 4H), the pre-activations' cotangent, and ``dprev_c``, the cotangent of ``prev_c``."""
    n, h = prev_c.shape
    for row in range(n):
        gi, gf, go, gg = gates[row, :h], gates[row, h : 2 * h], gates[row, 2 * h : 3 * h], gates[row, 3 * h :]
        di, df, do, dg = da[row, :h], da[row, h : 2 * h], da[row, 2 * h : 3 * h], da[row, 3 * h :]
        pc, tcs, dho, dhr, dcr, dpc = prev_c[row], tanh_c[row], dh_out[row], dh_rec[row], dc[row], dprev_c[row]
        for j in range(h):
            i, f, o, g = gi[j], gf[j], go[j], gg[j]
            tc = tcs[j]
            dh = dho[j] + dhr[j]
            dcj = dcr[j] + dh * o * (_ONE - tc * tc)
            di[j] = dcj * g * i * (_ONE - i)
            df[j] = dcj * pc[j] * f * (_ONE - f)
            do[j] = dh * tc * o * (_ONE - o)
            dg[j] = dcj * i * (_ONE - g * g)
            dpc[j] = dcj * f


@jit()
def gru_forward_step(
    xa: np.ndarray, ha: np.ndarray, bh: np.ndarray, prev_h: np.ndarray, gates: np.ndarray, next_h: np.ndarray
) -> None:  # pragma: no cover - compiled
    """PyTorch's GRU: ``xa = x wx + bx``, ``ha = prev_h wh`` (N, 3H), to which this adds ``bh`` in place;
    ``r, z = sigmoid(xa + ha)``, ``n = tanh(xa_n + r * ha_n)``, ``next_h = (1 - z) * n + z * prev_h``.
    ``gates`` gets ``[r, z, n]``."""
    rows, h = prev_h.shape
    br, bz, bn = bh[:h], bh[h : 2 * h], bh[2 * h :]
    for row in range(rows):
        xr, xz, xn = xa[row, :h], xa[row, h : 2 * h], xa[row, 2 * h :]
        hr, hz, hn = ha[row, :h], ha[row, h : 2 * h], ha[row, 2 * h :]
        gr, gz, gn = gates[row, :h], gates[row, h : 2 * h], gates[row, 2 * h :]
        ph, nh = prev_h[row], next_h[row]
        for j in range(h):
            ar, az, an = hr[j] + br[j], hz[j] + bz[j], hn[j] + bn[j]
            hr[j], hz[j], hn[j] = ar, az, an
            r = _HALF * tanh(_HALF * (xr[j] + ar)) + _HALF
            z = _HALF * tanh(_HALF * (xz[j] + az)) + _HALF
            nn = tanh(xn[j] + r * an)
            gr[j], gz[j], gn[j] = r, z, nn
            nh[j] = (_ONE - z) * nn + z * ph[j]


@jit()
def gru_backward_step(
    gates: np.ndarray,
    ha: np.ndarray,
    prev_h: np.ndarray,
    dh_out: np.ndarray,
    dh_rec: np.ndarray,
    dxa: np.ndarray,
    dha: np.ndarray,
    dprev_h: np.ndarray,
) -> None:  # pragma: no cover - compiled
    """From the cotangent of ``next_h`` (``dh_out + dh_rec``), writes those of ``xa`` and ``ha`` (N, 3H)
    and the direct part ``z * dh`` of ``prev_h``'s (the path through ``ha`` is added by the caller)."""
    rows, h = prev_h.shape
    for row in range(rows):
        gr, gz, gn = gates[row, :h], gates[row, h : 2 * h], gates[row, 2 * h :]
        hn = ha[row, 2 * h :]
        xr, xz, xn = dxa[row, :h], dxa[row, h : 2 * h], dxa[row, 2 * h :]
        hr, hz, hnd = dha[row, :h], dha[row, h : 2 * h], dha[row, 2 * h :]
        ph, dho, dhr, dph = prev_h[row], dh_out[row], dh_rec[row], dprev_h[row]
        for j in range(h):
            r, z, nn = gr[j], gz[j], gn[j]
            dh = dho[j] + dhr[j]
            dan = dh * (_ONE - z) * (_ONE - nn * nn)
            daz = dh * (ph[j] - nn) * z * (_ONE - z)
            dar = dan * hn[j] * r * (_ONE - r)
            xr[j], xz[j], xn[j] = dar, daz, dan
            hr[j], hz[j], hnd[j] = dar, daz, dan * r
            dph[j] = dh * z
