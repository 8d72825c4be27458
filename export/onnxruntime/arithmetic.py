"""ONNX Runtime's integer semantics: what its CPU execution provider computes for edgeact's QDQ graphs.

Reproduced from ORT's source (MLAS and the CPU kernels, ORT 1.32) and checked against ORT itself by
the tests, code for code:

- DequantizeLinear: (q − z) as an integer, then · scale in float32.
- QuantizeLinear (MLAS): float32 division by the scale, clamp, round half to even, + zero point.
- An activation exported natively runs between DQ and Q in float32 with ORT's own kernel: MLAS's
  rational approximations for Sigmoid and Tanh (evaluated with fused multiply-add, as the FMA3
  kernels that MLAS dispatches on x86-64 do), plain float32 arithmetic for the piecewise ones.
  DQ → Sigmoid/LeakyRelu → Q is fused into com.microsoft QLinearSigmoid / QLinearLeakyRelu, whose
  256-entry table is built from the same float kernel and MLAS quantization, so the codes agree.
- Everything else is exported as an exact lookup table: the ideal float64 table (the base class).
  That includes Elu, Selu, Softplus, Mish and erf-GELU, whose ORT kernels are not reproducible:
  they mix a vectorized body with a scalar tail (Eigen's exp, std::erff), so one input value can
  give two outputs depending on where it sits in the tensor.
- Checked on x86-64 (AVX-512 VNNI host), under qemu-x86_64 -cpu Haswell / Nehalem (tests/test_x86_cpus.py)
  and in ORT's aarch64 wheel under QEMU (tests/test_onnx_arm.py). The exported weights are uint8 (ORT's
  U8U8 kernels), exact on every CPU; ORT's u8s8 kernels on AVX2 saturate pairs of products to int16,
  which semantics 'onnxruntime-x86-avx2' models for files written with int8 weights.

Which lowering is the default for an activation is decided here (`default_lowering`, from the per-activation
registry in natives.py), because the table this semantics returns must be the one the exported graph computes.
"""
from __future__ import annotations

import functools
from typing import Callable

import numpy as np
import torch

from edgeact.activations import BoundActivation
from edgeact.errors import UnsupportedError
from edgeact.qparams import QuantParams
from edgeact.arithmetic import Arithmetic

F32 = np.float32

# ---------------------------------------------------------------------------------------------
# float32 arithmetic as the hardware does it


def fma32(a, b, c) -> np.ndarray:
    """Fused multiply-add in float32: a·b + c rounded once (like vfmadd…ps), computed in NumPy.

    a·b of two float32 is exact in float64; the sum is rounded to float64 and then to float32.
    That double rounding differs from a single rounding only when the float64 sum lands exactly
    halfway between two float32 numbers while the exact sum does not; the (exact) two-sum error
    term tells which neighbour the exact sum is closer to.
    """
    a, b, c = np.broadcast_arrays(*(np.asarray(t, dtype=F32).astype(np.float64) for t in (a, b, c)))
    p = a * b
    s = p + c
    bv = s - p
    err = (p - (s - bv)) + (c - bv)
    r = s.astype(F32)
    r64 = r.astype(np.float64)
    other = np.nextafter(r, np.where(s > r64, F32(np.inf), F32(-np.inf)).astype(F32))
    halfway = (s != r64) & ((other.astype(np.float64) + r64) / 2 == s) & (err != 0)
    if np.any(halfway):
        towards_other = (other.astype(np.float64) - s) * err > 0
        r = np.where(halfway & towards_other, other, r)
    return np.asarray(r, dtype=F32)


def _f32(v) -> np.ndarray:
    return np.asarray(v, dtype=F32)


# MLAS constants (onnxruntime/core/mlas/lib/logistic.cpp, tanh.cpp): the Eigen rational approximations.
_LOGISTIC = {k: F32(v) for k, v in dict(
    lo=-18.0, hi=18.0,
    a9=4.37031012579801e-11, a7=1.15627324459942e-07, a5=6.08574864600143e-05, a3=8.51377133304701e-03,
    a1=2.48287947061529e-01,
    b10=6.10247389755681e-13, b8=5.76102136993427e-09, b6=6.29106785017040e-06, b4=1.70198817374094e-03,
    b2=1.16817656904453e-01, b0=9.93151921023180e-01).items()}
