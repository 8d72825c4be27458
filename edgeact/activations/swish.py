"""swish: x·σ(βx) (SiLU at β = 1), β fixed or learnable."""
import torch
import torch.nn.functional as F
from torch import nn

from edgeact.activations._base import Activation, ActivationDef, f64
from edgeact.activations.sigmoid import numpy_sigmoid


def swish(x, beta=1.0):
    """x·sigmoid(βx); β = 1 is SiLU. β may be a learnable tensor."""
    if isinstance(beta, (int, float)) and beta == 1.0:
        return F.silu(x)
    return x * torch.sigmoid(beta * x)


def numpy_swish(x, beta=1.0):
    x = f64(x)
    return x * numpy_sigmoid(beta * x)


def derivative(x, beta=1.0):
    """d/dx x·σ(βx) = σ(βx) + βx·σ(βx)(1 − σ(βx))."""
    x = f64(x)
    s = numpy_sigmoid(beta * x)
    return s + beta * x * s * (1.0 - s)


class Swish(Activation):
    """x·sigmoid(βx); β fixed (default 1: SiLU) or learnable."""

    activation_name = "swish"

    def __init__(self, beta: float = 1.0, learnable: bool = False):
        super().__init__()
        if learnable:
            self.beta = nn.Parameter(torch.tensor(float(beta)))
        else:
            self.register_buffer("beta", torch.tensor(float(beta)))

    def forward(self, x):
        return x * torch.sigmoid(self.beta * x)

    def bound(self):
        from edgeact.activations import bind

        return bind("swish", beta=float(self.beta.detach()))

    def extra_repr(self) -> str:
        return f"beta={float(self.beta):.4g}, learnable={isinstance(self.beta, nn.Parameter)}"


Swish.__module__ = "edgeact.nn.activations"

SPEC = ActivationDef(
    name="swish", torch_fn=swish, numpy_fn=numpy_swish, derivative=derivative, defaults={"beta": 1.0},
    bounded_below=True, monotonic=False, hard_variant="hard_swish", learnable=("beta",),
    description="x·σ(βx) (SiLU at β=1)", aliases=("silu",), module=Swish, module_aliases=("SiLU",),
    torch_modules=(nn.SiLU,), torch_functions={F.silu: ()},
)
