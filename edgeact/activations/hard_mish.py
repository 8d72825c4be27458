"""hard_mish: 0.5·x·clamp(x+2, 0, 2), mish with its gate replaced by a PWL one."""
import numpy as np
import torch

from edgeact.activations._base import ActivationDef, f64


def hard_mish(x):
    """0.5·x·clamp(x + 2, 0, 2): mish with its gate replaced by a PWL one."""
    return 0.5 * x * torch.clamp(x + 2.0, 0.0, 2.0)


def numpy_hard_mish(x):
    x = f64(x)
    return 0.5 * x * np.clip(x + 2.0, 0.0, 2.0)


def derivative(x):
    """d/dx 0.5·x·clamp(x + 2, 0, 2): 0 below −2, x + 1 on [−2, 0], 1 above."""
    x = f64(x)
    return np.where(x < -2, 0.0, np.where(x <= 0, x + 1.0, 1.0))


SPEC = ActivationDef(
    name="hard_mish", torch_fn=hard_mish, numpy_fn=numpy_hard_mish, derivative=derivative,
    bounded_below=True, monotonic=False, smooth=False, stands_in_for="mish",
    description="0.5·x·clamp(x+2, 0, 2): piecewise-quadratic stand-in for mish",
)