_TANH = {k: F32(v) for k, v in dict(
    lo=-9.0, hi=9.0,
    a13=-2.76076847742355e-16, a11=2.00018790482477e-13, a9=-8.60467152213735e-11, a7=5.12229709037114e-08,
    a5=1.48572235717979e-05, a3=6.37261928875436e-04, a1=4.89352455891786e-03,
    b6=1.19825839466702e-06, b4=1.18534705686654e-04, b2=2.26843463243900e-03, b0=4.89352518554385e-03).items()}


def _mul_add(a, b, c) -> np.ndarray:
    """a·b + c in float32 with two roundings (SSE: no fused multiply-add)."""
    return (_f32(a) * _f32(b)).astype(F32) + _f32(c)


def mlas_logistic(x, fused: bool = True) -> np.ndarray:
    """MlasComputeLogistic: clamp to ±18, p(x)/q(x) + 0.5, floored at 0. `fused`: its FMA3 kernel (x86-64 with
    FMA3) and its NEON kernel (aarch64) multiply-add in one rounding; the SSE kernel (older x86-64) in two."""
    c, ma = _LOGISTIC, (fma32 if fused else _mul_add)
    v = np.minimum(np.maximum(_f32(x), c["lo"]), c["hi"])
    v2 = v * v
    p = ma(v2, c["a9"], c["a7"])
    for k in ("a5", "a3", "a1"):
        p = ma(v2, p, c[k])
    p = v * p
    q = ma(v2, c["b10"], c["b8"])
    for k in ("b6", "b4", "b2", "b0"):
        q = ma(v2, q, c[k])
    return np.maximum(F32(0), (p / q).astype(F32) + F32(0.5)).astype(F32)


def mlas_tanh(x) -> np.ndarray:
    """MlasComputeTanh (FMA3 kernel): clamp to ±9, odd polynomial over even polynomial."""
    c = _TANH
    v = np.minimum(np.maximum(_f32(x), c["lo"]), c["hi"])
    v2 = v * v
    p = fma32(v2, c["a13"], c["a11"])
    for k in ("a9", "a7", "a5", "a3", "a1"):
        p = fma32(v2, p, c[k])
    p = v * p
    q = fma32(v2, c["b6"], c["b4"])
    for k in ("b2", "b0"):
        q = fma32(v2, q, c[k])
    return (p / q).astype(F32)


def dequantize_f32(q, qp: QuantParams) -> np.ndarray:
    """DequantizeLinear: (q − z) · s in float32."""
    return (np.asarray(q, dtype=np.int64) - qp.zero_point).astype(F32) * F32(qp.scale)


def quantize_f32(y, qp: QuantParams) -> np.ndarray:
    """MlasQuantizeLinear: y / s in float32, clamp to [qmin − z, qmax − z], round half to even, + z."""
    v = (_f32(y) / F32(qp.scale)).astype(F32)
    v = np.clip(v, F32(qp.qmin - qp.zero_point), F32(qp.qmax - qp.zero_point))
    return np.rint(v).astype(np.int64) + qp.zero_point


# ---------------------------------------------------------------------------------------------
# activations ORT computes natively: registered per activation name in export/onnxruntime/natives.py


def native_kernel(act: BoundActivation) -> Callable[[np.ndarray], np.ndarray] | None:
    """ORT's float32 computation of `act` (bound to its parameters), or None if not reproducible."""
    from edgeact.export.onnxruntime.natives import NATIVES

    entry = NATIVES.get(act.name) if act.definition is not None else None
    if entry is None or entry.kernel is None:
        return None
    params = dict(act.params)
    if entry.exact_when is not None and not entry.exact_when(params):
        return None
    if act.channels is not None and not entry.per_channel:
        return None  # per-channel parameters only where the ONNX op broadcasts them (PRelu)
    for k, v in params.items():
        if isinstance(v, (np.ndarray, list, tuple)) and np.size(v) == 1:
            params[k] = float(np.asarray(v).reshape(-1)[0])
    fn = entry.kernel
    return lambda x: fn(x, **params)


