"""Activation modules in PyTorch's conventions (`edgeact.nn.HardMish()`, `edgeact.nn.PReLU(16)`): a view of
the registry.

Each class comes from its activation's spec (`edgeact/activations/<name>.py`): generated from the spec's
parameters, or the spec's own class where a parameter is learnable (PReLU, Swish). Each knows its registry
name and hands its current parameters to the table builder through `bound()`, which is how a learnable
PReLU slope or Swish β reaches the int8 table.
"""
from __future__ import annotations

from torch import nn

from edgeact import activations as _A
from edgeact.activations import TORCH_EQUIVALENTS, Activation  # noqa: F401  (TORCH_EQUIVALENTS: prepare's swaps)

globals().update(_A.module_classes())


def __getattr__(name: str):
    classes = _A.module_classes()
    if name in classes:
        return classes[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def make_activation(name: str, **params) -> Activation:
    """A module for a registry name or alias: make_activation('hard-swish'), make_activation('prelu', num_parameters=8)."""
    return _A.module_class(name)(**params)


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
    spec, cls = _A.get(name), _A.module_class(name)
    return spec.from_torch(module, cls) if spec.from_torch is not None else cls()
