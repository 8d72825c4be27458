"""TFLite (LiteRT) integer semantics: the int8 arithmetic of the TFLite graph edgeact exports.

Each activation is lowered (`plan_activation`) either to a native int8 TFLite kernel or to an exact
256-entry table (BITCAST int8→uint8 → CAST int16 → GATHER) — whichever is exact under every LiteRT
configuration and faster (measured, benchmarks/RESULTS-tflite.md) — and its 'tflite' table is what
that lowering computes: the native kernel's arithmetic, reproduced step by step, or the ideal table
(float64, ties to even) that the GATHER carries.

| native kernel (`native_kernel`)       | arithmetic reproduced                             | emitted when |
|---------------------------------------|---------------------------------------------------|--------------|
| LOGISTIC (sigmoid, out (1/256, −128)) | LUTPopulate: float32 libm expf, roundf             | XNNPACK's table agrees |
| TANH (tanh, out (1/128, 0))           | LUTPopulate: float32 libm tanhf, roundf            | XNNPACK's table agrees |
| ELU (elu, α = 1)                      | LUTPopulate: float32 libm expm1f                   | XNNPACK's table agrees |
| GELU (both forms)                     | LUTPopulate: float32 libm erfcf / tanhf            | always |
| PRELU                                 | slope as int8 (scale max|α|/127), two multipliers  | per-channel slope |
| RELU, RELU6, RELU_N1_TO_1, RELU_0_TO_1| MultiplyByQuantizedMultiplier, clamp z+roundf(b/s) | never standalone (table is faster) |
| HARD_SWISH                            | 16-bit fixed point of reference/hard_swish.h      | never standalone (table is faster) |

swish, hard_swish, hard_mish, hard_sigmoid, leaky_relu, selu and mish become chains of int8 ops that XNNPACK
runs (export/litert/chains.py: one delegated partition instead of a table outside it) wherever such a
chain stays within one step of the ideal table; the table's codes are then what the chain computes.
Everything else — identity, softplus, PWL stand-ins, sigmoid/tanh with other output parameters,
and the chained activations where no chain qualifies — is a table. Measured on ai-edge-litert 2.3:
the XNNPACK delegate replaces int8 LOGISTIC, TANH and ELU with tables of its own (`xnnpack_lut_int8`),
which differ from TFLite's at ~0.1 % of the quantization pairs, and LEAKY_RELU with an 8-bit
fixed-point multiplier that differs at most pairs (modelled for the chain: `chains.xnnpack_leaky_relu`); RELU*, PRELU,
HARD_SWISH and GELU stay on the builtin kernels, whose optimized and reference versions agree.
LOGISTIC's and TANH's outputs are fixed by the TFLite quantization spec; for other output parameters
edgeact keeps the user's out_qp with the correctly rounded table rather than LOGISTIC + a
requantizing QUANTIZE (which would round twice).

The float steps of LUTPopulate call the C library's float32 functions through ctypes, because that
is what LiteRT calls: NumPy's own float32 exp/tanh differ from glibc by an ulp at some inputs, enough
to flip a code that sits near a rounding tie. (On another libm, e.g. on an ARM board, a LUT entry near
a tie could differ; the GATHER lowering is immune to that.)
"""
from __future__ import annotations

import ctypes
import ctypes.util
import functools
import math
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import torch

from edgeact import fixedpoint as fp
from edgeact.activations import BoundActivation
from edgeact.errors import UnsupportedError
from edgeact.qparams import QuantParams
from edgeact.arithmetic import Arithmetic

# ---- the C library's float32 math (what LiteRT's LUTPopulate calls) ---------------------------

_LIBM = ctypes.CDLL(ctypes.util.find_library("m") or "libm.so.6")


def _cfun(name: str):
    f = getattr(_LIBM, name)
    f.restype = ctypes.c_float
    f.argtypes = [ctypes.c_float]
    return f