def default_lowering(act: BoundActivation, cpu: str = "x86") -> str:
    """'native' or 'table': what edgeact exports for `act` on `cpu` ('x86', 'arm') unless told otherwise
    (natives.py says where, and why)."""
    from edgeact.export.onnxruntime.natives import NATIVES

    if act.channels is not None:
        return "table"  # ORT's broadcasting PRelu kernel is ~4× slower than the table
    entry = NATIVES.get(act.name) if act.definition is not None else None
    if entry is not None and cpu in entry.native_on and native_kernel(act) is not None:
        return "native"
    return "table"


class OnnxRuntimeArithmetic(Arithmetic):
    """ONNX Runtime (CPU EP) arithmetic for the graphs `edgeact.export.to_onnx` writes.

    Model ops, as ORT runs edgeact's QDQ graph (uint8 tensors inside, see export/onnx_model.py):
    Conv / depthwise Conv → QLinearConv and Linear → QGemm: exact int32 accumulator, then
    float32(acc) · float32(s_in·s_w[c] / s_out), round half to even (MlasRequantizeOutput).
    Mul → QLinearMul and Add → QLinearAdd where their codes are the same on every CPU (the writer then gives
    their Q/DQ rank-0 scales so ORT fuses them; `qlinear_mul`, `qlinear_add_codes`); otherwise they and Concat
    stay DQ → float32 op → Q (shape-[1] scales: ORT does not fuse them). The global
    mean → QLinearGlobalAveragePool (DQ → GlobalAveragePool → Q, fused) where its scale is in the kernel's
    range, else, like average pooling, a depthwise conv with weights 1 of scale 1/count: both requantize the
    integer window sum once, with different float32 scales.
    """

    name = "onnxruntime"

    def activation_table(self, act: BoundActivation, in_qp: QuantParams, out_qp: QuantParams) -> np.ndarray:
        from edgeact.export.onnxruntime import chains

        chain = chains.search(act, in_qp, out_qp)  # the integer kernels' codes, where they are the same everywhere
        if chain is not None:
            return chain.table
        if default_lowering(act) == "native":
            return self.native_table(act, in_qp, out_qp)
        return super().activation_table(act, in_qp, out_qp)

    def native_table(self, act: BoundActivation, in_qp: QuantParams, out_qp: QuantParams) -> np.ndarray:
        """The codes of DQ → ORT's float kernel → Q; (channels, n) for a per-channel PReLU."""
        kernel = native_kernel(act)
        if kernel is None:
            raise UnsupportedError(
                f"ONNX Runtime's native kernel for {act.name!r} (params {dict(act.params)}) is not reproduced "
                "by edgeact, so its codes cannot be predicted: export it as a table (lowering='table')"
            )
        y = kernel(dequantize_f32(in_qp.codes(), in_qp))
        return quantize_f32(y, out_qp)

    # ---- model ops (torch int64 code tensors) -----------------------------------------------

    def quantize(self, x: torch.Tensor, qp: QuantParams) -> torch.Tensor:
        """QuantizeLinear on a float32 graph input: float32 division, round half to even."""
        return self._quantize_f32(x.float() / torch.tensor(F32(qp.scale)), qp)

    def requantize_accumulator(self, acc: torch.Tensor, in_qp: QuantParams, w_qp: QuantParams,
                               out_qp: QuantParams, channel_axis: int = 1, *, op: str = "conv2d",
                               depth: int | None = None) -> torch.Tensor:
        scale = (F32(in_qp.scale) * w_qp.scale_array().astype(F32)).astype(F32) / F32(out_qp.scale)
        return self._requantize_int32(acc, scale.astype(F32), out_qp, channel_axis)

    def add(self, a, qa: QuantParams, b, qb: QuantParams, out_qp: QuantParams) -> torch.Tensor:
        """QLinearAdd where `add_is_fused` (the writer then lets ORT fuse it), else DQ → float32 Add → Q."""
        if a.shape == b.shape and self.add_is_fused(qa, qb, out_qp):
            shift = 128 if out_qp.dtype == "int8" else 0
            codes = qlinear_add_codes(*_key(qa), *_key(qb), *_key(out_qp), "sse")
            n_b = qb.qmax - qb.qmin + 1
            return torch.from_numpy(codes)[(a.long() - qa.qmin) * n_b + (b.long() - qb.qmin)] - shift
        return self._quantize_f32((self.dequantize(a, qa) + self.dequantize(b, qb)) / torch.tensor(F32(out_qp.scale)),
                                  out_qp)

    def add_is_fused(self, qa: QuantParams, qb: QuantParams, out_qp: QuantParams) -> bool:
        """Whether an Add of two tensors of one shape is written for QLinearAdd: when MLAS's three kernels —
        SSE2 (separate float32 multiply and add), AVX2 (fused multiply-add) and NEON (fixed-point multipliers,
        or float when the scale ratios are out of its range) — give the same codes for every pair of codes."""
        variants = [qlinear_add_codes(*_key(qa), *_key(qb), *_key(out_qp), k) for k in ("sse", "avx2", "neon")]
        return all(np.array_equal(variants[0], v) for v in variants[1:])

    def mul(self, a, qa: QuantParams, b, qb: QuantParams, out_qp: QuantParams) -> torch.Tensor:
        """QLinearMul where `mul_is_fused` (the writer then lets ORT fuse it), else DQ → float32 Mul → Q."""
        if self.mul_is_fused(qa, qb, out_qp):
            return qlinear_mul(a, qa, b, qb, out_qp)
        return self._quantize_f32((self.dequantize(a, qa) * self.dequantize(b, qb)) / torch.tensor(F32(out_qp.scale)),
                                  out_qp)

    def mul_is_fused(self, qa: QuantParams, qb: QuantParams, out_qp: QuantParams) -> bool:
        """Whether a Mul with these parameters is written for QLinearMul: when its codes are the same on every
        CPU, i.e. MLAS's x86 kernel (separate float32 multiply and add) and its aarch64 kernel (GCC contracts
        them into one fused multiply-add) agree on every pair of input codes."""
        return qlinear_mul_portable(*_key(qa), *_key(qb), *_key(out_qp))

    def average(self, window_sum: torch.Tensor, count: int, in_qp: QuantParams, out_qp: QuantParams, *,
                op: str = "mean") -> torch.Tensor:
        """Σ(x − z_in) requantized once: by QLinearGlobalAveragePool's scale for a global mean it can run
        (`global_mean_scale`), else by the depthwise conv of ones edgeact exports (s_in·f32(1/count)/s_out)."""
        acc = window_sum.long() - count * in_qp.zero_point
        scale = global_mean_scale(in_qp, out_qp, count) if op == "mean" else None
        if scale is None:
            scale = (F32(in_qp.scale) * average_weight_scale(count)).astype(F32) / F32(out_qp.scale)
        return self._requantize_int32(acc, np.asarray([scale], dtype=F32), out_qp, 1)

    def requantize(self, q: torch.Tensor, in_qp: QuantParams, out_qp: QuantParams) -> torch.Tensor:
        """DQ → Q (concatenation): float32 dequantization, float32 division."""
        return self._quantize_f32(self.dequantize(q, in_qp) / torch.tensor(F32(out_qp.scale)), out_qp)

    @staticmethod
    def _quantize_f32(v: torch.Tensor, qp: QuantParams) -> torch.Tensor:
        """float32 values already divided by the scale → codes (clamp, round half to even, + z)."""
        z = qp.zero_point
        return torch.round(v.float().clamp(qp.qmin - z, qp.qmax - z)).long() + z

    @staticmethod
    def _requantize_int32(acc: torch.Tensor, scale: np.ndarray, out_qp: QuantParams, channel_axis: int):
        """MlasRequantizeOutput: float32(acc) · scale[c] in float32, clamp, round half to even, + z."""
        s = torch.from_numpy(np.ascontiguousarray(scale, dtype=F32))
        if s.numel() > 1:
            shape = [1] * acc.dim()
            shape[channel_axis] = -1
            s = s.reshape(shape)
        else:
            s = s.reshape(())
        return OnnxRuntimeArithmetic._quantize_f32(acc.float() * s, out_qp)


