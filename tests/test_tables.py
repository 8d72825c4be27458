"""int8 activation tables ('ideal' semantics) against exact references, for random quantization parameters.

Piecewise-linear activations: exact rational arithmetic (fractions) — the table must equal it code for code.
Smooth activations: the formula at 40 digits (mpmath); a code whose exact value lies within 1e-9 of a
rounding tie is ambiguous at float64 precision, and there either neighbour is accepted.
"""
from __future__ import annotations

from fractions import Fraction

import mpmath as mp
import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edgeact import activations as A
from edgeact.errors import QuantizationError, UnsupportedError
from edgeact.qparams import QuantParams
from edgeact.arithmetic import Arithmetic
from edgeact.backend import Backend, get_backend
from edgeact.tables import int8_table, lookup, lookup_torch

SETTINGS = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _clamp(v, lo, hi):
    return min(max(v, lo), hi)


def meant(p: float) -> Fraction:
    """The rational a parameter stands for: 0.01 means 1/100 and 1/6 means 1/6, not their binary roundings
    (with which an exact tie such as −125·2⁻³·0.01 / 2⁻⁴ = −2.5 would tip over to −3)."""
    return Fraction(p).limit_denominator(1000)


# Exact forms of the piecewise-linear (and piecewise-quadratic) activations over the rationals.
EXACT = {
    "identity": lambda x, **p: x,
    "relu": lambda x, **p: max(x, 0),
    "relu6": lambda x, **p: _clamp(x, 0, 6),
    "leaky_relu": lambda x, negative_slope=0.01: x if x >= 0 else meant(negative_slope) * x,
    "prelu": lambda x, weight=0.25: x if x >= 0 else meant(weight) * x,
    "hard_tanh": lambda x, min_val=-1.0, max_val=1.0: _clamp(x, meant(min_val), meant(max_val)),
    "hard_sigmoid": lambda x, alpha=1 / 6, beta=0.5: _clamp(meant(alpha) * x + meant(beta), 0, 1),
    "hard_swish": lambda x: x * _clamp(x + 3, 0, 6) / 6,
    "hard_mish": lambda x: x * _clamp(x + 2, 0, 2) / 2,
}
EXACT_PARAMS = [("identity", {}), ("relu", {}), ("relu6", {}), ("leaky_relu", {}), ("leaky_relu", {"negative_slope": 0.2}),
                ("prelu", {"weight": -0.3}), ("hard_tanh", {}), ("hard_tanh", {"min_val": -2.0, "max_val": 0.5}),
                ("hard_sigmoid", {}), ("hard_sigmoid", {"alpha": 0.2, "beta": 0.5}), ("hard_swish", {}),
                ("hard_mish", {})]


def _mp_sigmoid(x):
    return 1 / (1 + mp.exp(-x))


def _mp_softplus(x):
    return mp.log(1 + mp.exp(x))


SMOOTH = {
    "sigmoid": _mp_sigmoid,
    "tanh": mp.tanh,
    "elu": lambda x, alpha=1.0: x if x > 0 else mp.mpf(alpha) * mp.expm1(x),
    "selu": lambda x: mp.mpf("1.0507009873554804934193349852946") * (
        x if x > 0 else mp.mpf("1.6732632423543772848170429916717") * mp.expm1(x)),
    "softplus": _mp_softplus,
    "swish": lambda x, beta=1.0: x * _mp_sigmoid(mp.mpf(beta) * x),
    "mish": lambda x: x * mp.tanh(_mp_softplus(x)),
    "gelu": lambda x, approximate="none": (
        x / 2 * (1 + mp.erf(x / mp.sqrt(2))) if approximate == "none"
        else x / 2 * (1 + mp.tanh(mp.sqrt(2 / mp.pi) * (x + mp.mpf("0.044715") * x**3)))),
}
SMOOTH_PARAMS = [("sigmoid", {}), ("tanh", {}), ("elu", {}), ("elu", {"alpha": 0.5}), ("selu", {}), ("softplus", {}),
                 ("swish", {}), ("swish", {"beta": 1.7}), ("mish", {}), ("gelu", {}), ("gelu", {"approximate": "tanh"})]


def test_every_activation_has_an_exact_reference():
    assert set(EXACT) | set(SMOOTH) == set(A.names())


@st.composite
def qparams(draw, scale=(1e-3, 0.5)):
    dtype = draw(st.sampled_from(["int8", "uint8"]))
    lo, hi = QuantParams.qrange_of(dtype)
    # float32 scales as the runtimes hold them, and some powers of two (exact ties are likely there)
    s = draw(st.one_of(st.floats(*scale), st.sampled_from([2.0**-k for k in range(1, 9)])))
    return QuantParams(s, draw(st.integers(lo, hi)), dtype)


