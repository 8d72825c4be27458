"""gemmlowp / TFLite fixed-point arithmetic, vectorised in NumPy (int64 arrays, exact).

TFLite's integer kernels do not multiply by a float scale: they turn a real multiplier into an
int32 (or int16) fixed-point multiplier plus a power-of-two shift (`quantize_multiplier`) and apply it
with a rounding high multiply and a rounding right shift. Reproducing these steps bit for bit is
what makes an edgeact table or converted model equal LiteRT code for code; rounding them "better"
would break parity. Sources: gemmlowp `fixedpoint/fixedpoint.h`, TFLite
`kernels/internal/{common.h,common.cc,quantization_util.cc}`, `reference/hard_swish.h`.

Every function takes and returns np.int64 arrays holding values of the C type named in its
docstring; results are wrapped or saturated exactly as the C++ code does.
"""
from __future__ import annotations

import math

import numpy as np

INT16_MIN, INT16_MAX = -(2**15), 2**15 - 1
INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1


def _i64(x) -> np.ndarray:
    return np.asarray(x, dtype=np.int64)


def trunc_div(n, d: int) -> np.ndarray:
    """C integer division (rounds toward zero), for a positive divisor."""
    n = _i64(n)
    return np.where(n >= 0, n // d, -((-n) // d))


def wrap(x, bits: int) -> np.ndarray:
    """Two's-complement wrap to a signed `bits`-bit integer (what a static_cast to int16_t does)."""
    x = _i64(x)
    half = 1 << (bits - 1)
    return ((x + half) & ((1 << bits) - 1)) - half


def round_half_away(x) -> np.ndarray:
    """std::round / roundf / TfLiteRound: ties away from zero (NumPy's rint rounds ties to even)."""
    x = np.asarray(x)
    whole = np.trunc(x)
    frac = x - whole  # exact in binary floating point
    return whole + np.sign(x) * (np.abs(frac) >= 0.5)


# ---- gemmlowp primitives ------------------------------------------------------------------------

def saturating_rounding_doubling_high_mul(a, b, bits: int = 32) -> np.ndarray:
    """gemmlowp::SaturatingRoundingDoublingHighMul for int32 (bits=32) or int16 (bits=16): a·b/2^(bits−1)
    rounded half up (ties toward +∞, like ARM's SQRDMULH), saturated at a = b = min."""
    a, b = _i64(a), _i64(b)
    lo = -(1 << (bits - 1))
    overflow = (a == b) & (a == lo)
    ab = a * b
    nudge = np.where(ab >= 0, 1 << (bits - 2), 1 - (1 << (bits - 2)))
    high = trunc_div(ab + nudge, 1 << (bits - 1))
    return np.where(overflow, (1 << (bits - 1)) - 1, high)


def saturating_doubling_high_mul_int16(a, b) -> np.ndarray:
    """TFLite's int16 SaturatingDoublingHighMul (hard_swish.h): SQDMULH, truncating instead of rounding."""
    a, b = _i64(a), _i64(b)
    overflow = (a == b) & (a == INT16_MIN)
    return np.where(overflow, INT16_MAX, trunc_div(a * b, 1 << 15))


def rounding_divide_by_pot(x, exponent, bits: int = 32) -> np.ndarray:
    """gemmlowp::RoundingDivideByPOT: x / 2^exponent, rounding to nearest, ties away from zero.

    `bits` is the width of gemmlowp's IntegerType: its mask `(1 << exponent) − 1` is cast to that type,
    so for int16 values an exponent ≥ 16 wraps the mask to −1 — and TFLite's HARD_SWISH then returns
    +1 for every x ≥ 0 and −1 below (reproduced: LiteRT does exactly that at tiny s_in/s_out).
    """
    x, exponent = _i64(x), _i64(exponent)
    mask = wrap((np.int64(1) << exponent) - 1, bits)
    remainder = x & mask
    threshold = (mask >> 1) + (x < 0)
    return (x >> exponent) + (remainder > threshold)


def saturating_left_shift_int16(x, amount: int) -> np.ndarray:
    """hard_swish.h SaturatingLeftShift: x·2^amount saturated to int16."""
    return np.clip(_i64(x) * (1 << amount), INT16_MIN, INT16_MAX)


# ---- multipliers --------------------------------------------------------------------------------

def quantize_multiplier(real_multiplier: float) -> tuple[int, int]:
    """TFLite QuantizeMultiplier: real ≈ q·2^(shift−31) with q an int32 in [2^30, 2^31); (q, shift).

    `real_multiplier` is taken as the C++ double it is in TFLite (callers reproduce the float32
    arithmetic TFLite uses to compute it, see `f32`).
    """
    real_multiplier = float(real_multiplier)
    if real_multiplier == 0.0:
        return 0, 0
    q, shift = math.frexp(real_multiplier)
    q_fixed = int(math.floor(abs(q) * (1 << 31) + 0.5)) * (1 if q >= 0 else -1)  # std::round
    if q_fixed == (1 << 31):
        q_fixed //= 2
        shift += 1
    if shift < -31:
        shift, q_fixed = 0, 0
    return q_fixed, shift


def downscale_int32_to_int16_multiplier(multiplier_int32: int) -> int:
    """TFLite DownScaleInt32ToInt16Multiplier: round the Q31 multiplier to Q15, saturating."""
    if multiplier_int32 >= INT32_MAX - (1 << 15):
        return INT16_MAX
    return (multiplier_int32 + (1 << 15)) >> 16


def multiply_by_quantized_multiplier(x, quantized_multiplier, shift) -> np.ndarray:
    """TFLite MultiplyByQuantizedMultiplier (int32 x), double rounding (TFLITE_SINGLE_ROUNDING off).

    Left shift (shift > 0) first, then SQRDMULH by the Q31 multiplier, then a rounding right shift
    (ties away from zero). `quantized_multiplier` and `shift` may be per-channel arrays broadcasting
    against x.
    """
    shift = _i64(shift)
    left, right = np.maximum(shift, 0), np.maximum(-shift, 0)
    x = wrap(_i64(x) << left, 32)
    return rounding_divide_by_pot(saturating_rounding_doubling_high_mul(x, quantized_multiplier), right)


def rounding_shift_right_up(x, exponent) -> np.ndarray:
    """x / 2^exponent rounded to nearest, ties toward +∞: ARM's VRSHL by −exponent, (x + 2^(e−1)) >> e.

    The optimized kernels' NEON code (which LiteRT also runs on x86, translated by NEON_2_SSE) shifts
    this way; gemmlowp's scalar `rounding_divide_by_pot` rounds ties away from zero instead.
    """
    x, exponent = _i64(x), _i64(exponent)
    nudge = np.where(exponent > 0, np.int64(1) << np.maximum(exponent - 1, 0), 0)
    return (x + nudge) >> exponent


def multiply_by_quantized_multiplier_vector(x, quantized_multiplier, shift) -> np.ndarray:
    """The vector (NEON) form of MultiplyByQuantizedMultiplier in LiteRT's optimized kernels:
    left shift (int32, wrapping), VQRDMULH by the Q31 multiplier, then VRSHL — the last rounding
    ties toward +∞, where the scalar `multiply_by_quantized_multiplier` rounds ties away from zero.
    `quantized_multiplier` and `shift` may be arrays (one per channel) broadcasting against x."""
    shift = _i64(shift)
    left, right = np.maximum(shift, 0), np.maximum(-shift, 0)
    x = wrap(_i64(x) << left, 32)
    return rounding_shift_right_up(saturating_rounding_doubling_high_mul(x, quantized_multiplier), right)


def multiply_by_quantized_multiplier_single_rounding(x, quantized_multiplier: int, shift: int) -> np.ndarray:
    """The TFLITE_SINGLE_ROUNDING variant: one rounding, (x·q + 2^(30−shift)) >> (31 − shift)."""
    total = 31 - shift
    return (_i64(x) * quantized_multiplier + (np.int64(1) << (total - 1))) >> total


def f32(x) -> float:
    """Round a Python float to float32 and back: the value a C++ `float` expression holds."""
    return float(np.float32(x))


def f32_div(a, b) -> float:
    """float32 a / b, as C++ computes `float / float` (IEEE, correctly rounded)."""
    return float(np.float32(a) / np.float32(b))


def f32_mul(a, b) -> float:
    return float(np.float32(a) * np.float32(b))
