"""Analytic derivatives of the activations (NumPy, float64), checked against autograd in the tests.

A view of the registry: each is written in the activation's spec file. At a kink (ReLU at 0, ReLU6 at 0
and 6, …) the value is the one PyTorch's autograd uses, so the plots and the tests agree with training.
"""
from __future__ import annotations

from edgeact import activations as _A

globals().update({name: spec.derivative for name, spec in _A.REGISTRY.items()})
silu = _A.get("swish").derivative


def __getattr__(name: str):
    if name in _A.REGISTRY:
        return _A.REGISTRY[name].derivative
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [*_A.names(), "silu"]