_EXPF, _TANHF, _EXPM1F, _ERFCF = (_cfun(n) for n in ("expf", "tanhf", "expm1f", "erfcf"))
_EXP = _LIBM.exp
_EXP.restype, _EXP.argtypes = ctypes.c_double, [ctypes.c_double]
_F = np.float32
_SQRT2_OVER_PI_F32 = _F(2.0 / math.sqrt(math.pi) * math.sqrt(0.5))  # gelu_internal::kSqrt2dPi
_MINUS_SQRT1_2_F32 = _F(-math.sqrt(0.5))


def _logistic_f32(x: np.float32) -> np.float32:
    return _F(1.0) / (_F(1.0) + _F(_EXPF(-x)))


def _logistic_xnnpack(x: np.float32) -> np.float32:
    """XNNPACK's reference SigmoidOp: e/(1+e) in double with e = exp(x), rounded to float."""
    if x > 100:
        return _F(1.0)
    if x < -100:
        return _F(0.0)
    e = _EXP(float(x))
    return _F(e / (1.0 + e))


def _tanh_f32(x: np.float32) -> np.float32:
    return _F(_TANHF(x))


def _elu_f32(x: np.float32) -> np.float32:
    return _F(_EXPM1F(x)) if x < 0 else x


def _gelu_f32(x: np.float32) -> np.float32:
    return _F(0.5) * x * _F(_ERFCF(x * _MINUS_SQRT1_2_F32))


def _gelu_tanh_f32(x: np.float32) -> np.float32:
    inner = _SQRT2_OVER_PI_F32 * (x + _F(0.044715) * x * x * x)
    return _F(0.5) * x * (_F(1.0) + _F(_TANHF(inner)))


@functools.lru_cache(maxsize=4096)
def _transformed(transform, s_in: float, z_in: int) -> np.ndarray:
    """f(s_in·(q − z_in)) in float32 for q = −128..127, f called exactly as LiteRT calls it."""
    s_in32 = _F(s_in)
    with np.errstate(over="ignore", invalid="ignore"):
        y = np.array([transform(s_in32 * _F(q - z_in)) for q in range(-128, 128)], dtype=np.float32)
    y.flags.writeable = False
    return y


@functools.lru_cache(maxsize=4096)
def _lut_populate(transform, s_in: float, z_in: int, s_out: float, z_out: int) -> bytes:
    inverse_scale = _F(1.0) / _F(s_out)
    with np.errstate(over="ignore", invalid="ignore"):
        quantized = fp.round_half_away(_transformed(transform, s_in, z_in) * inverse_scale) + _F(z_out)
    # (int32_t) of a NaN or out-of-range float is x86's "integer indefinite", INT32_MIN
    fits = np.isfinite(quantized) & (quantized >= -(2.0**31)) & (quantized < 2.0**31)
    codes = np.where(fits, np.nan_to_num(quantized), -(2.0**31)).astype(np.int64)
    return np.clip(codes, -128, 127).tobytes()


def lut_populate_int8(transform: Callable[[np.float32], np.float32], in_qp: QuantParams,
                      out_qp: QuantParams) -> np.ndarray:
    """TFLite LUTPopulate<int8_t>: the table of a LUT kernel, in float32 as the C++ computes it.

    dequantized = s_in·(q − z_in); y = f(dequantized); code = (int)(roundf(y·(1/s_out)) + z_out), clamped.
    """
    return np.frombuffer(_lut_populate(transform, in_qp.scale, in_qp.zero_point, out_qp.scale,
                                       out_qp.zero_point), dtype=np.int64).copy()


@functools.lru_cache(maxsize=4096)
def _xnnpack_lut(op: str, s_in: float, z_in: int, s_out: float, z_out: int) -> bytes:
    inv = _F(1.0) / _F(s_out)
    with np.errstate(over="ignore", invalid="ignore"):
        q = np.rint((_transformed(_XNNPACK_TRANSFORMS[op], s_in, z_in) * inv) + _F(z_out))
    return np.clip(np.nan_to_num(q), -128, 127).astype(np.int64).tobytes()


