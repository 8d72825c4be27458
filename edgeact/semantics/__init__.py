"""Integer semantics: how one runtime computes each int8 op, reproduced in NumPy/torch.

"ideal" is the textbook float64 / round-half-even arithmetic. A runtime ("onnxruntime", "tflite")
subclasses `Semantics` in a module of this package named after it and overrides what it computes
differently, so that a model converted with that semantics equals the deployed model code for code.
One runtime can have several kernel sets: "tflite" is LiteRT's default (XNNPACK delegate),
"tflite-builtin" and "tflite-reference" its own optimized and reference kernels (module
`tflite_builtin`, which maps each name to its object in `SEMANTICS_BY_NAME`). "onnxruntime-aarch64" and
"tflite-aarch64" are those runtimes as edgeact exports for ARM (the lowering ARM runs fastest, and
LiteRT's NEON hard-swish). "onnxruntime-x86-avx2" is ORT's full 8-bit u8s8 kernels on AVX2 (int16 pair
saturation), for files written with s8 weights for an AVX2 fleet.
"""
from __future__ import annotations

import importlib

from edgeact.errors import UnsupportedError
from edgeact.semantics.base import Semantics

KNOWN = ("ideal", "onnxruntime", "tflite", "tflite-builtin", "tflite-reference", "onnxruntime-aarch64",
         "tflite-aarch64", "onnxruntime-x86-avx2")
_MODULE = {"tflite-builtin": "tflite_builtin", "tflite-reference": "tflite_builtin",  # default: the name
           "onnxruntime-aarch64": "onnxruntime_aarch64", "tflite-aarch64": "tflite_aarch64",
           "onnxruntime-x86-avx2": "onnxruntime_x86_avx2"}
_CACHE: dict[str, Semantics] = {}


def get_semantics(name: str | Semantics = "ideal") -> Semantics:
    """The `Semantics` object for a runtime name ('ideal', 'onnxruntime', 'tflite', 'tflite-builtin',
    'tflite-reference')."""
    if isinstance(name, Semantics):
        return name
    if name not in _CACHE:
        if name not in KNOWN:
            raise UnsupportedError(f"unknown integer semantics {name!r}; choose one of {', '.join(KNOWN)}")
        try:
            module = importlib.import_module(f"edgeact.semantics.{_MODULE.get(name, name)}")
        except ModuleNotFoundError as exc:  # a runtime whose semantics are not written yet
            raise UnsupportedError(f"integer semantics {name!r} are not available: {exc}") from exc
        _CACHE[name] = getattr(module, "SEMANTICS_BY_NAME", {}).get(name) or module.SEMANTICS
    return _CACHE[name]


__all__ = ["Semantics", "get_semantics", "KNOWN"]
