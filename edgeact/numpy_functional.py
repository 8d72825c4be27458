"""NumPy twins of `edgeact.functional`, in float64: a view of the registry.

These are the float references the integer tables are built from: written from the formulas in each
activation's spec file (not by calling torch), so a test comparing them with torch compares two
implementations.
"""
from __future__ import annotations

from edgeact import activations as _A
from edgeact.activations.gelu import GELU_APPROXIMATIONS, check_gelu_approximate

globals().update({name: spec.numpy_fn for name, spec in _A.REGISTRY.items()})
silu = _A.get("swish").numpy_fn


def __getattr__(name: str):
    if name in _A.REGISTRY:
        return _A.REGISTRY[name].numpy_fn
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [*_A.names(), "silu", "GELU_APPROXIMATIONS", "check_gelu_approximate"]