def xnnpack_lut_int8(op: str, in_qp: QuantParams, out_qp: QuantParams) -> np.ndarray:
    """The table the XNNPACK delegate builds for int8 LOGISTIC / TANH / ELU (measured, see tests).

    XNNPACK evaluates its reference unary ops (src/reference/unary-elementwise.cc: sigmoid as
    e/(1+e) in double, tanhf, expm1f) on the dequantized codes, then quantizes as
    round-to-nearest-even(y·(1/s_out) + z_out) in float32. TFLite's LUTPopulate instead computes
    1/(1+expf(−x)) in float and rounds half away from zero before adding the zero point, so a value
    within an ulp of a tie can land one code apart.
    """
    return np.frombuffer(_xnnpack_lut(op, in_qp.scale, in_qp.zero_point, out_qp.scale, out_qp.zero_point),
                         dtype=np.int64).copy()


# ---- native kernels ------------------------------------------------------------------------------

def relu_x_table(in_qp: QuantParams, out_qp: QuantParams, act_min: float, act_max: float) -> np.ndarray:
    """RELU / RELU6 / RELU_N1_TO_1 / RELU_0_TO_1 (activations.cc QuantizedReluX, reference ReluX)."""
    mult, shift = fp.quantize_multiplier(fp.f32_div(in_qp.scale, out_qp.scale))
    lo = max(-128, out_qp.zero_point + int(fp.round_half_away(np.float32(act_min) / np.float32(out_qp.scale))))
    hi = 127 if math.isinf(act_max) else min(
        127, out_qp.zero_point + int(fp.round_half_away(np.float32(act_max) / np.float32(out_qp.scale))))
    x = in_qp.codes() - in_qp.zero_point
    y = out_qp.zero_point + fp.multiply_by_quantized_multiplier(x, mult, shift)
    return np.minimum(np.maximum(y, lo), hi)


def leaky_relu_table(in_qp: QuantParams, out_qp: QuantParams, alpha: float) -> np.ndarray:
    """LEAKY_RELU (reference QuantizeLeakyRelu): identity and alpha multipliers, float32-computed."""
    alpha32 = np.float32(alpha)
    m_alpha, s_alpha = fp.quantize_multiplier(
        float(np.float32(np.float32(in_qp.scale) * alpha32) / np.float32(out_qp.scale)))
    m_id, s_id = fp.quantize_multiplier(fp.f32_div(in_qp.scale, out_qp.scale))
    x = in_qp.codes() - in_qp.zero_point
    negative = m_alpha < 0
    scaled_alpha = fp.multiply_by_quantized_multiplier(x, abs(m_alpha), s_alpha)
    y = out_qp.zero_point + np.where(
        x >= 0, fp.multiply_by_quantized_multiplier(x, m_id, s_id), -scaled_alpha if negative else scaled_alpha)
    return np.clip(y, -128, 127)


def prelu_alpha_qparams(alpha) -> tuple[QuantParams, np.ndarray]:
    """The int8 tensor TFLite's PRELU reads the slope from: symmetric, scale max|α|/127, one scale."""
    alpha = np.atleast_1d(np.asarray(alpha, dtype=np.float64))
    amax = float(np.max(np.abs(alpha)))
    qp = QuantParams(amax / 127.0 if amax > 0 else 1.0, 0)
    codes = np.clip(np.rint(alpha / qp.scale), -127, 127).astype(np.int64)
    return qp, codes


def prelu_table(in_qp: QuantParams, out_qp: QuantParams, alpha) -> np.ndarray:
    """PRELU (reference Prelu): (channels, 256) for a per-channel slope, else (256,)."""
    alpha = np.asarray(alpha, dtype=np.float64)
    a_qp, a_codes = prelu_alpha_qparams(alpha)
    m1, s1 = fp.quantize_multiplier(fp.f32_div(in_qp.scale, out_qp.scale))
    m2, s2 = fp.quantize_multiplier(float(np.float32(np.float32(in_qp.scale) * np.float32(a_qp.scale))
                                          / np.float32(out_qp.scale)))
    x = in_qp.codes() - in_qp.zero_point
    pos = fp.multiply_by_quantized_multiplier(x, m1, s1)
    a = (a_codes - a_qp.zero_point).reshape(-1, 1)
    neg = fp.multiply_by_quantized_multiplier(x[None, :] * a, m2, s2)
    y = np.clip(out_qp.zero_point + np.where(x[None, :] >= 0, pos[None, :], neg), -128, 127)
    return y[0] if alpha.size == 1 else y


