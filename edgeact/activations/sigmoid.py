"""sigmoid: 1/(1+e^-x)."""
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from edgeact.activations._base import ActivationDef, f64


def numpy_sigmoid(x):
    x = f64(x)
    # Two branches so that neither exp overflows.
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def derivative(x):
    s = numpy_sigmoid(x)
    return s * (1.0 - s)


SPEC = ActivationDef(
    name="sigmoid", torch_fn=torch.sigmoid, numpy_fn=numpy_sigmoid, derivative=derivative,
    bounded_below=True, bounded_above=True, hard_variant="hard_sigmoid", fixed_output_range=(0.0, 1.0),
    description="1/(1+e^-x); saturates, vanishing gradients in deep stacks",
    aliases=("logistic",), torch_modules=(nn.Sigmoid,), torch_functions={F.sigmoid: ()},
)
