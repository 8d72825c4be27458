"""Exporters: the converted integer model as files that the runtimes run code for code.

One package per runtime (`onnxruntime`, `litert`): its backends' arithmetic, activation lowering,
file writer and runner. `edgeact.export` is the `export/` folder of the repository (mapped in
pyproject.toml).
"""
# ONNX (QDQ int8, onnxruntime)
from edgeact.export.onnxruntime.lowering import export_activation
from edgeact.export.onnxruntime.writer import to_onnx

# TFLite (full int8, LiteRT)
from edgeact.export.litert.writer import to_tflite
from edgeact.export.litert.run import register_runner as _register_tflite_runner, verify_tflite

# Parity of an exported file (.onnx, .tflite) with the converted model
from edgeact.export.verify import ParityReport, verify

_register_tflite_runner()

__all__ = ["export_activation", "to_onnx", "verify", "ParityReport", "to_tflite", "verify_tflite"]