@dataclass(frozen=True)
class HardSwishParams:
    """HardSwishPrepare's fixed-point parameters (activations.cc), computed in float32 as there."""

    output_multiplier_int16: int
    output_exponent: int
    reluish_multiplier_int16: int
    reluish_exponent: int

    @classmethod
    def of(cls, in_qp: QuantParams, out_qp: QuantParams) -> "HardSwishParams":
        hires_input_scale = np.float32(1.0 / 128.0) * np.float32(in_qp.scale)
        reluish_scale = np.float32(3.0) / np.float32(32768.0)
        out_mult, out_exp = fp.quantize_multiplier(float(hires_input_scale / np.float32(out_qp.scale)))
        rel_mult, rel_exp = fp.quantize_multiplier(float(hires_input_scale / reluish_scale))
        return cls(fp.downscale_int32_to_int16_multiplier(out_mult), out_exp,
                   fp.downscale_int32_to_int16_multiplier(rel_mult), rel_exp)

    @property
    def supported(self) -> bool:
        """HardSwishPrepare refuses output_multiplier_exponent > 0 (s_out < s_in/128 roughly)."""
        return self.output_exponent <= 0


def hard_swish_table(in_qp: QuantParams, out_qp: QuantParams) -> np.ndarray:
    """HARD_SWISH int8 (reference/hard_swish.h), step by step in 16-bit fixed point."""
    p = HardSwishParams.of(in_qp, out_qp)
    x = fp.wrap(in_qp.codes() - in_qp.zero_point, 16)
    hires = fp.wrap(x * (1 << 7), 16)
    preshift_out = fp.saturating_rounding_doubling_high_mul(hires, p.output_multiplier_int16, bits=16)
    reluish = hires
    if p.reluish_exponent > 0:
        reluish = fp.saturating_left_shift_int16(reluish, p.reluish_exponent - 1)
    reluish = fp.saturating_rounding_doubling_high_mul(reluish, p.reluish_multiplier_int16, bits=16)
    if p.reluish_exponent > 0:
        reluish = fp.saturating_left_shift_int16(reluish, 1)
    if p.reluish_exponent < 0:
        reluish = fp.rounding_divide_by_pot(reluish, -p.reluish_exponent, bits=16)
    reluish = (reluish + (1 << 15)) >> 1
    preshift = fp.saturating_doubling_high_mul_int16(reluish, preshift_out)
    y = fp.rounding_divide_by_pot(preshift, -p.output_exponent, bits=16)
    y = fp.wrap(y + out_qp.zero_point, 16)
    return np.clip(y, -128, 127)


def requantize_table(in_qp: QuantParams, out_qp: QuantParams) -> np.ndarray:
    """QUANTIZE int8→int8 (reference Requantize): one multiplier s_in/s_out (double)."""
    mult, shift = fp.quantize_multiplier(float(in_qp.scale) / float(out_qp.scale))
    x = in_qp.codes() - in_qp.zero_point
    return np.clip(out_qp.zero_point + fp.multiply_by_quantized_multiplier(x, mult, shift), -128, 127)


# ---- which native kernel, and whether it is safe to emit ------------------------------------------

LOGISTIC_OUTPUT = QuantParams(1.0 / 256.0, -128)
TANH_OUTPUT = QuantParams(1.0 / 128.0, 0)
_LUT_TRANSFORMS = {"LOGISTIC": _logistic_f32, "TANH": _tanh_f32, "ELU": _elu_f32}
_XNNPACK_TRANSFORMS = {"LOGISTIC": _logistic_xnnpack, "TANH": _tanh_f32, "ELU": _elu_f32}
XNNPACK_LUT_OPS = frozenset(_XNNPACK_TRANSFORMS)  # int8 activations the XNNPACK delegate takes, as tables


@dataclass(frozen=True)
class NativeKernel:
    """A TFLite builtin that computes the activation at these parameters, and its options."""

    op: str
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ActivationLowering:
    """How one int8 activation becomes TFLite ops: a native kernel, the exact GATHER table, or nothing."""

    kind: str  # "native" | "chain" (int8 ops inside XNNPACK) | "table" | "none" (identity, equal parameters)
    op: str | None = None
    options: dict[str, Any] = field(default_factory=dict)
    reason: str = ""


