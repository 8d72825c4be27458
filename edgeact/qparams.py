"""Quantization parameters: scale, zero point and integer type, validated.

Scales are stored rounded to float32, because that is what ONNX initializers and TFLite tensors
hold: every table, fake-quant step and exported file then uses the very same number.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from edgeact.errors import QuantizationError

DTYPE_RANGES = {"int8": (-128, 127), "uint8": (0, 255), "int16": (-32768, 32767), "int32": (-(2**31), 2**31 - 1)}
NUMPY_DTYPES = {"int8": np.int8, "uint8": np.uint8, "int16": np.int16, "int32": np.int32}


def round_half_even(x: np.ndarray) -> np.ndarray:
    """NumPy's rint: ties to even, as ONNX QuantizeLinear and torch.round do."""
    return np.rint(x)


def _as_float32_value(s: float) -> float:
    with np.errstate(over="ignore"):  # too large for float32 → inf, which the caller rejects
        return float(np.float32(s))


def _numbers(value, what: str, kind):
    """A scale or zero point as Python numbers: a number stays one, a tensor/array/list becomes a float or
    a tuple; None, text and booleans are refused (QuantizationError naming `what`)."""
    try:
        import torch

        if isinstance(value, torch.Tensor):
            value = value.detach().cpu().numpy()
    except ImportError:  # pragma: no cover - torch is a dependency
        pass
    if isinstance(value, np.ndarray):
        if value.dtype.kind not in "iuf":
            raise QuantizationError(f"{what} must be numbers, got an array of {value.dtype}")
        if value.size == 0:
            raise QuantizationError(f"{what} is empty; give one number (per tensor) or one per channel")
        flat = value.reshape(-1).tolist()
        return flat[0] if value.ndim == 0 else tuple(flat)
    if isinstance(value, (list, tuple)):
        if not value:
            raise QuantizationError(f"{what} is empty; give one number (per tensor) or one per channel")
        return tuple(_numbers(v, what, kind) for v in value)
    if isinstance(value, (bool, np.bool_)) or value is None or not isinstance(value, (int, float, np.integer,
                                                                                       np.floating)):
        raise QuantizationError(f"{what} must be a number (or one per channel with axis=), not {value!r} "
                                f"({type(value).__name__})")
    return value.item() if isinstance(value, (np.integer, np.floating)) else value