def qlinear_mul(a: torch.Tensor, qa: QuantParams, b: torch.Tensor, qb: QuantParams,
                out_qp: QuantParams) -> torch.Tensor:
    """MlasQLinearMul on x86-64: the exact integer product (a − z_a)(b − z_b), converted to float32, times the
    float32 ratio (s_a·s_b)/s_c, plus the output zero point (of the uint8 codes ORT runs: int8 codes + 128),
    rounded half to even and saturated; a separate float32 multiply and add (its SSE2 kernel, used on every
    x86-64 CPU). ORT's aarch64 build fuses the two into one FMA (measured under QEMU), which rounds differently
    near ties; `qlinear_mul_portable` says when the two agree."""
    shift = 128 if out_qp.dtype == "int8" else 0
    ratio = qlinear_mul_ratio(qa.scale, qb.scale, out_qp.scale)
    p = ((a.long() - qa.zero_point) * (b.long() - qb.zero_point)).float()
    t = p * torch.tensor(ratio) + torch.tensor(F32(out_qp.zero_point + shift))
    return torch.round(t).clamp(out_qp.qmin + shift, out_qp.qmax + shift).long() - shift


def _key(qp: QuantParams) -> tuple:
    return float(qp.scale), int(qp.zero_point), int(qp.qmin), int(qp.qmax)


