"""Integer modules of a converted model (see `edgeact.quantized.modules`)."""
from edgeact.quantized.modules import (
    Dequantize, Quantize, QuantizedActivation, QuantizedAdd, QuantizedAvgPool2d, QuantizedConcat, QuantizedConv2d,
    QuantizedLinear, QuantizedMaxPool2d, QuantizedMean, QuantizedModule, QuantizedMul, QuantizedReshape,
)

__all__ = [
    "QuantizedModule", "Quantize", "Dequantize", "QuantizedConv2d", "QuantizedLinear", "QuantizedActivation",
    "QuantizedAdd", "QuantizedMul", "QuantizedConcat", "QuantizedMean", "QuantizedAvgPool2d", "QuantizedMaxPool2d",
    "QuantizedReshape",
]
