"""tanh: the zero-centred sigmoid."""
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from edgeact.activations._base import ActivationDef, f64

SPEC = ActivationDef(
    name="tanh", torch_fn=torch.tanh, numpy_fn=lambda x: np.tanh(f64(x)),
    derivative=lambda x: 1.0 - np.tanh(f64(x)) ** 2,
    bounded_below=True, bounded_above=True, range_of_interest=(-4.0, 4.0), hard_variant="hard_tanh",
    fixed_output_range=(-1.0, 1.0),
    description="zero-centred sigmoid; saturates", torch_modules=(nn.Tanh,), torch_functions={F.tanh: ()},
)
