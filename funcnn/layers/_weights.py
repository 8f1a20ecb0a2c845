"""The layers' weight initialization: He or fixed-scale normal weights and zero biases."""

from __future__ import annotations

import numpy as np

from funcnn.core import Shape, WeightScale


def weight_std(name: str, weight_scale: WeightScale, fan_in: int) -> float:
    """The standard deviation of a weight matrix: ``sqrt(2 / fan_in)`` for ``"he"`` (Kaiming, for
    ReLU nets), or ``weight_scale`` itself when it is a number (the course's ``weight_scale``)."""
    if weight_scale == "he":
        return float(np.sqrt(2.0 / fan_in))
    if isinstance(weight_scale, str) or not weight_scale > 0:
        raise ValueError(f"{name}: weight_scale must be 'he' or a positive number, got {weight_scale!r}")
    return float(weight_scale)


def weights_and_bias(
    rng: np.random.Generator, w_shape: Shape, bias_size: int, dtype: np.dtype, std: float
) -> dict[str, np.ndarray]:
    """``{"w": normal(0, std) of w_shape, "b": zeros(bias_size)}`` in ``dtype``."""
    return {"w": (std * rng.standard_normal(w_shape)).astype(dtype), "b": np.zeros(bias_size, dtype=dtype)}
