"""Exporters: the converted integer model as files that the runtimes run code for code.

`edgeact.export` is the `export/` folder of the repository (mapped in pyproject.toml).
"""
# ONNX (QDQ int8, onnxruntime)
from edgeact.export.onnx_activation import export_activation

__all__ = ["export_activation"]
