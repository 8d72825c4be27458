"""onnxruntime (CPU execution provider): its arithmetic, activation lowering, QDQ writer and runner.

Backends:
- 'onnxruntime': the portable file. Weights are uint8 with zero point 128, so ORT runs its U8U8 integer
  kernels, which are exact on every x86-64 family (SSE4, AVX2, AVX-512, VNNI, AMX) and on aarch64;
  activations get the lowering that is cheapest on x86 (benchmarks/RESULTS-onnx-x86.md).
- 'onnxruntime:aarch64': the same arithmetic with the lowering ARM runs fastest (native swish and
  hard-mish, `arithmetic_aarch64`), and int8 weights (symmetric, in [−127, 127], zero point 0): ORT's
  aarch64 build then runs its symmetric conv kernels (ConvSym, depthwise ConvSym), which take the uint8
  input as int8 (x − 128) and add two s8·s8 products in int16 before widening — exact because 2·128·127 < 2^15 (a
  weight −128 could overflow: the writer refuses it) — and run in fewer instructions
  than the U8U8 path (benchmarks/RESULTS-peers.md). On x86 the file is exact as the
  x86-vnni one is (session.x64quantprecision=1 on AVX2, which edgeact.targets.compat sets).
- 'onnxruntime:x86-vnni': the portable arithmetic written with int8 weights, so that a CPU with VNNI or AMX runs
  its u8s8 kernels (exact sums, faster than U8U8: benchmarks/RESULTS-peers.md); 'onnxruntime:host' picks it
  there. On AVX2 the same file needs session.x64quantprecision=1 (edgeact.targets.compat sets it).
- 'onnxruntime:x86-avx2': full 8-bit int8 weights for an AVX2 fleet: ORT's u8s8 kernels, whose int16 pair
  saturation (VPMADDUBSW) `arithmetic_x86_avx2` reproduces; exact on AVX2 (and AVX-512BW without VNNI),
  differs elsewhere wherever a pair saturates.
"""
from __future__ import annotations

from edgeact.backend import ActivationPlan, Backend, register


class OnnxRuntimeBackend(Backend):
    format = "onnx"
    weights = "uint8"  # the writer's weight type: 'uint8' (U8U8 kernels) or 'int8' (u8s8 kernels)

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


class OnnxRuntimeU8S8Backend(OnnxRuntimeBackend):
    weights = "int8"


register(OnnxRuntimeU8S8Backend(
    "onnxruntime:aarch64", runtime="onnxruntime", cpu="aarch64", kernels="mlas-convsym-neon",
    description="onnxruntime on aarch64: int8 weights (ORT's symmetric conv kernels) and the activation lowering "
                "ARM runs fastest; exact on x86 too (session.x64quantprecision=1 on AVX2, which verify and bench set)",
    arithmetic=_arithmetic("arithmetic_aarch64")))

register(OnnxRuntimeU8S8Backend(
    "onnxruntime:x86-vnni", runtime="onnxruntime", cpu="x86-64", kernels="mlas-u8s8-vnni",
    description="onnxruntime, int8 weights: u8s8 kernels that sum exactly (VNNI, AMX; faster than U8U8 there); "
                "exact elsewhere too with session.x64quantprecision=1 on AVX2, which verify and bench set",
    arithmetic=_arithmetic("arithmetic"), families=("avx512-vnni", "avx-vnni", "amx")))
register(OnnxRuntimeU8S8Backend(
    "onnxruntime:x86-avx2", runtime="onnxruntime", cpu="x86-64", kernels="mlas-u8s8-avx2",
    description="onnxruntime, int8 weights on AVX2: u8s8 kernels with int16 pair saturation (modelled)",
    arithmetic=_arithmetic("arithmetic_x86_avx2"), default_kernels=False))
