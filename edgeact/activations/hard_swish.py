"""hard_swish: x·relu6(x+3)/6, swish with its sigmoid replaced by a PWL gate (MobileNetV3)."""
import numpy as np
import torch.nn.functional as F
from torch import nn

from edgeact.activations._base import ActivationDef, f64


def hard_swish(x):
    """x·relu6(x + 3)/6: swish with its sigmoid replaced by a PWL gate (MobileNetV3)."""
    return F.hardswish(x)


def numpy_hard_swish(x):
    x = f64(x)
    return x * np.clip(x + 3.0, 0.0, 6.0) / 6.0


def derivative(x):
    """(2x + 3)/6 on (−3, 3), 0 at and below −3, 1 at and above 3 (PyTorch's hardswish_backward)."""
    x = f64(x)
    return np.where(x <= -3, 0.0, np.where(x < 3, (2.0 * x + 3.0) / 6.0, 1.0))


SPEC = ActivationDef(
    name="hard_swish", torch_fn=hard_swish, numpy_fn=numpy_hard_swish, derivative=derivative,
    bounded_below=True, monotonic=False, smooth=False, stands_in_for="swish",
    description="x·relu6(x+3)/6: piecewise-quadratic stand-in for swish (MobileNetV3)",
    aliases=("hswish",), torch_modules=(nn.Hardswish,), torch_functions={F.hardswish: ()},
)
