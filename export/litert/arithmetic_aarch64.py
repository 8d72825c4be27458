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

The XNNPACK delegate (LiteRT's default) also picks other kernels on ARM for one model op: int8 MUL
runs `xnn_qs8_vmul(c)_minmax_rndnu_ukernel__neon_ld64_u16` on aarch64 (and 32-bit ARM with NEON) —
fixed point: VQSHL by a pre-shift, VQDMULH by the scale's 24-bit mantissa << 7, VRSHL (ties up) —
where x86 runs the fp32 kernels (round-half-even(float(acc)·scale)), so a product near a tie moves by
one step (src/configs/binary-elementwise-config.c, xnn_init_qs8_mul_minmax_rndnu_neon_params;
measured: 367 of 61,440 codes at power-of-two scales, 2 of 500 logits of an mnv3s). CONV_2D,
DEPTHWISE_CONV_2D, FULLY_CONNECTED (per-channel weights: fp32 requantization on both), ADD and
QUANTIZE compute the same codes on both (tests/test_arm_parity.py).

MEAN runs XNNPACK's reduce on both, but its float steps are plain C (reference int32→qs8 convert) that
the aarch64 build contracts into fused multiply-adds, so a mean within an ulp of a tie can round
differently from x86 (`mean_codes_fma`; measured under qemu-aarch64: 36 of 136,686 tie-probing codes).

Arithmetic 'tflite-aarch64' is LiteRT on aarch64: 'tflite' with the NEON hard-swish (wherever TFLite
has the kernel), the rndnu MUL and the fused-multiply-add MEAN. The exporter, given prefer='arm' (the
default for a model converted with it), emits HARD_SWISH only where the NEON and reference kernels
agree (`plan_activation_for`), and the exact GATHER table elsewhere; so such a file gives ARM's codes
on ARM, and the same codes on x86 except at MUL's and MEAN's near-ties.
"""
from __future__ import annotations

import numpy as np
import torch

from edgeact import fixedpoint as fp
from edgeact.activations import BoundActivation
from edgeact.errors import UnsupportedError
from edgeact.qparams import QuantParams
from edgeact.export.litert import arithmetic as T

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
                        prefer: str = "x86", *, chains: bool = True) -> T.ActivationLowering:
    """`T.plan_activation`, or for prefer='arm' also the kernels of ARM_NATIVE — where their codes are the
    same on ARM and x86, so that the file stays exact everywhere."""
    if prefer not in PREFERENCES:
        raise UnsupportedError(f"prefer must be one of {', '.join(PREFERENCES)}, got {prefer!r}")
    plan = T.plan_activation(act, in_qp, out_qp, chains=chains)
    if prefer == "x86" or plan.kind != "table":
        return plan
    kernel = T.native_kernel(act, in_qp, out_qp)
    if kernel is None or kernel.op not in ARM_NATIVE:
        return plan
    if not np.array_equal(T.native_table(kernel, in_qp, out_qp), arm_native_table(kernel, in_qp, out_qp)):
        return T.ActivationLowering("table", reason=f"{kernel.op} rounds differently on ARM and x86 here")
    return T.ActivationLowering("native", kernel.op, kernel.options, reason=f"{kernel.op} is cheaper on ARM (measured)")


def mul_rndnu_parameters(qa: QuantParams, qb: QuantParams, out: QuantParams) -> tuple[int, int, int]:
    """xnn_init_qs8_mul_minmax_rndnu_neon_params: (left pre-shift, Q31 multiplier, right post-shift) of
    the float32 scale f32(f32(s_a·s_b)/s_out)."""
    scale = np.float32(np.float32(np.float32(qa.scale) * np.float32(qb.scale)) / np.float32(out.scale))
    if not 2.0 ** -16 <= scale < 2.0 ** 8:
        raise UnsupportedError(f"MUL with s_a·s_b/s_out = {float(scale):.3g}: XNNPACK supports [2^-16, 2^8) — "
                               "recalibrate so that the product's range is comparable to its inputs'")
    bits = int(np.frombuffer(scale.tobytes(), dtype=np.uint32)[0])
    multiplier = ((bits & 0x007FFFFF) | 0x00800000) << 7
    shift = 127 + 31 - 32 - (bits >> 23)
    post_shift = max(shift, 1)
    return post_shift - shift, multiplier, post_shift


def fma_f32(a, b, c) -> np.ndarray:
    """float32 a·b + c rounded once (an ARM FMLA/FMSUB), for float32 a, b, c: the product is exact in
    float64, TwoSum gives the sum's rounding error, and a float64 sum that sits exactly on a float32
    midpoint is moved by the sign of that error (where rounding float64 → float32 would round twice)."""
    a, b, c = (np.asarray(v, dtype=np.float32).astype(np.float64) for v in (a, b, c))
    p = a * b
    s = p + c
    bv = s - p
    err = (p - (s - bv)) + (c - bv)  # p + c == s + err exactly
    r = s.astype(np.float32)
    toward = np.nextafter(r, np.where(s > r, np.float32(np.inf), np.float32(-np.inf)).astype(np.float32))
    midpoint = (s != r) & (s == (r.astype(np.float64) + toward.astype(np.float64)) / 2)
    hi, lo = np.maximum(r, toward), np.minimum(r, toward)
    fixed = np.where(err > 0, hi, np.where(err < 0, lo, r))
    return np.where(midpoint, fixed, r).astype(np.float32)


def mean_codes_fma(sums, count: int, in_qp: QuantParams, out_qp: QuantParams) -> torch.Tensor:
    """XNNPACK qs8 MEAN as the aarch64 build computes it: the C expressions of `T.mean_parameters` and
    of the reference quantize (`x * inv_scale + zero_point`) are contracted into fused multiply-adds,
    zero = fma(−f32(count·z_in), scale, z_out) and y = fma(f32(Σq), scale, zero), each rounded once
    (measured on every window sum at six scale pairs chosen near ties: the two-rounding x86 formula
    misses 36 of 136,686 codes, this one none)."""
    scale = T.mean_scale(in_qp, out_qp, count)
    zero = fma_f32(-np.float32(count * in_qp.zero_point), scale, np.float32(out_qp.zero_point))
    y = fma_f32(np.asarray(sums, dtype=np.int64).astype(np.float32), scale, zero)
    return torch.from_numpy(np.clip(np.rint(y), out_qp.qmin, out_qp.qmax).astype(np.int64))


def _sat(x: torch.Tensor, bits: int) -> torch.Tensor:
    return x.clamp(-(1 << (bits - 1)), (1 << (bits - 1)) - 1)


class TFLiteAarch64Arithmetic(T.TFLiteArithmetic):
    """LiteRT on aarch64: 'tflite' with the NEON HARD_SWISH, XNNPACK's rndnu MUL and FMA MEAN (module docstring)."""

    name = "tflite-aarch64"

    def mul(self, a, qa: QuantParams, b, qb: QuantParams, out_qp: QuantParams) -> torch.Tensor:
        """xnn_qs8_vmul(c)_minmax_rndnu_ukernel__neon_ld64_u16, step by step."""
        pre, multiplier, post = mul_rndnu_parameters(qa, qb, out_qp)
        acc = (a.long() - qa.zero_point) * (b.long() - qb.zero_point)  # VMULL of the int16 differences
        acc = _sat(acc << pre, 32)  # VQSHL
        acc = _sat(torch.div(2 * acc * multiplier, 1 << 32, rounding_mode="floor"), 32)  # VQDMULH
        acc = torch.div(acc + (1 << (post - 1)), 1 << post, rounding_mode="floor")  # VRSHL: ties up
        out = _sat(_sat(acc, 16) + out_qp.zero_point, 16)  # VQMOVN, VQADD
        return out.clamp(out_qp.qmin, out_qp.qmax)

    def average(self, window_sum: torch.Tensor, count: int, in_qp: QuantParams, out_qp: QuantParams, *,
                op: str = "mean") -> torch.Tensor:
        """MEAN with fused multiply-adds (`mean_codes_fma`); average pooling (a depthwise conv) as on x86."""
        if op in ("mean", "MEAN"):
            return mean_codes_fma(window_sum.detach().cpu().numpy(), count, in_qp, out_qp)
        return super().average(window_sum, count, in_qp, out_qp, op=op)

    def activation_table(self, act: BoundActivation, in_qp: QuantParams, out_qp: QuantParams) -> np.ndarray:
        table = super().activation_table(act, in_qp, out_qp)  # validates the parameters
        if T.plan_activation(act, in_qp, out_qp, chains=self.uses_chains).kind == "chain":  # computed with this semantics' MUL
            return table
        kernel = T.native_kernel(act, in_qp, out_qp)
        if kernel is not None and kernel.op in ARM_NATIVE:
            return arm_native_table(kernel, in_qp, out_qp)
        return table


ARITHMETIC = TFLiteAarch64Arithmetic()