def _same(a: QuantParams, b: QuantParams) -> bool:
    return (a.scale, a.zero_point, a.dtype) == (b.scale, b.zero_point, b.dtype)


def native_kernel(act: BoundActivation, in_qp: QuantParams, out_qp: QuantParams, *,
                  include_inexact: bool = False) -> NativeKernel | None:
    """The TFLite int8 builtin whose arithmetic defines edgeact's 'tflite' table, or None (ideal table);
    registered per activation in natives.py.

    None where TFLite has no kernel, where its kernel cannot honour the parameters (LOGISTIC/TANH
    outputs are fixed by the spec; HARD_SWISH refuses some scales; ELU has no alpha), and for
    leaky_relu: XNNPACK's LEAKY_RELU uses an 8-bit multiplier and disagrees with the builtin kernel at
    most scales, so only the exact table is the same under both. `include_inexact=True` returns
    LEAKY_RELU anyway (benchmarks measure it).
    """
    from edgeact.export.litert.natives import NATIVES  # per activation name (natives.py)

    entry = NATIVES.get(act.name)
    if entry is None or entry.kernel is None:
        return None
    return entry.kernel(dict(act.params), in_qp, out_qp, include_inexact)


def native_table(kernel: NativeKernel, in_qp: QuantParams, out_qp: QuantParams) -> np.ndarray:
    """What TFLite's builtin `kernel` computes for every int8 input code."""
    op = kernel.op
    if op in ("RELU", "RELU6", "RELU_N1_TO_1", "RELU_0_TO_1"):
        return relu_x_table(in_qp, out_qp, *kernel.options["bounds"])
    if op == "PRELU":
        return prelu_table(in_qp, out_qp, kernel.options["alpha"])
    if op == "LEAKY_RELU":
        return leaky_relu_table(in_qp, out_qp, kernel.options["alpha"])
    if op == "HARD_SWISH":
        return hard_swish_table(in_qp, out_qp)
    if op in _LUT_TRANSFORMS:
        return lut_populate_int8(_LUT_TRANSFORMS[op], in_qp, out_qp)
    if op == "GELU":
        return lut_populate_int8(_gelu_tanh_f32 if kernel.options["approximate"] else _gelu_f32, in_qp, out_qp)
    raise AssertionError(f"no table for TFLite kernel {op}")


# Measured with benchmarks/bench_tflite_activations.py (1×112×112×16, one thread, this host; see
# benchmarks/RESULTS-tflite.md): standalone, the requantizing builtins loop in scalar code and take
# longer than the GATHER table, while the LUT builtins (LOGISTIC, TANH, ELU, GELU) are far faster.
TABLE_IS_FASTER = frozenset({"RELU", "RELU6", "RELU_N1_TO_1", "RELU_0_TO_1", "HARD_SWISH", "PRELU"})


def plan_activation(act: BoundActivation, in_qp: QuantParams, out_qp: QuantParams, *,
                    chains: bool = True) -> ActivationLowering:
    """The ops edgeact emits for `act`: whichever of native kernel and GATHER table is exact and faster.

    Exact means: the same codes with and without the XNNPACK delegate. A native kernel that XNNPACK
    replaces (LOGISTIC, TANH, ELU) is emitted only when XNNPACK's table equals the builtin kernel's at
    these parameters (~99.9 % of pairs, `xnnpack_lut_int8`); otherwise the table goes into a GATHER.
    A per-channel PReLU slope has no single table and stays on PRELU.
    """
    if act.name == "identity" and _same(in_qp, out_qp):
        return ActivationLowering("none", reason="identity with equal parameters is a no-op")
    from edgeact.export.litert.chains import search  # chains of int8 ops XNNPACK runs (issue 11)

    chain = search(act, in_qp, out_qp) if chains else None
    if chain is not None:
        return ActivationLowering("chain", chain.chain.name, {"chain": chain.chain}, reason=chain.reason)
    kernel = native_kernel(act, in_qp, out_qp)
    if kernel is None:
        return ActivationLowering("table", reason=f"{act.name}: no int8 TFLite kernel computes it at these parameters")
    if kernel.op == "PRELU" and np.size(kernel.options["alpha"]) > 1:
        return ActivationLowering("native", kernel.op, kernel.options, reason="per-channel slope")
    if kernel.op in TABLE_IS_FASTER:
        return ActivationLowering("table", reason=f"the GATHER table is faster than {kernel.op} (measured)")
    if kernel.op in XNNPACK_LUT_OPS and not np.array_equal(
            native_table(kernel, in_qp, out_qp), xnnpack_lut_int8(kernel.op, in_qp, out_qp)):
        return ActivationLowering("table", reason=f"XNNPACK's {kernel.op} table differs from the builtin one here")
    return ActivationLowering("native", kernel.op, kernel.options)


