"""Activation functions on torch tensors, in PyTorch's functional conventions: a view of the registry.

`edgeact.functional.<name>` is `edgeact.activations.get(<name>).torch_fn`, defined once in the activation's
spec file (`edgeact/activations/<name>.py`), which also holds its NumPy twin (`edgeact.numpy_functional`)
and analytic derivative (`edgeact.derivatives`). Where torch has the op, it is used so that autograd and
speed are PyTorch's own. Activations registered later are found too (module `__getattr__`).
"""
from __future__ import annotations

from edgeact import activations as _A
from edgeact.activations.selu import SELU_ALPHA, SELU_SCALE

globals().update({name: spec.torch_fn for name, spec in _A.REGISTRY.items()})
silu = _A.get("swish").torch_fn


def __getattr__(name: str):
    if name in _A.REGISTRY:
        return _A.REGISTRY[name].torch_fn
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [*_A.names(), "silu", "SELU_ALPHA", "SELU_SCALE"]
