"""edgeact: activation functions to edge devices in int8.

Define an activation once (`edgeact.activations`), see it and its PWL stand-in, run it as a
fake-quantized int8 operator in PyTorch, export to ONNX / TFLite, and measure on host, QEMU and boards.
"""
from edgeact import interrupt as _interrupt

_interrupt.install_for_command_line()  # first: `import torch` below takes seconds, Ctrl-C must end cleanly
from edgeact import activations, functional, numpy_functional  # noqa: E402
from edgeact.activations import get as get_activation
from edgeact.backend import Backend, backends, get_backend
from edgeact.errors import EdgeActError, QuantizationError, UnsupportedError
from edgeact.fake_quant import FakeQuantize, fake_quantize
from edgeact.qparams import QuantParams
from edgeact.quantize import QConfig, calibrate, convert, freeze, prepare, start_qat
from edgeact.tables import int8_table

__version__ = "0.1.0"

__all__ = [
    "activations", "Backend", "backends", "get_backend", "functional", "numpy_functional", "get_activation", "QuantParams", "FakeQuantize",
    "fake_quantize", "int8_table", "prepare", "calibrate", "start_qat", "freeze", "convert", "QConfig", "EdgeActError", "QuantizationError", "UnsupportedError",
]
