"""elu: x for x > 0, α(eˣ−1) below."""
import numpy as np
import torch.nn.functional as F
from torch import nn

from edgeact.activations._base import ActivationDef, f64


def elu(x, alpha: float = 1.0):
    return F.elu(x, alpha)


def numpy_elu(x, alpha=1.0):
    x = f64(x)
    return np.where(x > 0, x, alpha * np.expm1(np.minimum(x, 0.0)))


def derivative(x, alpha=1.0):
    x = f64(x)
    return np.where(x > 0, 1.0, alpha * np.exp(np.minimum(x, 0.0)))


SPEC = ActivationDef(
    name="elu", torch_fn=elu, numpy_fn=numpy_elu, derivative=derivative, defaults={"alpha": 1.0},
    bounded_below=True, description="x for x > 0, α(eˣ−1) below", module_name="ELU",
    torch_modules=(nn.ELU,), torch_functions={F.elu: ("alpha",)}, from_torch=lambda m, cls: cls(m.alpha),
)
