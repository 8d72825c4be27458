"""prepare → calibrate / QAT → convert: from a float model to an integer one."""
from edgeact.quantize.calibrate import calibrate, freeze, start_qat
from edgeact.quantize.convert import convert
from edgeact.quantize.prepare import SUPPORTED, prepare, quantizers, set_mode
from edgeact.quantize.qconfig import DEFAULT_QCONFIG, QAT_QCONFIG, QConfig

__all__ = ["prepare", "calibrate", "start_qat", "freeze", "convert", "QConfig", "DEFAULT_QCONFIG", "QAT_QCONFIG",
           "quantizers", "set_mode", "SUPPORTED"]
