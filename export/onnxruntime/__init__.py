"""onnxruntime (CPU execution provider): its arithmetic, activation lowering, QDQ writer and runner.

Backends:
- 'onnxruntime': the portable file. Weights are uint8 with zero point 128, so ORT runs its U8U8 integer
  kernels, which are exact on every x86-64 family (SSE4, AVX2, AVX-512, VNNI, AMX) and on aarch64;
  activations get the lowering that is cheapest on x86 (benchmarks/RESULTS-onnx-x86.md).
- 'onnxruntime:aarch64': the same arithmetic with the lowering ARM runs fastest (native swish and
  hard-mish, `arithmetic_aarch64`), exact on x86 too.
"""
from __future__ import annotations

from edgeact.backend import ActivationPlan, Backend, register


class OnnxRuntimeBackend(Backend):
    format = "onnx"

    def plan_activation(self, act, in_qp, out_qp, requested: str | None = None) -> ActivationPlan:
        from edgeact.export.onnxruntime.lowering import plan_activation

        return plan_activation(self, act, in_qp, out_qp, requested)

    def write(self, model, path=None, example_inputs=None, **options):
        from edgeact.export.onnxruntime.writer import to_onnx

        return to_onnx(model, example_inputs, path, **options)


def _arithmetic(module: str):
    def load():
        import importlib

        return importlib.import_module(f"edgeact.export.onnxruntime.{module}").ARITHMETIC
    return load


register(OnnxRuntimeBackend(
    "onnxruntime", runtime="onnxruntime", cpu="any", kernels="mlas-u8u8",
    description="onnxruntime, U8U8 integer kernels: exact on every x86-64 family and aarch64",
    arithmetic=_arithmetic("arithmetic")))
register(OnnxRuntimeBackend(
    "onnxruntime:aarch64", runtime="onnxruntime", cpu="aarch64", kernels="mlas-u8u8",
    description="onnxruntime with the activation lowering aarch64 runs fastest (exact on x86 too)",
    arithmetic=_arithmetic("arithmetic_aarch64")))