def exact_table(name, params, in_qp, out_qp):
    s_in, s_out = Fraction(in_qp.scale), Fraction(out_qp.scale)
    out = []
    for q in range(in_qp.qmin, in_qp.qmax + 1):
        y = EXACT[name]((q - in_qp.zero_point) * s_in, **params)
        out.append(_clamp(round(y / s_out) + out_qp.zero_point, out_qp.qmin, out_qp.qmax))  # round(): half-even
    return np.array(out)


@SETTINGS
@given(st.sampled_from(EXACT_PARAMS), qparams(), qparams(scale=(1e-3, 0.1)))
def test_pwl_table_equals_exact_rational_arithmetic(case, in_qp, out_qp):
    name, params = case
    table = int8_table(name, in_qp, out_qp, **params)
    assert table.shape == (256,) and table.dtype == np.int64
    np.testing.assert_array_equal(table, exact_table(name, params, in_qp, out_qp))


def test_pwl_table_at_exact_ties():
    """s_in = 2⁻², s_out = 2⁻⁴: hard-swish values land exactly on half steps; ties go to the even code."""
    in_qp, out_qp = QuantParams(0.25, 0), QuantParams(0.0625, 0)
    table = int8_table("hard_swish", in_qp, out_qp)
    np.testing.assert_array_equal(table, exact_table("hard_swish", {}, in_qp, out_qp))
    # x = 0.75: 0.75·3.75/6 = 0.46875 = 7.5 steps → 8; x = −0.75: −0.75·2.25/6 = −0.28125 = −4.5 → −4
    assert table[3 + 128] == 8 and table[-3 + 128] == -4
    ties = [q for q in range(-128, 128) if (EXACT["hard_swish"](Fraction(q, 4)) * 16).denominator == 2]
    assert len(ties) >= 4
    for q in ties:
        v = EXACT["hard_swish"](Fraction(q, 4)) * 16
        assert table[q + 128] % 2 == 0 and abs(table[q + 128] - v) == Fraction(1, 2)


def mp_table(name, params, in_qp, out_qp):
    """(codes, ambiguous) from the 40-digit formula; ambiguous: within 1e-9 of a tie."""
    codes, ambiguous = [], []
    with mp.workdps(40):
        s_in = mp.mpf(Fraction(in_qp.scale).numerator) / Fraction(in_qp.scale).denominator
        s_out = mp.mpf(Fraction(out_qp.scale).numerator) / Fraction(out_qp.scale).denominator
        for q in range(in_qp.qmin, in_qp.qmax + 1):
            v = SMOOTH[name]((q - in_qp.zero_point) * s_in, **params) / s_out
            fl = mp.floor(v)
            frac = v - fl
            ambiguous.append(abs(frac - mp.mpf(0.5)) < 1e-9)
            code = int(fl) + (1 if frac > 0.5 else 0)
            codes.append(_clamp(code + out_qp.zero_point, out_qp.qmin, out_qp.qmax))
    return np.array(codes), np.array(ambiguous)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(SMOOTH_PARAMS), qparams(scale=(5e-3, 0.3)), qparams(scale=(2e-3, 0.1)))
def test_smooth_table_equals_the_40_digit_formula(case, in_qp, out_qp):
    name, params = case
    table = int8_table(name, in_qp, out_qp, **params)
    want, ambiguous = mp_table(name, params, in_qp, out_qp)
    clear = ~ambiguous
    np.testing.assert_array_equal(table[clear], want[clear])
    assert np.all(np.abs(table[ambiguous] - want[ambiguous]) <= 1)


@SETTINGS
@given(st.sampled_from([n for n in A.names() if A.get(n).monotonic]), qparams(), qparams())
def test_monotonic_activation_gives_a_non_decreasing_table(name, in_qp, out_qp):
    assert np.all(np.diff(int8_table(name, in_qp, out_qp)) >= 0)


def test_non_monotonic_activation_can_give_a_decreasing_table():
    """The monotonic property test above is not vacuous: swish's dip shows up at a fine output scale."""
    qp_in, qp_out = QuantParams(0.05, 0), QuantParams(0.002, 0)
    assert np.any(np.diff(int8_table("swish", qp_in, qp_out)) < 0)


def test_table_is_clamped_to_the_output_type():
    t = int8_table("relu", QuantParams(1.0, 0), QuantParams(0.01, 0))
    assert t.max() == 127 and t.min() == 0
    u = int8_table("identity", QuantParams(1.0, 0), QuantParams(0.5, 128, "uint8"))
    assert u.min() == 0 and u.max() == 255 and u[0] == 0


def test_parameters_reach_the_table():
    qp = QuantParams(0.1, 0)
    t1 = int8_table("leaky_relu", qp, qp)
    t2 = int8_table("leaky_relu", qp, qp, negative_slope=0.5)
    assert t1[0] == -1 and t2[0] == -64  # x = −12.8: −0.128 → −1.28 steps; −6.4 → −64
    t3 = int8_table(A.bind("leaky_relu", negative_slope=0.5), qp, qp)
    np.testing.assert_array_equal(t2, t3)


