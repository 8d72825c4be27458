"""edgeact.fixedpoint against exact rational arithmetic (Python integers and Fractions), not against itself."""
from __future__ import annotations

from fractions import Fraction

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from edgeact import fixedpoint as fp

i32 = st.integers(-(2**31), 2**31 - 1)
i16 = st.integers(-(2**15), 2**15 - 1)


def round_half_up(q: Fraction) -> int:
    """floor(q + ½): gemmlowp's SaturatingRoundingDoublingHighMul rounds ties toward +∞ (its nudge
    1 − 2^30 for negative products, then C's truncating division)."""
    return (q + Fraction(1, 2)).__floor__()


def round_half_away(q: Fraction) -> int:
    n = abs(q)
    r = int(n) + (1 if n - int(n) >= Fraction(1, 2) else 0)
    return r if q >= 0 else -r


@settings(max_examples=200, deadline=None)
@given(i32, i32)
def test_srdhm_int32_is_rounded_doubled_high_product(a, b):
    expected = 2**31 - 1 if a == b == -(2**31) else round_half_up(Fraction(a * b, 2**31))
    assert int(fp.saturating_rounding_doubling_high_mul(a, b)) == expected


def test_srdhm_tie_cases():
    assert int(fp.saturating_rounding_doubling_high_mul(-16, 1024, bits=16)) == 0  # −0.5 → 0
    assert int(fp.saturating_rounding_doubling_high_mul(16, 1024, bits=16)) == 1  # +0.5 → 1


@settings(max_examples=200, deadline=None)
@given(i16, i16)
def test_srdhm_and_sdhm_int16(a, b):
    expected = 2**15 - 1 if a == b == -(2**15) else round_half_up(Fraction(a * b, 2**15))
    assert int(fp.saturating_rounding_doubling_high_mul(a, b, bits=16)) == expected
    truncated = 2**15 - 1 if a == b == -(2**15) else int(Fraction(a * b, 2**15))  # int() truncates toward 0
    assert int(fp.saturating_doubling_high_mul_int16(a, b)) == truncated


@settings(max_examples=200, deadline=None)
@given(i32, st.integers(0, 31))
def test_rounding_divide_by_pot(x, e):
    assert int(fp.rounding_divide_by_pot(x, e)) == round_half_away(Fraction(x, 2**e))


@settings(max_examples=200, deadline=None)
@given(st.floats(1e-9, 1e6, allow_nan=False, allow_infinity=False))
def test_quantize_multiplier_represents_the_real_multiplier(m):
    q, shift = fp.quantize_multiplier(m)
    assert 2**30 <= q < 2**31
    assert abs(Fraction(q) * Fraction(2) ** (shift - 31) - Fraction(m)) <= Fraction(m) * Fraction(1, 2**31)


@settings(max_examples=200, deadline=None)
@given(st.integers(-(2**20), 2**20), st.floats(1e-6, 0.999, allow_nan=False))
def test_multiply_by_quantized_multiplier_is_within_one_of_exact(x, m):
    q, shift = fp.quantize_multiplier(m)
    exact = Fraction(x) * Fraction(q) * Fraction(2) ** (shift - 31)
    double = int(fp.multiply_by_quantized_multiplier(x, q, shift))
    single = int(fp.multiply_by_quantized_multiplier_single_rounding(x, q, shift))
    assert single == round_half_away(exact) or (exact - int(exact)) == Fraction(-1, 2)  # floor at −½ ties
    assert abs(double - exact) <= 1


def test_double_and_single_rounding_really_differ():
    """The two TFLite variants are not the same function (so parity tests can tell them apart)."""
    x = np.arange(-5000, 5000)
    q, shift = fp.quantize_multiplier(0.3)
    assert (fp.multiply_by_quantized_multiplier(x, q, shift)
            != fp.multiply_by_quantized_multiplier_single_rounding(x, q, shift)).any()


def test_int16_pot_mask_wraps_like_gemmlowp():
    """gemmlowp casts the mask (1 << e) − 1 to the integer type: for int16 and e ≥ 16 it is −1."""
    x = np.array([-300, -1, 0, 1, 300])
    np.testing.assert_array_equal(fp.rounding_divide_by_pot(x, 17, bits=16), [-1, -1, 1, 1, 1])
    np.testing.assert_array_equal(fp.rounding_divide_by_pot(x, 3, bits=16), [round_half_away(Fraction(v, 8)) for v in x])


def test_round_half_away_and_wrap():
    np.testing.assert_array_equal(fp.round_half_away(np.array([-2.5, -0.5, 0.5, 1.5, 0.49999997], np.float32)),
                                  [-3, -1, 1, 2, 0])
    np.testing.assert_array_equal(fp.wrap(np.array([32768, -32769, 65535]), 16), [-32768, 32767, -1])
