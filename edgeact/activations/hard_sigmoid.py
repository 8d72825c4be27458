"""hard_sigmoid: clamp(αx+β, 0, 1), the PWL stand-in for sigmoid."""
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from edgeact.activations._base import ActivationDef, f64


def hard_sigmoid(x: Tensor, alpha: float = 1.0 / 6.0, beta: float = 0.5) -> Tensor:
    """clamp(αx + β, 0, 1); the defaults are PyTorch's / MobileNetV3's relu6(x + 3) / 6 (ONNX's are 0.2, 0.5)."""
    if alpha == 1.0 / 6.0 and beta == 0.5:
        return F.hardsigmoid(x)
    return torch.clamp(alpha * x + beta, 0.0, 1.0)


def derivative(x, alpha=1.0 / 6.0, beta=0.5):
    """α inside, 0 outside and at the knots (F.hardsigmoid's backward; autograd through the clamp that
    the torch function uses for other α, β gives α at the knots — both are one-sided slopes)."""
    y = alpha * f64(x) + beta
    return np.where((y > 0) & (y < 1), alpha, 0.0)


SPEC = ActivationDef(
    name="hard_sigmoid", torch_fn=hard_sigmoid,
    numpy_fn=lambda x, alpha=1.0 / 6.0, beta=0.5: np.clip(alpha * f64(x) + beta, 0.0, 1.0), derivative=derivative,
    defaults={"alpha": 1.0 / 6.0, "beta": 0.5}, bounded_below=True, bounded_above=True,
    smooth=False, piecewise_linear=True, stands_in_for="sigmoid",
    description="clamp(αx+β, 0, 1): PWL stand-in for sigmoid", torch_modules=(nn.Hardsigmoid,),
    torch_functions={F.hardsigmoid: ()},
)
