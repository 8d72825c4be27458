"""prelu: leaky ReLU with a learnable slope, shared or per channel."""
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from edgeact.activations._base import Activation, ActivationDef, f64


def prelu(x: Tensor, weight: Tensor | float = 0.25) -> Tensor:
    """PReLU with a learnable slope: one per channel (dim 1) or a single shared one."""
    weight = torch.as_tensor(weight, dtype=x.dtype, device=x.device).reshape(-1)
    return F.prelu(x, weight)


def _slopes(x, weight, channel_axis):
    w = f64(weight)
    if w.size > 1:
        shape = [1] * x.ndim
        shape[channel_axis] = w.size
        w = w.reshape(shape)
    return w


def numpy_prelu(x, weight=0.25, channel_axis: int = 1):
    """Per-channel slopes broadcast along `channel_axis` (dim 1 as in torch); a scalar is shared."""
    x = f64(x)
    return np.where(x >= 0, x, _slopes(x, weight, channel_axis) * x)


def derivative(x, weight=0.25, channel_axis: int = 1):
    x = f64(x)
    return np.where(x > 0, 1.0, _slopes(x, weight, channel_axis) * np.ones_like(x))


class PReLU(Activation):
    """Leaky ReLU with a learnable slope: one shared (num_parameters=1) or one per channel."""

    activation_name = "prelu"

    def __init__(self, num_parameters: int = 1, init: float = 0.25):
        super().__init__()
        self.weight = nn.Parameter(torch.full((num_parameters,), float(init)))

    def forward(self, x):
        return prelu(x, self.weight)

    def bound(self):
        from edgeact.activations import bind

        w = self.weight.detach().cpu().double().numpy()
        return bind("prelu", weight=w if w.size > 1 else float(w[0]))

    def extra_repr(self) -> str:
        return f"num_parameters={self.weight.numel()}"


PReLU.__module__ = "edgeact.nn.activations"


def _from_torch(module: nn.PReLU, cls) -> PReLU:
    m = cls(module.weight.numel())
    m.weight.data.copy_(module.weight.data)
    return m


SPEC = ActivationDef(
    name="prelu", torch_fn=prelu, numpy_fn=numpy_prelu, derivative=derivative, defaults={"weight": 0.25},
    smooth=False, piecewise_linear=True, learnable=("weight",),
    description="leaky ReLU with a learnable slope, shared or per channel", module=PReLU,
    torch_modules=(nn.PReLU,), from_torch=_from_torch, recognize=(),  # has a parameter: never recognized
)
