"""QuantParams: property tests of the quantization math against exact rational arithmetic, and validation."""
from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from edgeact.errors import EdgeActError, QuantizationError
from edgeact.qparams import QuantParams

SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
DTYPES = ["int8", "uint8"]


def exact_quantize(x: float, qp: QuantParams) -> int:
    """clamp(round_half_even(x / s) + z): in exact rationals (Python's round on a Fraction is half-even)."""
    q = round(Fraction(x) / Fraction(qp.scale)) + qp.zero_point
    return min(max(q, qp.qmin), qp.qmax)


@st.composite
def qparams(draw, dtypes=DTYPES):
    dtype = draw(st.sampled_from(dtypes))
    narrow = dtype == "int8" and draw(st.booleans())
    lo, hi = QuantParams.qrange_of(dtype, narrow)
    scale = draw(st.floats(1e-5, 1e3, allow_nan=False, allow_infinity=False))
    return QuantParams(scale, draw(st.integers(lo, hi)), dtype, narrow=narrow)


# ------------------------------------------------------------------------------------- the math

@SETTINGS
@given(qparams(), st.floats(0.0, 1.0))
def test_round_trip_within_half_a_step_inside_the_range(qp, t):
    lo, hi = qp.dequantize(qp.qmin), qp.dequantize(qp.qmax)
    x = float(lo + t * (hi - lo))
    back = float(qp.dequantize(qp.quantize(x)))
    assert abs(back - x) <= qp.scale / 2 * (1 + 1e-12)


@SETTINGS
@given(qparams(), st.floats(-1e6, 1e6, allow_nan=False))
def test_quantize_equals_exact_rational_rounding(qp, x):
    assert int(qp.quantize(x)) == exact_quantize(x, qp)


@SETTINGS
@given(qparams(), st.integers(-300, 300))
def test_exact_ties_round_half_to_even(qp, k):
    """x = (k + ½)·s exactly: the code is the even one of the two neighbours (before the zero point)."""
    x = (Fraction(2 * k + 1, 2)) * Fraction(qp.scale)
    assume(float(x) == x)  # representable, so the tie is exact
    q = int(qp.quantize(float(x)))
    even = k if k % 2 == 0 else k + 1
    assert q == min(max(even + qp.zero_point, qp.qmin), qp.qmax)


@SETTINGS
@given(qparams(), st.floats(0.5000001, 1e6))
def test_clamping_outside_the_range(qp, steps):
    above = float(qp.dequantize(qp.qmax)) + steps * qp.scale
    below = float(qp.dequantize(qp.qmin)) - steps * qp.scale
    assert int(qp.quantize(above)) == qp.qmax
    assert int(qp.quantize(below)) == qp.qmin
    assert int(qp.quantize(1e300)) == qp.qmax and int(qp.quantize(-1e300)) == qp.qmin


@SETTINGS
@given(qparams())
def test_dequantize_is_exact_and_codes_are_all_codes(qp):
    codes = qp.codes()
    assert codes[0] == qp.qmin and codes[-1] == qp.qmax and np.all(np.diff(codes) == 1)
    assert len(codes) == (255 if qp.narrow else 256)
    x = qp.dequantize(codes)
    for q, v in zip(codes[::17], x[::17]):
        assert Fraction(float(v)) == (int(q) - qp.zero_point) * Fraction(qp.scale)  # exact: |q−z| < 2⁹
    np.testing.assert_array_equal(qp.quantize(x), codes)  # every code survives its own round trip


@SETTINGS
@given(qparams(), st.lists(st.floats(-1e4, 1e4), min_size=2, max_size=50))
def test_quantize_is_monotonic(qp, xs):
    xs = np.sort(np.array(xs))
    assert np.all(np.diff(qp.quantize(xs)) >= 0)


