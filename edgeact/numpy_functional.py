"""NumPy twins of `edgeact.functional`, in float64.

These are the float references the integer tables are built from: written from the formulas
(not by calling torch), so a test comparing them with torch compares two implementations.
"""
from __future__ import annotations

import numpy as np
from scipy.special import erf

from edgeact.errors import UnsupportedError
from edgeact.functional import SELU_ALPHA, SELU_SCALE


def _f64(x) -> np.ndarray:
    return np.asarray(x, dtype=np.float64)


def identity(x):
    return _f64(x).copy()


def sigmoid(x):
    x = _f64(x)
    # Two branches so that neither exp overflows.
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def tanh(x):
    return np.tanh(_f64(x))


def relu(x):
    return np.maximum(_f64(x), 0.0)


def leaky_relu(x, negative_slope=0.01):
    x = _f64(x)
    return np.where(x >= 0, x, negative_slope * x)


def prelu(x, weight=0.25, channel_axis: int = 1):
    """Per-channel slopes broadcast along `channel_axis` (dim 1 as in torch); a scalar is shared."""
    x = _f64(x)
    w = _f64(weight)
    if w.size > 1:
        shape = [1] * x.ndim
        shape[channel_axis] = w.size
        w = w.reshape(shape)
    return np.where(x >= 0, x, w * x)


def relu6(x):
    return np.clip(_f64(x), 0.0, 6.0)


def elu(x, alpha=1.0):
    x = _f64(x)
    return np.where(x > 0, x, alpha * np.expm1(np.minimum(x, 0.0)))


def selu(x):
    return SELU_SCALE * elu(x, SELU_ALPHA)


def softplus(x):
    x = _f64(x)
    return np.logaddexp(0.0, x)


def swish(x, beta=1.0):
    x = _f64(x)
    return x * sigmoid(beta * x)


silu = swish


def hard_sigmoid(x, alpha=1.0 / 6.0, beta=0.5):
    return np.clip(alpha * _f64(x) + beta, 0.0, 1.0)


def hard_tanh(x, min_val=-1.0, max_val=1.0):
    return np.clip(_f64(x), min_val, max_val)


def hard_swish(x):
    x = _f64(x)
    return x * np.clip(x + 3.0, 0.0, 6.0) / 6.0


def mish(x):
    x = _f64(x)
    return x * np.tanh(softplus(x))


def hard_mish(x):
    x = _f64(x)
    return 0.5 * x * np.clip(x + 2.0, 0.0, 2.0)


GELU_APPROXIMATIONS = ("none", "tanh")


def check_gelu_approximate(approximate) -> None:
    """torch rejects other values; an unknown one must not silently become the erf form here."""
    if approximate not in GELU_APPROXIMATIONS:
        raise UnsupportedError(f"gelu approximate={approximate!r} is not a GELU form; use 'none' (erf) or 'tanh'")


def gelu(x, approximate="none"):
    check_gelu_approximate(approximate)
    x = _f64(x)
    if approximate == "tanh":
        return 0.5 * x * (1.0 + np.tanh(np.sqrt(2.0 / np.pi) * (x + 0.044715 * x**3)))
    return 0.5 * x * (1.0 + erf(x / np.sqrt(2.0)))
