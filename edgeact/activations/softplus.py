"""softplus: ln(1+eˣ), Mish's inner function."""
import numpy as np
import torch.nn.functional as F
from torch import nn

from edgeact.activations._base import ActivationDef, f64
from edgeact.activations.sigmoid import numpy_sigmoid


def numpy_softplus(x):
    return np.logaddexp(0.0, f64(x))


def softplus(x):
    return F.softplus(x)


SPEC = ActivationDef(
    name="softplus", torch_fn=softplus, numpy_fn=numpy_softplus, derivative=numpy_sigmoid,
    bounded_below=True, description="ln(1+eˣ); Mish's inner function", torch_modules=(nn.Softplus,),
    torch_functions={F.softplus: ()},
    # nn.Softplus with another beta or threshold computes something else
    from_torch=lambda m, cls: cls() if (m.beta == 1 and m.threshold == 20) else None,
)
