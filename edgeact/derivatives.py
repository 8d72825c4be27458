"""Analytic derivatives of the activations (NumPy, float64), checked against autograd in the tests.

A view of the registry: each is written in the activation's spec file. At a kink (ReLU at 0, ReLU6 at 0
and 6, …) the value is the one PyTorch's autograd uses, so the plots and the tests agree with training.
"""
from __future__ import annotations

from edgeact import activations as _A

_functions, __getattr__ = _A.view(__name__, "derivative")
globals().update(_functions)
silu = _functions["swish"]


__all__ = [*_A.names(), "silu"]
