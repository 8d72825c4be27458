"""NumPy twins of `edgeact.functional`, in float64: a view of the registry.

These are the float references the integer tables are built from: written from the formulas in each
activation's spec file (not by calling torch), so a test comparing them with torch compares two
implementations.
"""
from __future__ import annotations

from edgeact import activations as _A
from edgeact.activations.gelu import GELU_APPROXIMATIONS, check_gelu_approximate

_functions, __getattr__ = _A.view(__name__, "numpy_fn")
globals().update(_functions)
silu = _functions["swish"]


__all__ = [*_A.names(), "silu", "GELU_APPROXIMATIONS", "check_gelu_approximate"]
