"""identity: the linear 'activation'; a deep stack of it collapses to one affine layer."""
import numpy as np
from torch import nn

from edgeact.activations._base import ActivationDef, f64


def identity(x):
    """The linear 'activation': a deep stack of it collapses to one affine layer."""
    return x


SPEC = ActivationDef(
    name="identity", torch_fn=identity, numpy_fn=lambda x: f64(x).copy(), derivative=lambda x: np.ones_like(f64(x)),
    smooth=True, piecewise_linear=True, description="linear; stacks collapse to one layer",
    aliases=("linear", "none"), torch_modules=(nn.Identity,),
)