# ---- model ops: the arithmetic of LiteRT's default configuration (XNNPACK delegate) ----------------

def _f32(x) -> np.float32:
    return np.float32(x)


def conv_requantization_scales(in_qp: QuantParams, w_qp: QuantParams, out_qp: QuantParams) -> np.ndarray:
    """XNNPACK's per-channel requantization scale of CONV_2D / DEPTHWISE_CONV_2D / FULLY_CONNECTED:
    (s_in·s_w[c]) / s_out, every step in float32."""
    w = w_qp.scale_array().astype(np.float32)
    return (np.float32(in_qp.scale) * w) / np.float32(out_qp.scale)


def add_parameters(qa: QuantParams, qb: QuantParams, out: QuantParams) -> tuple[int, int, int]:
    """XNNPACK qs8 ADD (xnn_init_qs8_add_minmax_scalar_params): 21-bit multipliers for s_a/s_out and
    s_b/s_out in float32, scaled by 2^shift with shift = 20 − exponent of the larger; (m_a, m_b, shift)."""
    a = _f32(_f32(qa.scale) / _f32(out.scale))
    b = _f32(_f32(qb.scale) / _f32(out.scale))
    exponent = int(np.frombuffer(max(a, b).tobytes(), dtype=np.uint32)[0] >> 23) - 127
    shift = 20 - exponent
    if not 12 <= shift <= 30:
        raise UnsupportedError(
            f"ADD with input/output scale ratios {float(a):.3g}, {float(b):.3g}: XNNPACK supports ratios in "
            "[2^-10, 2^8) — recalibrate so that the sum's range is comparable to its inputs'")
    m_a = int(np.rint(np.float32(np.ldexp(np.float64(a), shift))))
    m_b = int(np.rint(np.float32(np.ldexp(np.float64(b), shift))))
    return m_a, m_b, shift


def mean_scale(in_qp: QuantParams, out_qp: QuantParams, count: int) -> np.float32:
    """XNNPACK qs8 MEAN's scale of Σq: f32(s_in/s_out) · f32(1/count), in float32 (src/operators/
    reduce-nd.c: xnn_init_qs8_reduce_scalar_params, then xnn_update_qs8_reduce_scalar_params)."""
    return _f32(_f32(_f32(in_qp.scale) / _f32(out_qp.scale)) * _f32(_f32(1.0) / _f32(count)))


def mean_parameters(in_qp: QuantParams, out_qp: QuantParams, count: int) -> tuple[np.float32, np.float32]:
    """XNNPACK qs8 MEAN (reduce-nd.c): the int32 sum of the raw codes Σq goes through the reference
    int32→qs8 convert with the input zero point folded into a float output zero point,
    (scale, zero) = (mean_scale, f32(z_out − f32(f32(count·z_in)·scale)))."""
    scale = mean_scale(in_qp, out_qp, count)
    return scale, _f32(_f32(out_qp.zero_point) - _f32(_f32(count * in_qp.zero_point) * scale))