# ---------------------------------------------------------------------------------------- per channel

def test_per_channel_prelu_table_has_one_row_per_slope():
    slopes = np.array([0.25, -0.5, 0.0, 1.5, 0.01])
    in_qp, out_qp = QuantParams(0.05, -10), QuantParams(0.04, 3)
    table = int8_table("prelu", in_qp, out_qp, weight=slopes)
    assert table.shape == (5, 256)
    for c, w in enumerate(slopes):
        np.testing.assert_array_equal(table[c], exact_table("prelu", {"weight": w}, in_qp, out_qp))


def test_lookup_numpy_and_torch_agree_with_direct_indexing():
    rng = np.random.default_rng(0)
    in_qp = QuantParams(0.05, 7)
    table = int8_table("hard_swish", in_qp, QuantParams(0.03, -20))
    codes = rng.integers(-128, 128, size=(2, 3, 4, 5))
    want = table[codes + 128]
    np.testing.assert_array_equal(lookup(table, codes, in_qp), want)
    np.testing.assert_array_equal(lookup_torch(torch.from_numpy(table), torch.from_numpy(codes), -128).numpy(), want)
    u_qp = QuantParams(0.05, 128, "uint8")
    u_table = int8_table("relu6", u_qp, QuantParams(6 / 255, 0, "uint8"))
    u_codes = rng.integers(0, 256, size=(50,))
    np.testing.assert_array_equal(lookup(u_table, u_codes, u_qp), u_table[u_codes])


def test_per_channel_lookup_uses_the_channel_axis():
    rng = np.random.default_rng(1)
    in_qp = QuantParams(0.05, 0)
    slopes = np.array([0.1, -0.2, 0.7])
    table = int8_table("prelu", in_qp, QuantParams(0.05, 0), weight=slopes)
    codes = rng.integers(-128, 128, size=(2, 3, 4, 4))
    want = np.stack([table[c][codes[:, c] + 128] for c in range(3)], axis=1)
    np.testing.assert_array_equal(lookup(table, codes, in_qp), want)
    np.testing.assert_array_equal(lookup_torch(torch.from_numpy(table), torch.from_numpy(codes), -128).numpy(), want)
    # channels last (NHWC)
    nhwc = np.moveaxis(codes, 1, -1)
    np.testing.assert_array_equal(lookup(table, nhwc, in_qp, channel_axis=3), np.moveaxis(want, 1, -1))
    np.testing.assert_array_equal(
        lookup_torch(torch.from_numpy(table), torch.from_numpy(nhwc), -128, channel_axis=3).numpy(),
        np.moveaxis(want, 1, -1))


# ---------------------------------------------------------------------------------------- errors & seam

def test_per_channel_activation_qparams_are_refused():
    pc = QuantParams((0.1, 0.2), 0, axis=0)
    with pytest.raises(UnsupportedError, match="per tensor"):
        int8_table("relu", pc, QuantParams(0.1))
    with pytest.raises(UnsupportedError, match="per tensor"):
        int8_table("relu", QuantParams(0.1), pc)


def test_wider_types_are_refused():
    with pytest.raises(UnsupportedError, match="int8/uint8"):
        int8_table("relu", QuantParams(0.1, 0, "int16"), QuantParams(0.1))


def test_non_qparams_are_refused():
    with pytest.raises(QuantizationError, match="must be a QuantParams"):
        int8_table("relu", 0.1, QuantParams(0.1))


def test_unknown_backend_is_a_clear_error():
    with pytest.raises(UnsupportedError, match=r"unknown backend 'tpu'.*ideal"):
        int8_table("relu", QuantParams(0.1), QuantParams(0.1), backend="tpu")


def test_ideal_backend_is_the_base_arithmetic_and_a_backend_object_can_be_passed():
    ideal = get_backend("ideal")
    assert type(ideal.arithmetic) is Arithmetic and ideal.arithmetic.name == "ideal"
    qp = QuantParams(0.07, -3)
    np.testing.assert_array_equal(int8_table("mish", qp, qp, backend=ideal), int8_table("mish", qp, qp))

    class Shifted(Arithmetic):
        """A made-up runtime one code above ideal: the seam must carry its table through unchanged."""
        name = "shifted"

        def activation_table(self, act, in_qp, out_qp):
            return np.minimum(super().activation_table(act, in_qp, out_qp) + 1, out_qp.qmax)

    shifted = Backend("shifted", runtime="made-up", cpu="any", kernels="made-up", description="one code above ideal",
                      arithmetic=Shifted)
    np.testing.assert_array_equal(int8_table("mish", qp, qp, backend=shifted),
                                  np.minimum(int8_table("mish", qp, qp) + 1, 127))
