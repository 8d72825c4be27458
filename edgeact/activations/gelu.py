"""gelu: x·Φ(x) (erf form) or its tanh approximation."""
import numpy as np
import torch.nn.functional as F
from torch import nn

from edgeact.activations._base import ActivationDef, f64
from edgeact.errors import UnsupportedError

GELU_APPROXIMATIONS = ("none", "tanh")


def check_gelu_approximate(approximate) -> None:
    """torch rejects other values; an unknown one must not silently become the erf form here."""
    if approximate not in GELU_APPROXIMATIONS:
        raise UnsupportedError(f"gelu approximate={approximate!r} is not a GELU form; use 'none' (erf) or 'tanh'")


def _erf(x):
    """scipy's erf, imported on first use: importing scipy.special would cost every process that imports edgeact."""
    from scipy.special import erf

    return erf(x)


def gelu(x, approximate: str = "none"):
    """x·Φ(x) ('none', erf form) or its tanh approximation ('tanh')."""
    return F.gelu(x, approximate=approximate)


def numpy_gelu(x, approximate="none"):
    check_gelu_approximate(approximate)
    x = f64(x)
    if approximate == "tanh":
        return 0.5 * x * (1.0 + np.tanh(np.sqrt(2.0 / np.pi) * (x + 0.044715 * x**3)))
    return 0.5 * x * (1.0 + _erf(x / np.sqrt(2.0)))


def derivative(x, approximate="none"):
    check_gelu_approximate(approximate)
    x = f64(x)
    if approximate == "tanh":
        k = np.sqrt(2.0 / np.pi)
        u = k * (x + 0.044715 * x**3)
        t = np.tanh(u)
        return 0.5 * (1.0 + t) + 0.5 * x * (1.0 - t**2) * k * (1.0 + 3 * 0.044715 * x**2)
    cdf = 0.5 * (1.0 + _erf(x / np.sqrt(2.0)))
    pdf = np.exp(-0.5 * x**2) / np.sqrt(2.0 * np.pi)
    return cdf + x * pdf


SPEC = ActivationDef(
    name="gelu", torch_fn=gelu, numpy_fn=numpy_gelu, derivative=derivative, defaults={"approximate": "none"},
    bounded_below=True, monotonic=False, description="x·Φ(x) (erf form) or its tanh approximation",
    module_name="GELU", torch_modules=(nn.GELU,),
    torch_functions={F.gelu: ()}, from_torch=lambda m, cls: cls(m.approximate),
    recognize=({"approximate": "none"}, {"approximate": "tanh"}),
)