def mean_codes(sums, count: int, in_qp: QuantParams, out_qp: QuantParams) -> torch.Tensor:
    """XNNPACK qs8 MEAN of Σq (raw codes, zero point not subtracted): round-to-nearest-even of
    f32(f32(Σq)·scale) + zero in float32 (reference quantize: nearbyint(x·inv_scale + zero_point)),
    clamped. Ties are those of this float sum, not of the exact mean: a mean within an ulp of a
    tie can land on either side, so no exact-rational formula reproduces it."""
    scale, zero = mean_parameters(in_qp, out_qp, count)
    y = (torch.as_tensor(sums).long().float() * _torch_f32(scale)) + _torch_f32(zero)
    return torch.round(y).clamp(out_qp.qmin, out_qp.qmax).long()


def average_pool_weight_scale(in_qp: QuantParams, out_qp: QuantParams, count: int) -> np.float32:
    """The weight scale of the DEPTHWISE_CONV_2D of ones that average pooling is exported as.

    Its requantization scale f32(f32(s_in·w)/s_out) (`conv_requantization_scales`) should be as close
    to s_in/(count·s_out) as float32 allows; the arithmetic models the conv at whatever scale this
    returns, so any choice is exact — this one is the most accurate of the float32 values around
    1/count, and it always exists (no scale pair can make export fail)."""
    s_in, s_out = np.float64(_f32(in_qp.scale)), np.float64(_f32(out_qp.scale))
    ideal = s_in / (count * s_out)
    w = _f32(1.0 / count)
    candidates = [w]
    up = down = w
    for _ in range(8):
        up, down = np.nextafter(up, _f32(np.inf)), np.nextafter(down, _f32(0))
        candidates += [up, down]
    scales = (_f32(in_qp.scale) * np.array(candidates, np.float32)) / _f32(out_qp.scale)
    return candidates[int(np.argmin(np.abs(scales.astype(np.float64) - ideal)))]


def average_pool_scale(in_qp: QuantParams, out_qp: QuantParams, count: int) -> np.float32:
    """XNNPACK's requantization scale of that depthwise conv (fp32 requantization of Σ(q − z_in))."""
    w = average_pool_weight_scale(in_qp, out_qp, count)
    return conv_requantization_scales(in_qp, QuantParams((float(w),), (0,), axis=0), out_qp)[0]


def _torch_f32(x) -> torch.Tensor:
    return torch.as_tensor(np.asarray(x, dtype=np.float32))


