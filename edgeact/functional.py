"""Activation functions on torch tensors, in PyTorch's functional conventions.

Each has a NumPy twin in `edgeact.numpy_functional` (float64, used to build the int8 tables) and an
analytic derivative in `edgeact.derivatives`. Where torch has the op, it is used so that autograd
and speed are PyTorch's own.
"""
from __future__ import annotations


import torch
import torch.nn.functional as F
from torch import Tensor

SELU_ALPHA = 1.6732632423543772848170429916717
SELU_SCALE = 1.0507009873554804934193349852946


def identity(x: Tensor) -> Tensor:
    """The linear 'activation': a deep stack of it collapses to one affine layer."""
    return x


def sigmoid(x: Tensor) -> Tensor:
    return torch.sigmoid(x)


def tanh(x: Tensor) -> Tensor:
    return torch.tanh(x)


def relu(x: Tensor) -> Tensor:
    return torch.relu(x)


def leaky_relu(x: Tensor, negative_slope: float = 0.01) -> Tensor:
    return F.leaky_relu(x, negative_slope)


def prelu(x: Tensor, weight: Tensor | float = 0.25) -> Tensor:
    """PReLU with a learnable slope: one per channel (dim 1) or a single shared one."""
    weight = torch.as_tensor(weight, dtype=x.dtype, device=x.device).reshape(-1)
    return F.prelu(x, weight)


def relu6(x: Tensor) -> Tensor:
    return F.relu6(x)


def selu(x: Tensor) -> Tensor:
    return F.selu(x)


def elu(x: Tensor, alpha: float = 1.0) -> Tensor:
    return F.elu(x, alpha)


def softplus(x: Tensor) -> Tensor:
    return F.softplus(x)


def swish(x: Tensor, beta: Tensor | float = 1.0) -> Tensor:
    """x·sigmoid(βx); β = 1 is SiLU. β may be a learnable tensor."""
    if isinstance(beta, (int, float)) and beta == 1.0:
        return F.silu(x)
    return x * torch.sigmoid(beta * x)


silu = swish


def hard_sigmoid(x: Tensor, alpha: float = 1.0 / 6.0, beta: float = 0.5) -> Tensor:
    """clamp(αx + β, 0, 1); the defaults are PyTorch's / MobileNetV3's relu6(x + 3) / 6 (ONNX's are 0.2, 0.5)."""
    if alpha == 1.0 / 6.0 and beta == 0.5:
        return F.hardsigmoid(x)
    return torch.clamp(alpha * x + beta, 0.0, 1.0)


def hard_tanh(x: Tensor, min_val: float = -1.0, max_val: float = 1.0) -> Tensor:
    return F.hardtanh(x, min_val, max_val)


def hard_swish(x: Tensor) -> Tensor:
    """x·relu6(x + 3)/6: swish with its sigmoid replaced by a PWL gate (MobileNetV3)."""
    return F.hardswish(x)


def mish(x: Tensor) -> Tensor:
    """x·tanh(softplus(x))."""
    return F.mish(x)


def hard_mish(x: Tensor) -> Tensor:
    """0.5·x·clamp(x + 2, 0, 2): mish with its gate replaced by a PWL one."""
    return 0.5 * x * torch.clamp(x + 2.0, 0.0, 2.0)


def gelu(x: Tensor, approximate: str = "none") -> Tensor:
    """x·Φ(x) ('none', erf form) or its tanh approximation ('tanh')."""
    return F.gelu(x, approximate=approximate)


__all__ = [
    "identity", "sigmoid", "tanh", "relu", "leaky_relu", "prelu", "relu6", "selu", "elu", "softplus",
    "swish", "silu", "hard_sigmoid", "hard_tanh", "hard_swish", "mish", "hard_mish", "gelu",
    "SELU_ALPHA", "SELU_SCALE",
]
