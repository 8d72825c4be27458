"""relu6: min(max(0, x), 6), the int8-friendly fixed range."""
import numpy as np
import torch.nn.functional as F
from torch import nn

from edgeact.activations._base import ActivationDef, f64


def derivative(x):
    x = f64(x)
    return ((x > 0) & (x < 6)).astype(np.float64)


SPEC = ActivationDef(
    name="relu6", torch_fn=F.relu6, numpy_fn=lambda x: np.clip(f64(x), 0.0, 6.0), derivative=derivative,
    bounded_below=True, bounded_above=True, smooth=False, piecewise_linear=True,
    description="min(max(0, x), 6); int8-friendly fixed range", module_name="ReLU6", torch_modules=(nn.ReLU6,),
)
