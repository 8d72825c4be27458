"""tflite-runtime 2.14 on 32-bit ARM (armv7, NEON): the arithmetic of backend 'tflite-runtime:armv7'.

armv7 can run only tflite-runtime 2.14 (no ai-edge-litert or onnxruntime wheel), and its armhf wheel is
built without XNNPACK (`-DTFLITE_ENABLE_XNNPACK=OFF` in tflite's build_pip_package_with_cmake.sh; the
library has no `xnn_` symbols): every op runs on TFLite's own optimized kernels, compiled with real
32-bit NEON. So the closest model is 'litert:builtin' (LiteRT's optimized kernels, which x86 compiles
through NEON_2_SSE), and three things differ — read in the kernel sources, then confirmed op by op under
qemu-arm on parameters that make rounding ties frequent:

| op (as edgeact exports it)   | 'litert:builtin' (x86)                        | 'tflite-runtime:armv7'                       |
|------------------------------|----------------------------------------------|----------------------------------------------|
| QUANTIZE, whole blocks of 8  | `RoundToNearest` = vcvtnq: rint(x·f32(1/s)), ties to even | `RoundToNearest` without vcvtnq (ARMv7 has none): trunc(f32(x·f32(1/s)) ± 0.5), ties away from zero |
| CONV_2D, FULLY_CONNECTED     | the gemm's output stage rounds the final shift's ties up (VRSHL) | ruy's ARM32 kernel fixes its values up so the shift rounds ties away from zero (as the scalar MultiplyByQuantizedMultiplier) |
|   … one output column        | CustomGemv: VQRDMULH + VRSHL, ties up        | the same CustomGemv, when it applies: a 1×1 conv output or an FC row (the files are batch 1), ≥ 4 output channels, depth ≥ 8 (`uses_custom_gemv`) |
| HARD_SWISH                   | reference 16-bit fixed point                 | the NEON loop (`arithmetic_aarch64.hard_swish_table_neon`) |

Measured at tie-heavy parameters (tests/test_tflite_runtime_armv7.py): 'litert:builtin' misses 7,796 of
24,594 QUANTIZE codes on .5 steps, 14 of 3,136 CONV_2D codes and 23–33 of 2,560 FULLY_CONNECTED codes;
this arithmetic 0. Whole trained mnv3s models: 'litert:builtin' 38–81 of 160 logits off by 1–3, this one 0.

Everything else equals 'litert:builtin' on armv7: DEPTHWISE_CONV_2D (and average pooling, exported as
one) with whole blocks of 8 channels vector and the rest scalar, ADD (gemmlowp general add), MUL
(one f32 multiplier; the 16-wide loop narrows to int16), MEAN (optimized keep-dims Mean with
16-channel vector blocks; QuantizedMeanOrSum otherwise), the QUANTIZE tail (round-half-away(x / s)
in double), and the LUT activations (LOGISTIC, TANH, ELU, GELU: armv7's libm gave the x86 tables at
every code of 1,000 random pairs per op), RELU*, LEAKY_RELU and PRELU.

Lowering: the backend's CPU is ARM, so convert plans like 'litert:aarch64' does (native HARD_SWISH only
where the NEON and reference kernels agree, the exact table elsewhere); every other lowering is
'litert''s, which is exact on every LiteRT kernel set, this one included.
"""
from __future__ import annotations

import numpy as np
import torch

from edgeact import fixedpoint as fp
from edgeact.activations import BoundActivation
from edgeact.qparams import QuantParams
from edgeact.export.litert import arithmetic as T
from edgeact.export.litert import arithmetic_builtin as B
from edgeact.export.litert.arithmetic_aarch64 import ARM_NATIVE, arm_native_table

_F32 = np.float32
GEMV_ROWS = 4  # CustomGemvImpl::kKernelRows
GEMV_DEPTH = 8  # CustomGemvImpl::IsSupportedGivenSufficientlyManyRows: lhs_params.cols >= 8


def round_to_nearest_armv7(y: np.ndarray) -> np.ndarray:
    """optimized_ops RoundToNearest on ARMv7 NEON (no vcvtnq_s32_f32): add ±0.5 in float32 — the sign from
    vcltq_f32(y, 0), so −0.0 and NaN get +0.5 — then convert toward zero with saturation (vcvtq_s32_f32)."""
    y = np.asarray(y, dtype=_F32)
    with np.errstate(invalid="ignore", over="ignore"):
        s = (y + np.where(y < 0, _F32(-0.5), _F32(0.5))).astype(_F32)
        t = np.trunc(np.nan_to_num(s, nan=0.0).astype(np.float64))
    return np.clip(t, -(2.0**31), 2.0**31 - 1).astype(np.int64)


