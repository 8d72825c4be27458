"""LiteRT on ARM: semantics 'tflite-aarch64', and the activation lowering that ARM prefers.

Which lowering is cheaper depends on the CPU (benchmarks/RESULTS-arm.md, instruction counts under
QEMU): on x86 LiteRT's int8 HARD_SWISH runs the scalar reference loop and the GATHER table is faster,
so 'tflite' emits the table; on ARM the same kernel is NEON code and takes ~19× fewer instructions
than the table. RELU, RELU6, PRELU… loop in scalar code on both, so the table stays.

The NEON HARD_SWISH (`optimized_ops::HardSwish`, compiled only `#ifdef __ARM_NEON`, so never on x86,
not even through NEON_2_SSE) computes the reference kernel's 16-bit fixed point with other roundings
(same on aarch64 with ai-edge-litert 2.3 and armv7 with tflite-runtime 2.14, measured):

| step                         | reference (x86)                          | NEON (ARM)                      |
|------------------------------|------------------------------------------|---------------------------------|
| reluish ÷ 2^k, output ÷ 2^k  | RoundingDivideByPOT: ties away from zero | VRSHL: ties toward +∞           |
| reluish·preshift (doubling high mul) | (a·b) / 2^15, truncated toward 0 | VQDMULH: (2·a·b) >> 16, floored |
| output exponent ≤ −16        | int16 mask wraps: ±1 for every x         | VRSHL: 0                        |

so a code moves by one step at some parameters (8 of 200 random pairs, 1,047 of their 51,200 codes).
Only whole blocks of 8 elements take the NEON loop; the last `flat size mod 8` elements go through the
reference loop, so `hard_swish_table_neon` is exact for tensors whose flat size is a multiple of 8
(every channel count edgeact's models use).

Semantics 'tflite-aarch64' is 'tflite' (XNNPACK, whose model-op arithmetic is the same on ARM:
tests/test_arm_parity.py) with one difference: hard-swish's table is the NEON kernel's wherever
TFLite has the kernel, so that the exporter can emit HARD_SWISH for ARM. It emits it only where the
NEON and reference kernels agree (`plan_activation_for`), and the exact GATHER table elsewhere, so
the file gives the same codes on x86 and ARM.
"""
from __future__ import annotations

import numpy as np

from edgeact import fixedpoint as fp
from edgeact.activations import BoundActivation
from edgeact.errors import UnsupportedError
from edgeact.qparams import QuantParams
from edgeact.semantics import tflite as T

# Native kernels ARM runs faster than the GATHER table although x86 runs them slower (T.TABLE_IS_FASTER).
ARM_NATIVE = frozenset({"HARD_SWISH"})
PREFERENCES = ("x86", "arm")


def _rounding_shift_right_up(x: np.ndarray, exponent: int) -> np.ndarray:
    """VRSHL by −exponent: x / 2^exponent rounded to nearest, ties toward +∞ (exact for any exponent ≥ 0)."""
    if exponent <= 0:
        return x
    return (x + (np.int64(1) << (exponent - 1))) >> exponent


def hard_swish_table_neon(in_qp: QuantParams, out_qp: QuantParams) -> np.ndarray:
    """HARD_SWISH int8 as LiteRT's NEON loop computes it (optimized_ops.h), for every input code."""
    p = T.HardSwishParams.of(in_qp, out_qp)
    x = fp.wrap(in_qp.codes() - in_qp.zero_point, 16)
    hires = fp.wrap(x * (1 << 7), 16)  # vshlq_n_s16(x, 7)
    preshift_out = fp.saturating_rounding_doubling_high_mul(hires, p.output_multiplier_int16, bits=16)  # VQRDMULH
    reluish = fp.saturating_left_shift_int16(hires, max(0, p.reluish_exponent - 1))  # VQSHL
    reluish = fp.saturating_rounding_doubling_high_mul(reluish, p.reluish_multiplier_int16, bits=16)
    reluish = fp.saturating_left_shift_int16(reluish, 1 if p.reluish_exponent > 0 else 0)
    reluish = _rounding_shift_right_up(reluish, -min(0, p.reluish_exponent))  # VRSHL
    reluish = (reluish + 32767 + 1) >> 1  # VRHADD with 32767
    both_min = (reluish == preshift_out) & (reluish == fp.INT16_MIN)
    preshift = np.where(both_min, fp.INT16_MAX, (reluish * preshift_out) >> 15)  # VQDMULH: floor
    y = _rounding_shift_right_up(preshift, -p.output_exponent)  # VRSHL
    return np.clip(fp.wrap(y + out_qp.zero_point, 16), -128, 127)  # VADD, then VQMOVN


def arm_native_table(kernel: T.NativeKernel, in_qp: QuantParams, out_qp: QuantParams) -> np.ndarray:
    """What LiteRT's builtin `kernel` computes on ARM (the NEON HARD_SWISH; the others as on x86)."""
    if kernel.op == "HARD_SWISH":
        return hard_swish_table_neon(in_qp, out_qp)
    return T.native_table(kernel, in_qp, out_qp)


def plan_activation_for(act: BoundActivation, in_qp: QuantParams, out_qp: QuantParams,
                        prefer: str = "x86") -> T.ActivationLowering:
    """`T.plan_activation`, or for prefer='arm' also the kernels of ARM_NATIVE — where their codes are the
    same on ARM and x86, so that the file stays exact everywhere."""
    if prefer not in PREFERENCES:
        raise UnsupportedError(f"prefer must be one of {', '.join(PREFERENCES)}, got {prefer!r}")
    plan = T.plan_activation(act, in_qp, out_qp)
    if prefer == "x86" or plan.kind != "table":
        return plan
    kernel = T.native_kernel(act, in_qp, out_qp)
    if kernel is None or kernel.op not in ARM_NATIVE:
        return plan
    if not np.array_equal(T.native_table(kernel, in_qp, out_qp), arm_native_table(kernel, in_qp, out_qp)):
        return T.ActivationLowering("table", reason=f"{kernel.op} rounds differently on ARM and x86 here")
    return T.ActivationLowering("native", kernel.op, kernel.options, reason=f"{kernel.op} is cheaper on ARM (measured)")


class TFLiteAarch64Semantics(T.TFLiteSemantics):
    """'tflite' with hard-swish computed as LiteRT's NEON HARD_SWISH kernel (see the module docstring)."""

    name = "tflite-aarch64"

    def activation_table(self, act: BoundActivation, in_qp: QuantParams, out_qp: QuantParams) -> np.ndarray:
        table = super().activation_table(act, in_qp, out_qp)  # validates the parameters
        kernel = T.native_kernel(act, in_qp, out_qp)
        if kernel is not None and kernel.op in ARM_NATIVE:
            return arm_native_table(kernel, in_qp, out_qp)
        return table


SEMANTICS = TFLiteAarch64Semantics()
