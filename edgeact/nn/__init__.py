"""edgeact's modules: activations in PyTorch's conventions, and QuantAct (int8 activation)."""
from edgeact.nn.activations import (
    ELU, GELU, SELU, Activation, HardMish, HardSigmoid, HardSwish, HardTanh, Identity, LeakyReLU, Mish,
    PReLU, ReLU, ReLU6, Sigmoid, SiLU, Softplus, Swish, Tanh, from_torch, make_activation,
)
from edgeact.nn.quant_act import QuantAct, SharedQuant

__all__ = [
    "Activation", "Identity", "Sigmoid", "Tanh", "ReLU", "LeakyReLU", "PReLU", "ReLU6", "SELU", "ELU",
    "Softplus", "Swish", "SiLU", "HardSigmoid", "HardTanh", "HardSwish", "Mish", "HardMish", "GELU",
    "make_activation", "from_torch", "QuantAct", "SharedQuant",
]


def __getattr__(name: str):
    """Modules of activations registered after import (`edgeact.activations.register`)."""
    from edgeact.nn import activations

    return getattr(activations, name)