class TFLiteArithmetic(Arithmetic):
    """Integer arithmetic of the TFLite int8 graph edgeact exports, as LiteRT 2.x runs it by default.

    Activations: the native kernel's arithmetic where edgeact emits the native kernel, else the ideal
    table that the GATHER lowering carries — the same with and without XNNPACK (see `plan_activation`).

    Model ops follow LiteRT's default configuration, in which the XNNPACK delegate runs QUANTIZE,
    CONV_2D, DEPTHWISE_CONV_2D, FULLY_CONNECTED, ADD, MUL, MEAN and DEQUANTIZE (measured: every one is
    delegated, and equals these formulas code for code). XNNPACK requantizes in float32 ("fp32"
    requantization: round-to-nearest-even of float(acc)·scale), while TFLite's own kernels use fixed-point
    multipliers, so the same file run with BUILTIN_WITHOUT_DEFAULT_DELEGATES or BUILTIN_REF differs at a
    few codes near ties: semantics 'tflite-builtin' and 'tflite-reference' (edgeact/semantics/
    tflite_builtin.py) reproduce those two kernel sets.
    """

    name = "tflite"
    # Whether convert lowers activations to chains of int8 ops (export/litert/chains.py): for kernel sets
    # with XNNPACK, where they run delegated; the builtin kernels run them as scalar loops, slower than a table.
    uses_chains = True

    # ---- model ops (XNNPACK) ------------------------------------------------------------------
    def quantize(self, x: torch.Tensor, qp: QuantParams) -> torch.Tensor:
        """QUANTIZE float→int8: round-half-even(x·(1/s)) + z in float32 (XNNPACK and the optimized kernel)."""
        inv = _torch_f32(np.float32(1.0) / np.float32(qp.scale))
        q = torch.round(x.float() * inv) + qp.zero_point
        return q.clamp(qp.qmin, qp.qmax).long()

    def requantize_accumulator(self, acc: torch.Tensor, in_qp: QuantParams, w_qp: QuantParams,
                               out_qp: QuantParams, channel_axis: int = 1, *, op: str = "conv2d",
                               depth: int | None = None) -> torch.Tensor:
        scales = conv_requantization_scales(in_qp, w_qp, out_qp)
        shape = [1] * acc.dim()
        shape[channel_axis] = -1
        scale = _torch_f32(scales).reshape(shape if scales.size > 1 else [])
        return self._finish(acc.float() * scale, out_qp)

    def add(self, a, qa: QuantParams, b, qb: QuantParams, out_qp: QuantParams) -> torch.Tensor:
        m_a, m_b, shift = add_parameters(qa, qb, out_qp)
        acc = (1 << (shift - 1)) + m_a * (a.long() - qa.zero_point) + m_b * (b.long() - qb.zero_point)
        return (torch.div(acc, 1 << shift, rounding_mode="floor") + out_qp.zero_point).clamp(
            out_qp.qmin, out_qp.qmax).long()

    def mul(self, a, qa: QuantParams, b, qb: QuantParams, out_qp: QuantParams) -> torch.Tensor:
        scale = _f32(_f32(_f32(qa.scale) * _f32(qb.scale)) / _f32(out_qp.scale))
        acc = (a.long() - qa.zero_point) * (b.long() - qb.zero_point)
        return self._finish(acc.float() * _torch_f32(scale), out_qp)

    def average(self, window_sum: torch.Tensor, count: int, in_qp: QuantParams, out_qp: QuantParams, *,
                op: str = "mean") -> torch.Tensor:
        """MEAN: XNNPACK's reduce (`mean_codes`). Average pooling (op 'avg_pool2d' / 'AVERAGE_POOL_2D'),
        exported as a depthwise conv of ones: round-half-even(f32(Σq − count·z_in) · `average_pool_scale`)
        + z_out, in float32."""
        if op in ("avg_pool2d", "AVERAGE_POOL_2D"):
            acc = window_sum.long() - count * in_qp.zero_point
            return self._finish(acc.float() * _torch_f32(average_pool_scale(in_qp, out_qp, count)), out_qp)
        if op not in ("mean", "MEAN"):
            raise ValueError(f"op must be 'mean' or 'avg_pool2d', got {op!r}")
        return mean_codes(window_sum, count, in_qp, out_qp)

    # The ops of an activation chain (export/litert/chains.py) on 256 codes, as XNNPACK
    # runs them; 'tflite-builtin' / 'tflite-reference' override with LiteRT's own kernels (whose ADD and
    # MUL also round otherwise), 'tflite-aarch64' with the NEON MUL.
    def chain_add(self, *args) -> torch.Tensor:
        return self.add(*args)

    def chain_mul(self, *args) -> torch.Tensor:
        return self.mul(*args)

    def chain_lut(self, op: str, in_qp: QuantParams, out_qp: QuantParams) -> np.ndarray:
        return xnnpack_lut_int8(op, in_qp, out_qp)

    def chain_leaky_relu(self, q: torch.Tensor, in_qp: QuantParams, out_qp: QuantParams, alpha: float) -> torch.Tensor:
        from edgeact.export.litert.chains import xnnpack_leaky_relu

        return xnnpack_leaky_relu(q, in_qp, out_qp, alpha)

    # requantize (concatenation of differently quantized inputs): the ideal formula of the base class,
    # exported as a GATHER table.

    def activation_table(self, act: BoundActivation, in_qp: QuantParams, out_qp: QuantParams) -> np.ndarray:
        for qp, role in ((in_qp, "input"), (out_qp, "output")):
            if qp.dtype != "int8":
                raise UnsupportedError(
                    f"TFLite semantics are full int8: the activation {role} is {qp.dtype} — "
                    "quantize activations with dtype='int8' for TFLite")
        plan = plan_activation(act, in_qp, out_qp, chains=self.uses_chains)
        if plan.kind == "chain":
            from edgeact.export.litert.chains import chain_codes

            return chain_codes(plan.options["chain"], in_qp, self)
        if plan.kind == "native":
            return native_table(NativeKernel(plan.op, plan.options), in_qp, out_qp)
        return super().activation_table(act, in_qp, out_qp)


ARITHMETIC = TFLiteArithmetic()
