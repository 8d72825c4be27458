"""Activation functions on torch tensors, in PyTorch's functional conventions: a view of the registry.

`edgeact.functional.<name>` is `edgeact.activations.get(<name>).torch_fn`, defined once in the activation's
spec file (`edgeact/activations/<name>.py`), which also holds its NumPy twin (`edgeact.numpy_functional`)
and analytic derivative (`edgeact.derivatives`). Where torch has the op, it is used so that autograd and
speed are PyTorch's own. Activations registered later are found too (module `__getattr__`).
"""
from __future__ import annotations

from edgeact import activations as _A
from edgeact.activations.selu import SELU_ALPHA, SELU_SCALE

_functions, __getattr__ = _A.view(__name__, "torch_fn")
globals().update(_functions)
silu = _functions["swish"]


__all__ = [*_A.names(), "silu", "SELU_ALPHA", "SELU_SCALE"]
