"""hard_tanh: clamp(x, −1, 1), the PWL stand-in for tanh."""
import numpy as np
import torch.nn.functional as F
from torch import nn

from edgeact.activations._base import ActivationDef, f64


def hard_tanh(x, min_val: float = -1.0, max_val: float = 1.0):
    return F.hardtanh(x, min_val, max_val)


def derivative(x, min_val=-1.0, max_val=1.0):
    x = f64(x)
    return ((x > min_val) & (x < max_val)).astype(np.float64)


SPEC = ActivationDef(
    name="hard_tanh", torch_fn=hard_tanh,
    numpy_fn=lambda x, min_val=-1.0, max_val=1.0: np.clip(f64(x), min_val, max_val), derivative=derivative,
    defaults={"min_val": -1.0, "max_val": 1.0}, bounded_below=True, bounded_above=True,
    smooth=False, piecewise_linear=True, stands_in_for="tanh", range_of_interest=(-4.0, 4.0),
    description="clamp(x, −1, 1): PWL stand-in for tanh", torch_modules=(nn.Hardtanh,),
    torch_functions={F.hardtanh: ("min_val", "max_val")},
    from_torch=lambda m, cls: cls(m.min_val, m.max_val),
)
