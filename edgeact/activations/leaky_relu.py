"""leaky_relu: a small slope for x < 0 against dying ReLU."""
import numpy as np
import torch.nn.functional as F
from torch import nn

from edgeact.activations._base import ActivationDef, f64


def leaky_relu(x, negative_slope: float = 0.01):
    return F.leaky_relu(x, negative_slope)


def numpy_leaky_relu(x, negative_slope=0.01):
    x = f64(x)
    return np.where(x >= 0, x, negative_slope * x)


def derivative(x, negative_slope=0.01):
    return np.where(f64(x) > 0, 1.0, negative_slope)


SPEC = ActivationDef(
    name="leaky_relu", torch_fn=leaky_relu, numpy_fn=numpy_leaky_relu, derivative=derivative,
    defaults={"negative_slope": 0.01}, smooth=False, piecewise_linear=True,
    description="small slope for x < 0 against dying ReLU", aliases=("lrelu",), module_name="LeakyReLU",
    torch_modules=(nn.LeakyReLU,),
    torch_functions={F.leaky_relu: ("negative_slope",)}, from_torch=lambda m, cls: cls(m.negative_slope),
)
