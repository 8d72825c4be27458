"""Integer semantics: how one runtime computes each int8 op, reproduced in NumPy/torch.

"ideal" is the textbook float64 / round-half-even arithmetic. A runtime ("onnxruntime", "tflite")
subclasses `Semantics` in a module of this package named after it and overrides what it computes
differently, so that a model converted with that semantics equals the deployed model code for code.
"""
from __future__ import annotations

import importlib

from edgeact.errors import UnsupportedError
from edgeact.semantics.base import Semantics

KNOWN = ("ideal", "onnxruntime", "tflite")
_CACHE: dict[str, Semantics] = {}


def get_semantics(name: str | Semantics = "ideal") -> Semantics:
    """The `Semantics` object for a runtime name ('ideal', 'onnxruntime', 'tflite')."""
    if isinstance(name, Semantics):
        return name
    if name not in _CACHE:
        if name not in KNOWN:
            raise UnsupportedError(f"unknown integer semantics {name!r}; choose one of {', '.join(KNOWN)}")
        try:
            module = importlib.import_module(f"edgeact.semantics.{name}")
        except ModuleNotFoundError as exc:  # a runtime whose semantics are not written yet
            raise UnsupportedError(f"integer semantics {name!r} are not available: {exc}") from exc
        _CACHE[name] = module.SEMANTICS
    return _CACHE[name]


__all__ = ["Semantics", "get_semantics", "KNOWN"]