@dataclass(frozen=True)
class QuantParams:
    """Affine quantization q = clamp(round(x / scale) + zero_point, qmin, qmax).

    Per-tensor when `axis` is None; per-channel (weights) when `axis` names the channel dimension
    and `scale` / `zero_point` are tuples. `narrow` drops the most negative code (symmetric int8
    weights in [-127, 127], as TFLite requires).
    """

    scale: float | tuple[float, ...]
    zero_point: int | tuple[int, ...] = 0
    dtype: str = "int8"
    axis: int | None = None
    narrow: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "scale", _numbers(self.scale, "scale", float))
        object.__setattr__(self, "zero_point", _numbers(self.zero_point, "zero_point", None))
        if self.axis is None:  # per tensor: a one-element list or tensor is that number
            for name in ("scale", "zero_point"):
                v = getattr(self, name)
                if isinstance(v, tuple) and len(v) == 1:
                    object.__setattr__(self, name, v[0])
        if self.axis is not None and (isinstance(self.axis, bool) or not isinstance(self.axis, (int, np.integer))):
            raise QuantizationError(f"axis must be None (per tensor) or the channel dimension (an int), "
                                    f"not {self.axis!r}")
        if not isinstance(self.narrow, (bool, np.bool_)):
            raise QuantizationError(f"narrow must be True or False, not {self.narrow!r}")
        if not isinstance(self.dtype, str) or self.dtype not in DTYPE_RANGES:
            raise QuantizationError(
                f"unsupported quantized dtype {self.dtype!r}; use one of {sorted(DTYPE_RANGES)}"
            )
        per_channel = self.axis is not None
        scales = self.scale if per_channel else (self.scale,)
        zps = self.zero_point if per_channel else (self.zero_point,)
        if not per_channel and (np.size(self.scale) != 1 or np.size(self.zero_point) != 1):
            raise QuantizationError(
                f"{np.size(self.scale)} scales and {np.size(self.zero_point)} zero points but no axis: "
                "pass axis=<channel dimension> for per-channel parameters, or one scale for per-tensor"
            )
        if per_channel:
            if not isinstance(scales, tuple):
                scales = tuple(np.asarray(scales, dtype=np.float64).reshape(-1).tolist())
            if not isinstance(zps, tuple) or len(zps) != len(scales):
                if np.size(zps) not in (1, len(scales)):
                    raise QuantizationError(
                        f"{len(scales)} scales but {np.size(zps)} zero points: give one zero point per "
                        "channel, or a single one for all channels"
                    )
                zps_arr = np.broadcast_to(np.asarray(zps).reshape(-1), (len(scales),))
                zps = tuple(int(z) for z in zps_arr)
        clean_scales = []
        for s in scales:
            s = float(s)
            if not math.isfinite(s):
                raise QuantizationError(
                    f"quantization scale is {s}: the observed range contained NaN or Inf — "
                    "check the model's weights and the calibration data for NaN/Inf"
                )
            if s == 0.0:
                raise QuantizationError(
                    "quantization scale is 0: a zero scale means an empty (zero-width) range — "
                    "calibrate with data that exercises this tensor, or set the range by hand"
                )
            if s < 0.0:
                raise QuantizationError(f"quantization scale must be > 0, got {s}: pass its absolute value")
            s32 = _as_float32_value(s)
            if s32 == 0.0 or not math.isfinite(s32):
                raise QuantizationError(f"scale {s} is not representable as a float32 > 0; use a scale in [1e-30, 1e30]")
            clean_scales.append(s32)
        lo, hi = self.qrange_of(self.dtype, self.narrow)
        clean_zps = []
        for z in zps:
            if isinstance(z, float) and not float(z).is_integer():
                raise QuantizationError(f"zero point must be an integer, got {z}")
            z = int(z)
            if not lo <= z <= hi:
                raise QuantizationError(
                    f"zero point {z} is outside the {self.dtype} range [{lo}, {hi}]; "
                    "compute it from a range that includes 0 (QuantParams.from_range does)"
                )
            clean_zps.append(z)
        object.__setattr__(self, "scale", tuple(clean_scales) if per_channel else clean_scales[0])
        object.__setattr__(self, "zero_point", tuple(clean_zps) if per_channel else clean_zps[0])

    @classmethod
    def checked_per_tensor(cls, scale32: float, zero_point: int, dtype: str, narrow: bool) -> "QuantParams":
        """Per-tensor parameters whose checks the caller has made: `scale32` a float32 value > 0, finite,
        `zero_point` an int in the dtype's range — what __post_init__ would store, without its cost (the
        QAT step builds these for every activation table at every step)."""
        qp = object.__new__(cls)
        for name, value in (("scale", scale32), ("zero_point", zero_point), ("dtype", dtype), ("axis", None),
                            ("narrow", narrow)):
            object.__setattr__(qp, name, value)
        return qp

    # ---- ranges -------------------------------------------------------------------------------
    @staticmethod
    def qrange_of(dtype: str, narrow: bool = False) -> tuple[int, int]:
        lo, hi = DTYPE_RANGES[dtype]
        return (lo + 1 if narrow else lo), hi

    @property
    def qmin(self) -> int:
        return self.qrange_of(self.dtype, self.narrow)[0]

    @property
    def qmax(self) -> int:
        return self.qrange_of(self.dtype, self.narrow)[1]

    @property
    def per_channel(self) -> bool:
        return self.axis is not None

    @property
    def np_dtype(self):
        return NUMPY_DTYPES[self.dtype]

    def scale_array(self) -> np.ndarray:
        return np.asarray(self.scale, dtype=np.float64)

    def zero_point_array(self) -> np.ndarray:
        return np.asarray(self.zero_point, dtype=np.int64)

    def codes(self) -> np.ndarray:
        """Every representable code, in increasing order (256 of them for int8/uint8)."""
        return np.arange(self.qmin, self.qmax + 1, dtype=np.int64)

    # ---- construction -------------------------------------------------------------------------
    @classmethod
    def spanning(cls, lo: float, hi: float, dtype: str = "int8") -> "QuantParams":
        """The grid of all 256 codes over [lo, hi): scale (hi − lo)/256, `lo` at the lowest code — the fixed
        output parameters of the TFLite spec (LOGISTIC over [0, 1): 1/256, −128; TANH over [−1, 1): 1/128, 0)."""
        qmin, _ = cls.qrange_of(dtype)
        scale = (hi - lo) / 256
        return cls(scale, int(qmin - round(lo / scale)), dtype)

    @classmethod
    def from_range(
        cls,
        lo,
        hi,
        dtype: str = "int8",
        symmetric: bool = False,
        axis: int | None = None,
        narrow: bool = False,
    ) -> "QuantParams":
        """Scale and zero point that cover [lo, hi] (widened to include 0, so 0 is exact).

        Symmetric puts the zero point in the middle (0 for int8, 128 for uint8) and covers ±max|x|.
        Per-channel when `axis` is given and lo/hi are arrays.
        """
        lo = np.asarray(lo, dtype=np.float64)
        hi = np.asarray(hi, dtype=np.float64)
        if not (np.all(np.isfinite(lo)) and np.all(np.isfinite(hi))):
            raise QuantizationError(
                f"range [{lo}, {hi}] is not finite: NaN or Inf reached this tensor — "
                "check the weights and the calibration data"
            )
        if np.any(lo > hi):
            raise QuantizationError(f"range minimum {lo} exceeds maximum {hi}")
        lo = np.minimum(lo, 0.0)
        hi = np.maximum(hi, 0.0)
        if np.any(hi - lo <= 0.0):
            raise QuantizationError(
                "zero-width range [0, 0]: every observed value was 0, so no scale can be chosen — "
                "calibrate with data that reaches this tensor, or give the range by hand"
            )
        qmin, qmax = cls.qrange_of(dtype, narrow)
        if symmetric:
            amax = np.maximum(-lo, hi)
            half = (qmax - qmin) // 2  # 127 for int8 (narrow or not), 127 for uint8
            scale = amax / half
            zp = np.full_like(scale, 0 if dtype != "uint8" else 128, dtype=np.int64)
        else:
            scale = (hi - lo) / (qmax - qmin)
            scale32 = scale.astype(np.float32).astype(np.float64)
            zp = np.clip(np.rint(qmin - lo / scale32), qmin, qmax).astype(np.int64)
        if axis is None:
            return cls(float(scale), int(zp), dtype, None, narrow)
        return cls(tuple(scale.reshape(-1).tolist()), tuple(int(z) for z in zp.reshape(-1)), dtype, axis, narrow)

    # ---- ideal (float64, round-half-even) conversions ----------------------------------------
    def _broadcast(self, arr: np.ndarray, ndim: int):
        s, z = self.scale_array(), self.zero_point_array()
        if self.per_channel:
            shape = [1] * ndim
            shape[self.axis] = s.size
            s, z = s.reshape(shape), z.reshape(shape)
        return s, z

    def quantize(self, x) -> np.ndarray:
        """Ideal quantization in float64: clamp(round_half_even(x / s) + z). NaN is an error."""
        x = np.asarray(x, dtype=np.float64)
        if not np.all(np.isfinite(x)):
            bad = "NaN" if np.isnan(x).any() else "Inf"
            raise QuantizationError(f"cannot quantize {bad}: the input contains {bad} values")
        s, z = self._broadcast(x, x.ndim)
        return np.clip(round_half_even(x / s) + z, self.qmin, self.qmax).astype(np.int64)

    def dequantize(self, q) -> np.ndarray:
        """(q − z)·s, exact in float64."""
        q = np.asarray(q, dtype=np.int64)
        s, z = self._broadcast(q, q.ndim)
        return (q - z).astype(np.float64) * s

    def __str__(self) -> str:
        if self.per_channel:
            return f"QuantParams({self.dtype}, per-channel axis={self.axis}, {len(self.scale)} channels)"
        return f"QuantParams({self.dtype}, scale={self.scale:.6g}, zero_point={self.zero_point})"
