"""ONNX Runtime on ARM: semantics 'onnxruntime-aarch64', and the activation lowering that ARM prefers.

ORT's aarch64 build computes edgeact's ONNX exports code for code as the x86-64 build does (measured
under qemu-aarch64 with ORT 1.32: every reproducible native activation over 200 parameter pairs, and
whole models — tests/test_onnx_arm.py, tests/test_arm_parity.py), so the arithmetic is 'onnxruntime''s.
What differs is the cheapest exact lowering (benchmarks/RESULTS-arm.md, instructions per inference):
swish and hard-mish, a few float ops between DQ and Q, measure no faster than the GatherElements table
on x86, so 'onnxruntime' makes them tables; on ARM the float ops take 1.1× (swish) and 1.4× (hard-mish)
fewer instructions than the table.

Arithmetic 'onnxruntime-aarch64' therefore gives these activations the native kernels' codes (the same on
both CPUs), and `to_onnx` (prefer='arm', the default for a model converted with it) lowers them natively.
"""
from __future__ import annotations

import numpy as np

from edgeact.activations import BoundActivation
from edgeact.qparams import QuantParams
from edgeact.export.onnxruntime.arithmetic import OnnxRuntimeArithmetic, default_lowering


def prefers_native_on_arm(act: BoundActivation) -> bool:
    """Whether ARM lowers `act` natively (natives.py: `native_on` has 'arm'), with reproducible codes."""
    return default_lowering(act, "arm") == "native"


class OnnxRuntimeAarch64Arithmetic(OnnxRuntimeArithmetic):
    """'onnxruntime' with the native kernels' codes where ARM lowers natively (see the module docstring)."""

    name = "onnxruntime-aarch64"

    def activation_table(self, act: BoundActivation, in_qp: QuantParams, out_qp: QuantParams) -> np.ndarray:
        from edgeact.export.onnxruntime import chains

        if prefers_native_on_arm(act) and chains.search(act, in_qp, out_qp) is None:
            return self.native_table(act, in_qp, out_qp)
        return super().activation_table(act, in_qp, out_qp)


ARITHMETIC = OnnxRuntimeAarch64Arithmetic()
