"""LiteRT (TFLite): its arithmetic per kernel set and CPU, activation lowering, flatbuffer writer and runner.

Backends (one file format, several arithmetics — which one a file meets depends on how it is run):
- 'litert': LiteRT's default, the XNNPACK delegate over the builtin kernels, on x86-64.
- 'litert:aarch64': the same on ARM, where the NEON HARD_SWISH and XNNPACK's fixed-point MUL differ
  (`arithmetic_aarch64`); its files choose the lowering ARM runs fastest.
- 'litert:builtin' / 'litert:reference': the optimized / reference builtin kernels without a delegate.
- 'tflite-runtime:armv7': tflite-runtime 2.14 on 32-bit ARM, the only runtime armv7 has; its wheel has
  no XNNPACK, so the builtin kernels run, with ARMv7's roundings (`arithmetic_armv7`).
"""
from __future__ import annotations

from edgeact.backend import ActivationPlan, Backend, register

# The interpreter mode (edgeact.export.litert.interpreter.MODES) that runs each kernel set.
MODE_OF_KERNELS = {"xnnpack": "xnnpack", "builtin": "builtin", "reference": "reference"}


class LiteRTBackend(Backend):
    format = "tflite"

    @property
    def mode(self) -> str:
        """How the interpreter must run to compute this arithmetic ('xnnpack', 'builtin', 'reference')."""
        return MODE_OF_KERNELS[self.kernels]

    def plan_activation(self, act, in_qp, out_qp, requested: str | None = None) -> ActivationPlan:
        from edgeact.export.litert.lowering import plan_activation

        return plan_activation(self, act, in_qp, out_qp, requested)

    def write(self, model, path=None, example_inputs=None, **options):
        from edgeact.export.litert.writer import to_tflite

        return to_tflite(model, example_inputs, path, **options)

    def runtime_options(self) -> dict:
        return {"mode": self.mode}


def _arithmetic(module: str, name: str | None = None):
    def load():
        import importlib

        mod = importlib.import_module(f"edgeact.export.litert.{module}")
        return mod.ARITHMETIC_BY_NAME[name] if name else mod.ARITHMETIC
    return load


register(LiteRTBackend("litert", runtime="litert", cpu="x86-64", kernels="xnnpack",
                       description="LiteRT with the XNNPACK delegate (its default), x86-64",
                       arithmetic=_arithmetic("arithmetic")))
register(LiteRTBackend("litert:aarch64", runtime="litert", cpu="aarch64", kernels="xnnpack",
                       description="LiteRT with XNNPACK on aarch64 (NEON HARD_SWISH, fixed-point MUL)",
                       arithmetic=_arithmetic("arithmetic_aarch64")))
register(LiteRTBackend("litert:builtin", runtime="litert", cpu="x86-64", kernels="builtin",
                       description="LiteRT's optimized builtin kernels, no delegate", default_kernels=False,
                       arithmetic=_arithmetic("arithmetic_builtin", "tflite-builtin")))
register(LiteRTBackend("litert:reference", runtime="litert", cpu="any", kernels="reference",
                       description="LiteRT's reference kernels (BUILTIN_REF)", default_kernels=False,
                       arithmetic=_arithmetic("arithmetic_builtin", "tflite-reference")))
register(LiteRTBackend("tflite-runtime:armv7", runtime="tflite-runtime", cpu="armv7", kernels="builtin",
                       description="tflite-runtime 2.14 on armv7: the builtin NEON kernels (no XNNPACK in its wheel)",
                       arithmetic=_arithmetic("arithmetic_armv7")))