def uses_custom_gemv(shape, channel_axis: int = 1, depth: int | None = None) -> bool:
    """Whether cpu_backend_gemm runs this CONV_2D / FULLY_CONNECTED as CustomGemv (NEON, vector rounding):
    a single output column — one image of the batch-1 file edgeact writes with a 1×1 output (conv), or
    one row (fully connected) — at least 4 output channels (kKernelRows) and a depth of at least 8
    (IsSupportedGivenSufficientlyManyRows). Otherwise ruy/gemmlowp runs it, whose ARMv7 output stage
    rounds ties away from zero."""
    columns = int(np.prod(shape[2:])) if len(shape) > 2 else 1
    return columns == 1 and shape[channel_axis] >= GEMV_ROWS and (depth is None or depth >= GEMV_DEPTH)


class TFLiteRuntimeArmv7Arithmetic(B.TFLiteBuiltinArithmetic):
    """tflite-runtime 2.14's optimized kernels on armv7 NEON (no XNNPACK); see the module doc."""

    name = "tflite-runtime-armv7"
    kernel_set = "builtin"  # the optimized kernels, with their int16 limits (ADD refused past them: measured,
    # armv7's vector loop overflows as x86's does, and tflite-runtime offers no other kernel set there)
    add_overflow_alternative = ""

    def quantize(self, x: torch.Tensor, qp: QuantParams) -> torch.Tensor:
        """AffineQuantize<int8>: NEON blocks of 8 over the flat NHWC tensor, then the scalar tail."""
        flat = B._nhwc_flat(x.detach().float()).numpy()
        n_vector = flat.size // B.QUANTIZE_BLOCK * B.QUANTIZE_BLOCK
        inverse = _F32(1.0 / float(_F32(qp.scale)))  # vdupq_n_f32(1.0f / scale), scale a double
        with np.errstate(over="ignore", invalid="ignore"):
            vector = round_to_nearest_armv7((flat[:n_vector] * inverse).astype(_F32))
        scalar = B._quantize_scalar(flat[n_vector:], qp)
        codes = np.clip(np.concatenate([vector, scalar]) + qp.zero_point, qp.qmin, qp.qmax)
        return B._from_nhwc_flat(B._tensor(codes), x)

    def requantize_accumulator(self, acc: torch.Tensor, in_qp: QuantParams, w_qp: QuantParams,
                               out_qp: QuantParams, channel_axis: int = 1, *, op: str | None = None,
                               depth: int | None = None) -> torch.Tensor:
        """CONV_2D / FULLY_CONNECTED: the gemm's scalar output stage (ties away from zero), or — for a
        single output column — CustomGemv's vector one (`uses_custom_gemv`). DEPTHWISE_CONV_2D: as
        'litert:builtin'. `depth` None is taken as ≥ 8."""
        kernel = B._weighted_op(acc, op)
        if kernel == "DEPTHWISE_CONV_2D":
            return super().requantize_accumulator(acc, in_qp, w_qp, out_qp, channel_axis, op=kernel)
        a = B._codes(acc)
        per_tensor_fc = kernel == "FULLY_CONNECTED" and np.size(w_qp.scale_array()) == 1
        m, shift = B.conv_multipliers(in_qp, w_qp, out_qp, per_tensor_fc=per_tensor_fc)
        m, shift = B._channel_shape(m, a.ndim, channel_axis), B._channel_shape(shift, a.ndim, channel_axis)
        if uses_custom_gemv(a.shape, channel_axis, depth):
            y = fp.multiply_by_quantized_multiplier_vector(a, m, shift)
        else:
            y = fp.multiply_by_quantized_multiplier(a, m, shift)
        return B._finish(y, out_qp.zero_point, out_qp)

    def activation_table(self, act: BoundActivation, in_qp: QuantParams, out_qp: QuantParams) -> np.ndarray:
        table = super().activation_table(act, in_qp, out_qp)  # validates the parameters
        kernel = T.native_kernel(act, in_qp, out_qp)
        if kernel is not None and kernel.op in ARM_NATIVE:
            return arm_native_table(kernel, in_qp, out_qp)
        return table


ARITHMETIC = TFLiteRuntimeArmv7Arithmetic()

__all__ = ["TFLiteRuntimeArmv7Arithmetic", "round_to_nearest_armv7", "uses_custom_gemv", "ARITHMETIC"]
