"""Analytic derivatives of the activations (NumPy, float64), checked against autograd in the tests.

At a kink (ReLU at 0, ReLU6 at 0 and 6, …) the value is the one PyTorch's autograd uses, so
the plots and the tests agree with training.
"""
from __future__ import annotations

import numpy as np
from scipy.special import erf

from edgeact import numpy_functional as nf
from edgeact.functional import SELU_ALPHA, SELU_SCALE


def _f64(x):
    return np.asarray(x, dtype=np.float64)


def identity(x):
    return np.ones_like(_f64(x))


def sigmoid(x):
    s = nf.sigmoid(x)
    return s * (1.0 - s)


def tanh(x):
    return 1.0 - np.tanh(_f64(x)) ** 2


def relu(x):
    return (_f64(x) > 0).astype(np.float64)


def leaky_relu(x, negative_slope=0.01):
    return np.where(_f64(x) > 0, 1.0, negative_slope)


def prelu(x, weight=0.25, channel_axis: int = 1):
    x = _f64(x)
    w = _f64(weight)
    if w.size > 1:
        shape = [1] * x.ndim
        shape[channel_axis] = w.size
        w = w.reshape(shape)
    return np.where(x > 0, 1.0, w * np.ones_like(x))


def relu6(x):
    x = _f64(x)
    return ((x > 0) & (x < 6)).astype(np.float64)


def elu(x, alpha=1.0):
    x = _f64(x)
    return np.where(x > 0, 1.0, alpha * np.exp(np.minimum(x, 0.0)))


def selu(x):
    return SELU_SCALE * elu(x, SELU_ALPHA)


def softplus(x):
    return nf.sigmoid(x)


def swish(x, beta=1.0):
    """d/dx x·σ(βx) = σ(βx) + βx·σ(βx)(1 − σ(βx))."""
    x = _f64(x)
    s = nf.sigmoid(beta * x)
    return s + beta * x * s * (1.0 - s)


silu = swish


def hard_sigmoid(x, alpha=1.0 / 6.0, beta=0.5):
    """α inside, 0 outside and at the knots (F.hardsigmoid's backward; autograd through the clamp that
    edgeact.functional uses for other α, β gives α at the knots — both are one-sided slopes)."""
    y = alpha * _f64(x) + beta
    return np.where((y > 0) & (y < 1), alpha, 0.0)


def hard_tanh(x, min_val=-1.0, max_val=1.0):
    x = _f64(x)
    return ((x > min_val) & (x < max_val)).astype(np.float64)


def hard_swish(x):
    """(2x + 3)/6 on (−3, 3), 0 at and below −3, 1 at and above 3 (PyTorch's hardswish_backward)."""
    x = _f64(x)
    return np.where(x <= -3, 0.0, np.where(x < 3, (2.0 * x + 3.0) / 6.0, 1.0))


def mish(x):
    """The seed's form: f'(x) = sech²(softplus(x))·x·σ(x) + f(x)/x = Δ(x)·swish(x) + f(x)/x.

    f(x)/x is written as tanh(softplus(x)), which is the same for x ≠ 0 and the limit at x = 0.
    """
    x = _f64(x)
    sp = nf.softplus(x)
    sech2 = 1.0 - np.tanh(sp) ** 2
    return sech2 * nf.swish(x) + np.tanh(sp)


def hard_mish(x):
    """d/dx 0.5·x·clamp(x + 2, 0, 2): 0 below −2, x + 1 on [−2, 0], 1 above."""
    x = _f64(x)
    return np.where(x < -2, 0.0, np.where(x <= 0, x + 1.0, 1.0))


def gelu(x, approximate="none"):
    nf.check_gelu_approximate(approximate)
    x = _f64(x)
    if approximate == "tanh":
        k = np.sqrt(2.0 / np.pi)
        u = k * (x + 0.044715 * x**3)
        t = np.tanh(u)
        return 0.5 * (1.0 + t) + 0.5 * x * (1.0 - t**2) * k * (1.0 + 3 * 0.044715 * x**2)
    cdf = 0.5 * (1.0 + erf(x / np.sqrt(2.0)))
    pdf = np.exp(-0.5 * x**2) / np.sqrt(2.0 * np.pi)
    return cdf + x * pdf