def test_scale_is_stored_as_float32():
    qp = QuantParams(0.1, 3)
    assert qp.scale == float(np.float32(0.1)) != 0.1
    assert QuantParams(np.float64(1 / 3)).scale == float(np.float32(1 / 3))
    assert isinstance(qp.zero_point, int) and QuantParams(0.1, np.int64(5)).zero_point == 5
    assert QuantParams(0.1, 5.0).zero_point == 5


# ------------------------------------------------------------------------------------- from_range

ranges = st.tuples(st.floats(-1e4, 1e4), st.floats(-1e4, 1e4)).map(sorted).filter(
    lambda r: max(abs(r[0]), abs(r[1])) > 1e-3)


@SETTINGS
@given(ranges, st.sampled_from(DTYPES), st.booleans(), st.data())
def test_from_range_covers_the_range_and_makes_zero_exact(r, dtype, symmetric, data):
    lo, hi = r
    qp = QuantParams.from_range(lo, hi, dtype, symmetric=symmetric)
    assert int(qp.quantize(0.0)) == qp.zero_point and float(qp.dequantize(qp.zero_point)) == 0.0
    lo0, hi0 = min(lo, 0.0), max(hi, 0.0)
    for x in (lo0, hi0, data.draw(st.floats(lo0, hi0))):
        assert abs(float(qp.dequantize(qp.quantize(x))) - x) <= qp.scale / 2 * (1 + 1e-5), x
    n = qp.qmax - qp.qmin
    if symmetric:
        assert qp.zero_point == (128 if dtype == "uint8" else 0)
        assert qp.scale == pytest.approx(max(-lo0, hi0) / 127, rel=1e-7)
    else:  # tight: the grid spans the range, not more (one step of slack for the rounded zero point)
        assert qp.scale == pytest.approx((hi0 - lo0) / n, rel=1e-7)
        assert qp.dequantize(qp.qmin) <= lo0 + qp.scale / 2 * (1 + 1e-5)
        assert qp.dequantize(qp.qmax) >= hi0 - qp.scale / 2 * (1 + 1e-5)


def test_from_range_of_a_positive_range_starts_at_zero():
    qp = QuantParams.from_range(2.0, 6.0, "uint8")
    assert qp.zero_point == 0 and qp.scale == float(np.float32(6.0 / 255))
    qp = QuantParams.from_range(0.0, 6.0, "int8")
    assert qp.zero_point == -128 and qp.scale == float(np.float32(6.0 / 255))
    qp = QuantParams.from_range(-3.0, -1.0, "int8")
    assert qp.zero_point == 127 and float(qp.dequantize(-128)) == pytest.approx(-3.0, rel=1e-6)


def test_from_range_symmetric_narrow_int8_weights():
    qp = QuantParams.from_range(-0.5, 2.0, "int8", symmetric=True, narrow=True)
    assert (qp.qmin, qp.qmax, qp.zero_point) == (-127, 127, 0)
    assert qp.scale == float(np.float32(2.0 / 127))
    assert int(qp.quantize(-2.0)) == -127 and int(qp.quantize(-100.0)) == -127


@SETTINGS
@given(st.lists(ranges, min_size=1, max_size=6), st.booleans(), st.integers(0, 3))
def test_per_channel_from_range_is_per_tensor_per_channel(chans, symmetric, axis):
    lo = np.array([c[0] for c in chans])
    hi = np.array([c[1] for c in chans])
    qp = QuantParams.from_range(lo, hi, "int8", symmetric=symmetric, axis=axis, narrow=symmetric)
    assert qp.per_channel and qp.axis == axis and len(qp.scale) == len(chans)
    for c, (l, h) in enumerate(chans):
        one = QuantParams.from_range(l, h, "int8", symmetric=symmetric, narrow=symmetric)
        assert (qp.scale[c], qp.zero_point[c]) == (one.scale, one.zero_point)
    # quantize / dequantize broadcast along `axis`: equal to a per-channel loop
    shape = [2, 3, 2, 2]
    shape[axis] = len(chans)
    x = np.random.default_rng(0).normal(size=shape) * 100
    q = qp.quantize(x)
    for c in range(len(chans)):
        one = QuantParams(qp.scale[c], qp.zero_point[c], "int8", narrow=symmetric)
        np.testing.assert_array_equal(np.take(q, c, axis=axis), one.quantize(np.take(x, c, axis=axis)))
        np.testing.assert_array_equal(np.take(qp.dequantize(q), c, axis=axis), one.dequantize(np.take(q, c, axis=axis)))