def qlinear_mul_ratio(sa: float, sb: float, sc: float) -> F32:
    """The float32 ratio (s_a·s_b)/s_c that MLAS's QLinearMul multiplies the integer products by."""
    return F32(F32(F32(sa) * F32(sb)) / F32(sc))


def qlinear_mul_requantize(p, ratio: F32, zero_point: int, fused: bool, lo: int = 0, hi: int = 255) -> np.ndarray:
    """QLinearMul's requantization of integer products `p` to (uint8) codes, NumPy: f32(p)·ratio + zero point,
    rounded half to even, saturated; one rounding (`fused`: aarch64's FMA) or two (x86-64)."""
    p, z = np.asarray(p, dtype=F32), F32(zero_point)
    t = fma32(p, ratio, z) if fused else (p * ratio).astype(F32) + z
    return np.clip(np.rint(t), lo, hi).astype(np.int64)


def qlinear_mul_everywhere(p, ratio: F32, zero_point: int, lo: int = 0, hi: int = 255) -> np.ndarray | None:
    """The codes of products `p`, if x86-64's and aarch64's QLinearMul give the same for all of them, else None."""
    separate = qlinear_mul_requantize(p, ratio, zero_point, False, lo, hi)
    return separate if np.array_equal(separate, qlinear_mul_requantize(p, ratio, zero_point, True, lo, hi)) else None


@functools.lru_cache(maxsize=4096)
def qlinear_mul_portable(sa, za, amin, amax, sb, zb, bmin, bmax, sc, zc, cmin, cmax) -> bool:
    """x86's and aarch64's QLinearMul give the same codes for every pair of input codes (see mul_is_fused)."""
    shift = 128 if cmin == -128 else 0
    p = np.unique(np.outer(np.arange(amin, amax + 1) - za, np.arange(bmin, bmax + 1) - zb))
    return qlinear_mul_everywhere(p, qlinear_mul_ratio(sa, sb, sc), zc + shift, cmin + shift,
                                  cmax + shift) is not None


