"""mish: x·tanh(softplus(x))."""
import numpy as np
import torch.nn.functional as F
from torch import nn

from edgeact.activations._base import ActivationDef, f64
from edgeact.activations.softplus import numpy_softplus
from edgeact.activations.swish import numpy_swish


def mish(x):
    """x·tanh(softplus(x))."""
    return F.mish(x)


def numpy_mish(x):
    x = f64(x)
    return x * np.tanh(numpy_softplus(x))


def derivative(x):
    """The seed's form: f'(x) = sech²(softplus(x))·x·σ(x) + f(x)/x = Δ(x)·swish(x) + f(x)/x.

    f(x)/x is written as tanh(softplus(x)), which is the same for x ≠ 0 and the limit at x = 0.
    """
    x = f64(x)
    sp = numpy_softplus(x)
    sech2 = 1.0 - np.tanh(sp) ** 2
    return sech2 * numpy_swish(x) + np.tanh(sp)


SPEC = ActivationDef(
    name="mish", torch_fn=mish, numpy_fn=numpy_mish, derivative=derivative,
    bounded_below=True, monotonic=False, hard_variant="hard_mish", description="x·tanh(softplus(x))",
    torch_modules=(nn.Mish,), torch_functions={F.mish: ()},
)