def test_per_channel_zero_points_broadcast():
    qp = QuantParams((0.1, 0.2, 0.3), 0, axis=0)
    assert qp.zero_point == (0, 0, 0) and qp.scale == tuple(float(np.float32(s)) for s in (0.1, 0.2, 0.3))
    assert "per-channel" in str(qp) and "3 channels" in str(qp)


# ------------------------------------------------------------------------------------- validation

@pytest.mark.parametrize("scale,match", [
    (0.0, r"scale is 0.*calibrate"),
    (-0.1, r"must be > 0.*absolute value"),
    (float("nan"), r"scale is nan.*NaN"),
    (float("inf"), r"scale is inf"),
    (float("-inf"), r"scale is -inf"),
    (1e-50, r"not representable as a float32"),
    (1e50, r"not representable as a float32"),
])
def test_bad_scale_is_a_clear_error(scale, match):
    with pytest.raises(QuantizationError, match=match):
        QuantParams(scale, 0)
    with pytest.raises(QuantizationError, match=match):
        QuantParams((0.1, scale), 0, axis=0)


@pytest.mark.parametrize("zp,dtype,narrow", [(128, "int8", False), (-129, "int8", False), (-1, "uint8", False),
                                             (256, "uint8", False), (-128, "int8", True)])
def test_zero_point_out_of_range_is_a_clear_error(zp, dtype, narrow):
    with pytest.raises(QuantizationError, match=rf"zero point {zp} is outside the {dtype} range.*from_range"):
        QuantParams(0.1, zp, dtype, narrow=narrow)


@pytest.mark.parametrize("zp", [1.5, float("nan"), float("inf")])
def test_non_integer_zero_point_is_an_error(zp):
    with pytest.raises(QuantizationError, match="zero point must be an integer"):
        QuantParams(0.1, zp)


def test_unknown_dtype_is_an_error():
    with pytest.raises(QuantizationError, match=r"unsupported quantized dtype 'int4'.*int8"):
        QuantParams(0.1, 0, "int4")


def test_per_channel_count_mismatch_is_a_clear_error():
    with pytest.raises(QuantizationError, match=r"3 scales but 2 zero points"):
        QuantParams((0.1, 0.2, 0.3), (0, 1), axis=0)


def test_several_scales_without_an_axis_is_a_clear_error():
    with pytest.raises(QuantizationError, match=r"axis"):
        QuantParams((0.1, 0.2), 0)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_quantizing_nan_or_inf_is_an_error(bad):
    qp = QuantParams(0.1, 0)
    with pytest.raises(QuantizationError, match="NaN" if math.isnan(bad) else "Inf"):
        qp.quantize(np.array([0.0, bad, 1.0]))


@pytest.mark.parametrize("lo,hi,match", [
    (0.0, 0.0, r"zero-width range.*calibrate"),
    (float("nan"), 1.0, r"not finite.*NaN"),
    (-1.0, float("inf"), r"not finite"),
    (2.0, 1.0, r"minimum .* exceeds maximum"),
])
def test_bad_range_is_a_clear_error(lo, hi, match):
    with pytest.raises(QuantizationError, match=match):
        QuantParams.from_range(lo, hi)


def test_zero_width_channel_is_an_error():
    with pytest.raises(QuantizationError, match="zero-width"):
        QuantParams.from_range(np.array([-1.0, 0.0]), np.array([1.0, 0.0]), symmetric=True, axis=0)


def test_errors_are_edgeact_errors_and_value_errors():
    with pytest.raises(EdgeActError):
        QuantParams(0.0)
    with pytest.raises(ValueError):
        QuantParams(0.0)
