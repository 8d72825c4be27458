"""Activation modules in PyTorch's conventions (`edgeact.nn.HardMish()`, `edgeact.nn.PReLU(16)`).

Each knows its registry name and can hand its current parameters to the table builder through
`bound()`, which is how a learnable PReLU slope or Swish β reaches the int8 table.
"""
from __future__ import annotations

import torch
from torch import nn

from edgeact import functional as F
from edgeact.activations import BoundActivation, bind


class Activation(nn.Module):
    """Base: a registry activation with fixed (non-learnable) parameters."""

    activation_name = "identity"

    def __init__(self, **params):
        super().__init__()
        self.params = params

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return getattr(F, self.activation_name)(x, **self.params)

    def bound(self) -> BoundActivation:
        return bind(self.activation_name, **self.params)

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in self.params.items())


def _simple(class_name: str, name: str, doc: str):
    cls = type(class_name, (Activation,), {"activation_name": name, "__doc__": doc})
    cls.__module__ = __name__
    return cls


Identity = _simple("Identity", "identity", "y = x (the linear activation).")
Sigmoid = _simple("Sigmoid", "sigmoid", "1 / (1 + exp(−x)).")
Tanh = _simple("Tanh", "tanh", "tanh(x).")
ReLU = _simple("ReLU", "relu", "max(0, x).")
ReLU6 = _simple("ReLU6", "relu6", "min(max(0, x), 6).")
SELU = _simple("SELU", "selu", "Scaled ELU (self-normalising).")
Softplus = _simple("Softplus", "softplus", "ln(1 + exp(x)).")
HardSwish = _simple("HardSwish", "hard_swish", "x·relu6(x + 3)/6 (MobileNetV3).")
Mish = _simple("Mish", "mish", "x·tanh(softplus(x)).")
HardMish = _simple("HardMish", "hard_mish", "0.5·x·clamp(x + 2, 0, 2).")


class LeakyReLU(Activation):
    activation_name = "leaky_relu"

    def __init__(self, negative_slope: float = 0.01):
        super().__init__(negative_slope=negative_slope)


class ELU(Activation):
    activation_name = "elu"

    def __init__(self, alpha: float = 1.0):
        super().__init__(alpha=alpha)


class HardSigmoid(Activation):
    activation_name = "hard_sigmoid"

    def __init__(self, alpha: float = 1.0 / 6.0, beta: float = 0.5):
        super().__init__(alpha=alpha, beta=beta)


class HardTanh(Activation):
    activation_name = "hard_tanh"

    def __init__(self, min_val: float = -1.0, max_val: float = 1.0):
        super().__init__(min_val=min_val, max_val=max_val)


class GELU(Activation):
    activation_name = "gelu"

    def __init__(self, approximate: str = "none"):
        super().__init__(approximate=approximate)


class PReLU(Activation):
    """Leaky ReLU with a learnable slope: one shared (num_parameters=1) or one per channel."""

    activation_name = "prelu"

    def __init__(self, num_parameters: int = 1, init: float = 0.25):
        super().__init__()
        self.weight = nn.Parameter(torch.full((num_parameters,), float(init)))

    def forward(self, x):
        return F.prelu(x, self.weight)

    def bound(self) -> BoundActivation:
        w = self.weight.detach().cpu().double().numpy()
        return bind("prelu", weight=w if w.size > 1 else float(w[0]))

    def extra_repr(self) -> str:
        return f"num_parameters={self.weight.numel()}"


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

    def bound(self) -> BoundActivation:
        return bind("swish", beta=float(self.beta.detach()))

    def extra_repr(self) -> str:
        return f"beta={float(self.beta):.4g}, learnable={isinstance(self.beta, nn.Parameter)}"


SiLU = Swish

_BY_NAME = {
    "identity": Identity, "sigmoid": Sigmoid, "tanh": Tanh, "relu": ReLU, "relu6": ReLU6, "selu": SELU,
    "softplus": Softplus, "hard_swish": HardSwish, "mish": Mish, "hard_mish": HardMish,
    "leaky_relu": LeakyReLU, "elu": ELU, "hard_sigmoid": HardSigmoid, "hard_tanh": HardTanh, "gelu": GELU,
    "prelu": PReLU, "swish": Swish,
}

# torch.nn activation classes and the registry name they stand for (for prepare's swaps).
TORCH_EQUIVALENTS = {
    nn.Identity: "identity", nn.Sigmoid: "sigmoid", nn.Tanh: "tanh", nn.ReLU: "relu", nn.ReLU6: "relu6",
    nn.SELU: "selu", nn.Softplus: "softplus", nn.Hardswish: "hard_swish", nn.Mish: "mish",
    nn.LeakyReLU: "leaky_relu", nn.ELU: "elu", nn.Hardsigmoid: "hard_sigmoid", nn.Hardtanh: "hard_tanh",
    nn.GELU: "gelu", nn.PReLU: "prelu", nn.SiLU: "swish",
}


def make_activation(name: str, **params) -> Activation:
    """A module for a registry name or alias: make_activation('hard-swish'), make_activation('prelu', num_parameters=8)."""
    from edgeact.activations import canonical_name

    return _BY_NAME[canonical_name(name)](**params)


def from_torch(module: nn.Module) -> Activation | None:
    """The edgeact module equivalent to a torch.nn activation (parameters carried over) or to an outside
    activation class recognized by what it computes (`edgeact.nn.recognize`), or None."""
    name = TORCH_EQUIVALENTS.get(type(module))
    if name is None:
        if isinstance(module, Activation):
            return module
        from edgeact.nn.recognize import recognize  # an outside class (timm's HardMishMe…): by what it computes

        found = recognize(module)
        return None if found is None else make_activation(found[0], **found[1])
    if name == "prelu":
        m = PReLU(module.weight.numel())
        m.weight.data.copy_(module.weight.data)
        return m
    if name == "leaky_relu":
        return LeakyReLU(module.negative_slope)
    if name == "elu":
        return ELU(module.alpha)
    if name == "hard_tanh":
        return HardTanh(module.min_val, module.max_val)
    if name == "gelu":
        return GELU(module.approximate)
    if name == "softplus" and (module.beta != 1 or module.threshold != 20):
        return None
    return _BY_NAME[name]()


