"""relu: max(0, x)."""
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from edgeact.activations._base import ActivationDef, f64

SPEC = ActivationDef(
    name="relu", torch_fn=torch.relu, numpy_fn=lambda x: np.maximum(f64(x), 0.0),
    derivative=lambda x: (f64(x) > 0).astype(np.float64),  # 0 at the kink, as autograd
    bounded_below=True, smooth=False, piecewise_linear=True, description="max(0, x); units can die",
    module_name="ReLU", torch_modules=(nn.ReLU,), torch_functions={F.relu: ()},
)