@functools.lru_cache(maxsize=1024)
def qlinear_add_codes(sa, za, amin, amax, sb, zb, bmin, bmax, sc, zc, cmin, cmax, kernel: str) -> np.ndarray:
    """MlasQLinearAdd's output codes (uint8 inside ORT) for every pair of input codes, a-major, per kernel:
    'sse' (x86-64 without AVX2), 'avx2' (x86-64 with AVX2 and later) or 'neon' (aarch64); the int8 model's
    codes run shifted by 128, zero points too (the same differences)."""
    sh = [128 if lo == -128 else 0 for lo in (amin, bmin, cmin)]
    a = np.repeat(np.arange(amin, amax + 1) + sh[0], bmax - bmin + 1).astype(np.int64)
    b = np.tile(np.arange(bmin, bmax + 1) + sh[1], amax - amin + 1).astype(np.int64)
    za, zb, zc = za + sh[0], zb + sh[1], zc + sh[2]
    lo, hi = cmin + sh[2], cmax + sh[2]
    ra, rb = F32(F32(sa) / F32(sc)), F32(F32(sb) / F32(sc))
    if kernel == "neon":
        codes = _neon_fixed_point_add(a - za, b - zb, ra, rb)
        if codes is None:  # MlasQLinearAddKernelRawHelper: float32 values, one division, nearbyintf
            va = (F32(sa) * (a - za).astype(F32)).astype(F32)
            vb = (F32(sb) * (b - zb).astype(F32)).astype(F32)
            v = np.clip(((va + vb).astype(F32) / F32(sc)).astype(F32), F32(lo - zc), F32(hi - zc))
            return np.rint((v + F32(zc)).astype(F32)).astype(np.int64)
        return np.clip(codes + zc, lo, hi)
    fixed = F32(F32(zc) - F32(F32(ra * F32(za)) + F32(rb * F32(zb))))
    af, bf = a.astype(F32), b.astype(F32)
    if kernel == "avx2":
        t = fma32(af, ra, fma32(bf, rb, fixed))
    else:
        t = ((fixed + (af * ra).astype(F32)).astype(F32) + (bf * rb).astype(F32)).astype(F32)
    return np.clip(np.rint(t), lo, hi).astype(np.int64)


def _neon_fixed_point_add(da: np.ndarray, db: np.ndarray, ra: F32, rb: F32) -> np.ndarray | None:
    """MlasCalcQLinearAddParameters and the NEON kernel: 22-bit multipliers, a shift that rounds half away from
    zero; None where MLAS falls back to float (ratios outside [2^-14, 256) or multipliers out of range)."""
    if not (2.0 ** -14 <= ra < 256 and 2.0 ** -14 <= rb < 256):
        return None
    exponent = int(np.asarray(max(ra, rb), F32).view(np.uint32) >> 23) - 127
    shift = 21 - exponent
    if not 13 <= shift <= 31:
        return None
    ma, mb = (int(np.rint(F32(r * F32(2.0 ** shift)))) for r in (ra, rb))
    if not (ma < 1 << 22 and mb < 1 << 22 and (ma >= 1 << 21 or mb >= 1 << 21)):
        return None
    acc = da * ma + db * mb
    acc = acc - (acc < 0)
    return (acc + (1 << (shift - 1))) >> shift


def global_mean_scale(in_qp: QuantParams, out_qp: QuantParams, count: int) -> np.float32 | None:
    """The scale of ORT's QLinearGlobalAveragePool (what it fuses DQ → GlobalAveragePool → Q into), or None where
    that kernel refuses the parameters (the writer then exports a conv of ones).

    MLAS computes f32(s_in) / (f32(s_out) · f32(count)) and requantizes the integer sum Σ(x − z_in) with it as
    MlasRequantizeOutput does for QLinearConv — the same float32 code on SSE2/AVX and NEON; it throws for a
    scale outside [2⁻³², 256) or an image of 2²⁴ values or more."""
    if count >= 1 << 24:
        return None
    scale = F32(in_qp.scale) / (F32(out_qp.scale) * F32(count))
    return scale if F32(2.0 ** -32) <= scale < F32(256.0) else None


def average_weight_scale(count: int) -> np.float32:
    """The scale of the all-ones int8 weights of a pooling conv: float32(1 / count)."""
    return F32(1.0 / count)


ARITHMETIC = OnnxRuntimeArithmetic()
