"""PWL stand-ins: exact PWL activations against their formulas, the minimax fitter against independent
dense-grid evaluations and lower bounds, the int8 option against the tables, and the demo table."""
from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
import torch
from scipy.optimize import linprog
from scipy.special import erf

from edgeact.errors import EdgeActError, UnsupportedError
from edgeact.nn import QuantAct
from edgeact.pwl import (DEMO_FUNCTIONS, DEMO_SEGMENTS, HARD_FIT_FUNCTIONS, PiecewiseLinear, PWLError,
                         demo_table, fit_pwl, render_markdown)
from edgeact.qparams import QuantParams
from edgeact.tables import int8_table

# ---- independent formulas (written here, not taken from edgeact) ---------------------------------

SELU_A, SELU_L = 1.6732632423543772848170429916717, 1.0507009873554804934193349852946


def _sig(x):
    return 0.5 * (1.0 + np.tanh(0.5 * x))  # = 1/(1+e^-x), no overflow


FORMULAS = {
    "swish": lambda x: x * _sig(x),
    "mish": lambda x: x * np.tanh(np.log1p(np.exp(-np.abs(x))) + np.maximum(x, 0.0)),
    "gelu": lambda x: 0.5 * x * (1.0 + erf(x / math.sqrt(2.0))),
    "sigmoid": _sig,
    "tanh": np.tanh,
    "selu": lambda x: SELU_L * np.where(x > 0, x, SELU_A * np.expm1(np.minimum(x, 0.0))),
    "elu": lambda x: np.where(x > 0, x, np.expm1(np.minimum(x, 0.0))),
    "hard_swish": lambda x: x * np.minimum(np.maximum(x + 3.0, 0.0), 6.0) / 6.0,
    "hard_mish": lambda x: 0.5 * x * np.minimum(np.maximum(x + 2.0, 0.0), 2.0),
}
RANGES = {name: ((-4.0, 4.0) if name == "tanh" else (-8.0, 8.0)) for name in FORMULAS}

EXACT_CASES = [  # (name, params, formula)
    ("identity", {}, lambda x: x),
    ("relu", {}, lambda x: np.maximum(x, 0.0)),
    ("relu6", {}, lambda x: np.minimum(np.maximum(x, 0.0), 6.0)),
    ("leaky_relu", {}, lambda x: np.where(x >= 0, x, 0.01 * x)),
    ("leaky_relu", {"negative_slope": 0.2}, lambda x: np.where(x >= 0, x, 0.2 * x)),
    ("prelu", {"weight": 0.3}, lambda x: np.where(x >= 0, x, 0.3 * x)),
    ("hard_sigmoid", {}, lambda x: np.minimum(np.maximum(x / 6.0 + 0.5, 0.0), 1.0)),
    ("hard_sigmoid", {"alpha": 0.2, "beta": 0.5}, lambda x: np.minimum(np.maximum(0.2 * x + 0.5, 0.0), 1.0)),
    ("hard_sigmoid", {"alpha": -0.25, "beta": 0.4}, lambda x: np.minimum(np.maximum(-0.25 * x + 0.4, 0.0), 1.0)),
    ("hard_tanh", {}, lambda x: np.minimum(np.maximum(x, -1.0), 1.0)),
    ("hard_tanh", {"min_val": -2.0, "max_val": 3.0}, lambda x: np.minimum(np.maximum(x, -2.0), 3.0)),
]


def _dense(a, b, n=200_001):
    return np.linspace(a, b, n)


# ---- the PWL object ------------------------------------------------------------------------------

@pytest.mark.parametrize("name,params,formula", EXACT_CASES, ids=lambda v: v if isinstance(v, str) else None)
def test_exact_pwl_matches_formula_numpy_and_torch(name, params, formula):
    pwl = PiecewiseLinear.exact(name, **params)
    x = np.concatenate([_dense(-12, 12, 48_001), np.asarray(pwl.breakpoints),
                        np.asarray(pwl.breakpoints) + 1e-9, np.asarray(pwl.breakpoints) - 1e-9])
    want = formula(x)
    tol = 4 * np.finfo(np.float64).eps * np.maximum(1.0, np.abs(x))  # a few ulps of the operands
    assert np.all(np.abs(pwl.numpy(x) - want) <= tol)
    got_t = pwl.torch(torch.from_numpy(x)).numpy()
    assert np.all(np.abs(got_t - want) <= tol)
    # at the knots themselves the stored values are returned exactly
    assert np.array_equal(pwl.numpy(np.asarray(pwl.breakpoints)), np.asarray(pwl.values))
    np.testing.assert_array_equal(pwl.numpy(np.asarray(pwl.breakpoints)), formula(np.asarray(pwl.breakpoints)))


def test_exact_pwl_float32_torch_matches_torch_ops():
    x = torch.linspace(-10, 10, 20_001)
    pairs = [("relu", {}, torch.relu), ("relu6", {}, torch.nn.functional.relu6),
             ("hard_sigmoid", {}, torch.nn.functional.hardsigmoid),
             ("hard_tanh", {}, torch.nn.functional.hardtanh),
             ("leaky_relu", {"negative_slope": 0.1}, lambda t: torch.nn.functional.leaky_relu(t, 0.1))]
    for name, params, op in pairs:
        got = PiecewiseLinear.exact(name, **params).torch(x)
        assert got.dtype == torch.float32
        torch.testing.assert_close(got, op(x), rtol=0, atol=2e-7)


def test_nan_propagates_and_tails_follow_end_slopes():
    pwl = PiecewiseLinear((-1.0, 0.0, 2.0), (1.0, 0.0, 4.0), left_slope=-0.5, right_slope=3.0)
    x = np.array([np.nan, -5.0, -1.0, -0.5, 0.0, 1.0, 2.0, 10.0])
    want = np.array([np.nan, 1.0 + 2.0, 1.0, 0.5, 0.0, 2.0, 4.0, 4.0 + 24.0])
    np.testing.assert_array_equal(pwl.numpy(x), want)
    np.testing.assert_array_equal(pwl.torch(torch.from_numpy(x)).numpy(), want)


def test_non_pwl_activation_has_no_exact_form():
    for name in ("swish", "sigmoid", "mish", "hard_swish", "gelu"):
        with pytest.raises(UnsupportedError, match="fit_pwl"):
            PiecewiseLinear.exact(name)
    with pytest.raises(UnsupportedError, match="per channel"):
        PiecewiseLinear.exact("prelu", weight=np.array([0.1, 0.2]))


@pytest.mark.parametrize("kwargs,match", [
    (dict(breakpoints=(0.0, -1.0), values=(0.0, 1.0)), "strictly increasing"),
    (dict(breakpoints=(0.0, 0.0), values=(0.0, 1.0)), "strictly increasing"),
    (dict(breakpoints=(0.0, 1.0), values=(0.0, float("nan"))), "NaN"),
    (dict(breakpoints=(0.0, 1.0), values=(0.0,)), "one value per breakpoint"),
    (dict(breakpoints=(), values=()), "at least one breakpoint"),
    (dict(breakpoints=(0.0,), values=(0.0,), left_slope=float("inf")), "NaN or Inf"),
])
def test_invalid_pwl_is_a_clear_error(kwargs, match):
    with pytest.raises(PWLError, match=match) as info:
        PiecewiseLinear(**kwargs)
    assert isinstance(info.value, EdgeActError)


def test_pwl_is_immutable_and_hashable():
    pwl = PiecewiseLinear.exact("relu6")
    with pytest.raises(Exception):
        pwl.values = (1.0, 2.0)  # type: ignore[misc]
    assert hash(pwl) == hash(PiecewiseLinear.exact("relu6"))


def test_autograd_gives_the_piece_slopes():
    pwl = PiecewiseLinear((-2.0, -0.5, 1.0, 3.0), (0.1, -0.4, 0.8, 2.0), left_slope=0.05, right_slope=1.5)
    bp, v = np.array(pwl.breakpoints), np.array(pwl.values)
    x = torch.tensor([-5.0, -1.0, 0.0, 2.0, 7.0], dtype=torch.float64, requires_grad=True)
    pwl.torch(x).sum().backward()
    want = [0.05, (v[1] - v[0]) / (bp[1] - bp[0]), (v[2] - v[1]) / (bp[2] - bp[1]),
            (v[3] - v[2]) / (bp[3] - bp[2]), 1.5]
    np.testing.assert_allclose(x.grad.numpy(), want, rtol=1e-15)
    # finite differences agree away from the knots
    pts = torch.tensor([-3.1, -1.3, 0.2, 1.7, 4.4], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(pwl.torch, (pts,))


def test_module_trains_through_pwl():
    fit = fit_pwl("swish", 8)
    module = fit.to_module()
    x = torch.linspace(-6, 6, 101, requires_grad=True)
    module(x).pow(2).sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    assert module.bound().name == "pwl(swish,8)"


# ---- int8 tables of a PWL --------------------------------------------------------------------------

def _exact_pwl_codes(pwl: PiecewiseLinear, in_qp: QuantParams, out_qp: QuantParams):
    """Round-half-even codes of the PWL computed in exact rational arithmetic, and whether each code's
    value is farther than 1e-9 steps from a rounding tie (where float64 cannot flip the result)."""
    bp = [Fraction(b) for b in pwl.breakpoints]
    vals = [Fraction(v) for v in pwl.values]
    s_in, s_out = Fraction(in_qp.scale), Fraction(out_qp.scale)
    codes, safe = [], []
    for q in in_qp.codes():
        x = (int(q) - in_qp.zero_point) * s_in
        if x < bp[0]:
            y = vals[0] + Fraction(pwl.left_slope) * (x - bp[0])
        elif x >= bp[-1]:
            y = vals[-1] + Fraction(pwl.right_slope) * (x - bp[-1])
        else:
            i = max(k for k in range(len(bp)) if bp[k] <= x)
            y = vals[i] + (vals[i + 1] - vals[i]) / (bp[i + 1] - bp[i]) * (x - bp[i])
        steps = y / s_out
        safe.append(abs(abs(steps - math.floor(steps)) - Fraction(1, 2)) > Fraction(1, 10**9))
        codes.append(min(max(round(steps) + out_qp.zero_point, out_qp.qmin), out_qp.qmax))
    return np.array(codes), np.array(safe)


@pytest.mark.parametrize("case", ["fit_int8", "fit_uint8", "exact_hard_sigmoid", "exact_relu6"])
def test_int8_table_of_pwl_equals_quantized_pwl_values(case):
    if case.startswith("fit"):
        pwl = fit_pwl("mish", 8).pwl
        dtype = case.split("_")[1]
        in_qp = QuantParams.from_range(-7.3, 5.1, dtype)
        out_qp = QuantParams.from_range(-0.4, 5.2, dtype)
    elif case == "exact_hard_sigmoid":
        pwl = PiecewiseLinear.exact("hard_sigmoid")
        in_qp, out_qp = QuantParams(0.05, 3), QuantParams(1 / 256, -128)
    else:
        pwl = PiecewiseLinear.exact("relu6")
        in_qp, out_qp = QuantParams(0.037, -20), QuantParams(6 / 255, -128)
    table = int8_table(pwl, in_qp, out_qp)
    want, safe = _exact_pwl_codes(pwl, in_qp, out_qp)
    assert table.shape == (256,)
    assert safe.sum() >= 250  # ties (which float64 may break either way) are the rare exception
    np.testing.assert_array_equal(table[safe], want[safe])
    assert np.all(np.abs(table - want) <= 1)


def test_quant_act_runs_a_pwl_stand_in_as_its_table():
    fit = fit_pwl("gelu", 16)
    in_qp, out_qp = QuantParams.from_range(-8, 8), QuantParams.from_range(-0.2, 8)
    qa = QuantAct(fit)
    qa.input_quant.set_qparams(in_qp)
    qa.output_quant.set_qparams(out_qp)
    x = torch.from_numpy(in_qp.dequantize(in_qp.codes())).float()
    fake = qa(x)
    qa.convert()
    assert qa.activation_name == "pwl(gelu,16)"
    np.testing.assert_array_equal(qa.table.numpy(), int8_table(fit, in_qp, out_qp))
    torch.testing.assert_close(qa(x), fake.detach(), rtol=0, atol=0)


# ---- the fitter --------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def table_rows():
    return demo_table()


def _fit_rows(rows):
    return [r for r in rows if r["section"] == "fit"]


def _best_line_error(x: np.ndarray, y: np.ndarray) -> float:
    """Chebyshev error of the best straight line through samples (3-variable LP, scipy)."""
    ones = np.ones((x.size, 1))
    A = np.block([[ones, x[:, None], -ones], [-ones, -x[:, None], -ones]])
    res = linprog([0, 0, 1], A_ub=A, b_ub=np.r_[y, -y], bounds=[(None, None)] * 3, method="highs")
    return float(res.x[2])


def test_demo_table_covers_every_function_and_k(table_rows):
    fits = _fit_rows(table_rows)
    assert {(r["function"], r["segments"]) for r in fits} == {
        (n, k) for n in DEMO_FUNCTIONS + HARD_FIT_FUNCTIONS for k in DEMO_SEGMENTS}
    for r in fits:
        assert r["x_range"] == RANGES[r["function"]]


def test_minimax_beats_uniform_even_discontinuous_uniform(table_rows):
    """The fit beats uniform breakpoints with the best values — even the best *discontinuous* uniform
    PWL (a lower bound for any continuous one, computed here segment by segment with scipy's LP)."""
    for r in _fit_rows(table_rows):
        f = FORMULAS[r["function"]]
        a, b = r["x_range"]
        K = r["segments"]
        t = np.linspace(a, b, K + 1)
        lower = max(_best_line_error(x := np.linspace(t[i], t[i + 1], 301), f(x)) for i in range(K))
        assert r["minimax_error"] < lower, r
        assert r["minimax_error"] < r["uniform_error"] < r["uniform_interp_error"], r
        assert r["uniform_error"] >= lower * (1 - 1e-9), r  # the uniform baseline is not sandbagged


def test_reported_errors_equal_dense_grid_evaluation(table_rows):
    for r in _fit_rows(table_rows):
        name, K = r["function"], r["segments"]
        f = FORMULAS[name]
        fit = fit_pwl(name, K)
        a, b = r["x_range"]
        x = np.concatenate([_dense(a, b, 400_001), np.asarray(fit.breakpoints)])
        dense = np.abs(f(x) - fit(x)).max()
        assert dense <= fit.max_error * (1 + 1e-9) + 1e-15, (name, K)
        assert dense >= fit.max_error * (1 - 2e-5), (name, K)
        # the uniform interpolating PWL, evaluated independently with np.interp
        t = np.linspace(a, b, K + 1)
        dense_u = np.abs(f(x) - np.interp(x, t, f(t))).max()
        assert dense_u == pytest.approx(r["uniform_interp_error"], rel=2e-5)
        assert len(fit.breakpoints) == K + 1 and fit.breakpoints[0] == a and fit.breakpoints[-1] == b


def test_error_decreases_with_k(table_rows):
    fits = _fit_rows(table_rows)
    for name in DEMO_FUNCTIONS + HARD_FIT_FUNCTIONS:
        errors = [r["minimax_error"] for r in sorted(fits, key=lambda r: r["segments"]) if r["function"] == name]
        assert all(e1 < e0 for e0, e1 in zip(errors, errors[1:])), (name, errors)


def test_fitting_an_exact_pwl_recovers_it():
    """A PWL function with kinks needs its kinks as breakpoints: the fitter finds them (error ~0)."""
    for name, K, kinks in (("relu6", 3, (0.0, 6.0)), ("hard_sigmoid", 3, (-3.0, 3.0)), ("hard_tanh", 3, (-1.0, 1.0))):
        fit = fit_pwl(name, K, (-8.0, 8.0))
        assert fit.max_error < 1e-6, (name, fit.max_error)
        for k in kinks:
            assert min(abs(np.asarray(fit.breakpoints) - k)) < 1e-3


def test_fit_is_deterministic_and_accepts_plain_callables():
    f = FORMULAS["swish"]
    first = fit_pwl(lambda x: f(x), 6, (-6.0, 6.0))  # a new callable each time: no cache
    second = fit_pwl(lambda x: f(x), 6, (-6.0, 6.0))
    assert first.pwl.breakpoints == second.pwl.breakpoints and first.pwl.values == second.pwl.values
    assert first.pwl.name == "pwl(<lambda>,6)"


def test_tails_follow_asymptotes_or_end_segments():
    sig = fit_pwl("sigmoid", 8)
    assert sig.pwl.left_slope == 0.0 and sig.pwl.right_slope == 0.0
    assert abs(sig(np.array([1e6]))[0] - 1.0) < 1e-2  # bounded: stays near 1 far out
    sw = fit_pwl("swish", 8)
    assert (sw.pwl.left_slope, sw.pwl.right_slope) == (0.0, 1.0)
    seg = fit_pwl("swish", 8, tails="segments")
    bp, v = np.asarray(seg.pwl.breakpoints), np.asarray(seg.pwl.values)
    assert seg.pwl.right_slope == pytest.approx((v[-1] - v[-2]) / (bp[-1] - bp[-2]), rel=1e-12)


@pytest.mark.parametrize("call,match", [
    (lambda: fit_pwl("swish", 0), "segments"),
    (lambda: fit_pwl("swish", 4, (3.0, -3.0)), "a < b"),
    (lambda: fit_pwl(lambda x: np.where(x > 0.5, np.nan, x), 4, (-1.0, 1.0)), "NaN or infinite"),
    (lambda: fit_pwl(lambda x: x, 4), "x_range"),
    (lambda: fit_pwl("swish", 4, (-8.0, 8.0), int8=(QuantParams.from_range(-4, 4), QuantParams(0.1, 0))),
     "leave x_range out"),
    (lambda: fit_pwl("swish", 4, tails="flat"), "tails"),
])
def test_bad_fit_requests_are_clear_errors(call, match):
    with pytest.raises(EdgeActError, match=match):
        call()


# ---- int8 option -------------------------------------------------------------------------------------

INT8_CASES = [("swish", 8), ("sigmoid", 8), ("tanh", 16), ("gelu", 16), ("elu", 8), ("mish", 4)]


def _out_qp(name, in_qp):
    x = in_qp.dequantize(in_qp.codes())
    y = FORMULAS[name](x)
    return QuantParams.from_range(float(y.min()), float(y.max()))


@pytest.mark.parametrize("name,K", INT8_CASES)
def test_int8_fit_no_worse_than_plain_fit_in_lsb(name, K):
    a, b = RANGES[name]
    in_qp = QuantParams.from_range(a, b)
    out_qp = _out_qp(name, in_qp)
    fit8 = fit_pwl(name, K, int8=(in_qp, out_qp))
    span = tuple(float(v) for v in in_qp.dequantize(np.array([in_qp.qmin, in_qp.qmax])))
    plain = fit_pwl(name, K, span)
    # Independent: the codes of the exact function from the formula, the PWL codes from int8_table.
    x = in_qp.dequantize(in_qp.codes())
    exact = np.clip(np.rint(FORMULAS[name](x) / out_qp.scale) + out_qp.zero_point, out_qp.qmin, out_qp.qmax)
    lsb8 = int(np.abs(int8_table(fit8, in_qp, out_qp) - exact).max())
    lsb_plain = int(np.abs(int8_table(plain, in_qp, out_qp) - exact).max())
    assert fit8.int8.lsb_error == lsb8
    assert fit8.int8.float_fit_lsb_error == lsb_plain
    assert lsb8 <= lsb_plain
    got = out_qp.dequantize(int8_table(fit8, in_qp, out_qp))
    assert fit8.int8.value_error == pytest.approx(np.abs(got - FORMULAS[name](x)).max(), rel=1e-12)
    assert fit8.int8.value_error >= fit8.int8.exact_value_error - 1e-15
    assert fit8.int8.lsb_error <= fit8.int8.uniform_lsb_error <= fit8.int8.uniform_interp_lsb_error + 1


def test_int8_fit_can_reach_zero_lsb_where_the_plain_fit_cannot():
    in_qp = QuantParams.from_range(-8, 8)
    out_qp = _out_qp("elu", in_qp)
    fit8 = fit_pwl("elu", 8, int8=(in_qp, out_qp))
    assert fit8.int8.lsb_error == 0 < fit8.int8.float_fit_lsb_error
    np.testing.assert_array_equal(int8_table(fit8, in_qp, out_qp), int8_table("elu", in_qp, out_qp))
    assert fit8.pwl.name == "pwl(elu,8,int8)"


# ---- hard variants vs smooth, and the Markdown ---------------------------------------------------------

def test_hard_variant_gaps_match_closed_forms(table_rows):
    hard = {r["hard"]: r for r in table_rows if r["section"] == "hard_vs_smooth"}
    # hard_sigmoid − sigmoid peaks where σ' = 1/6: σ = (1 ± 1/√3)/2.
    s = (1 + 1 / math.sqrt(3)) / 2
    x_star = math.log(s / (1 - s))
    expected = {
        "hard_sigmoid": (abs(s - (x_star / 6 + 0.5)), x_star),
        "hard_swish": (3 / (1 + math.exp(3)), 3.0),  # |0 − swish(−3)| = |3 − swish(3)|
        "hard_mish": (2 * math.tanh(math.log1p(math.exp(-2))), -2.0),  # hard_mish(−2) = 0
        "hard_tanh": (1 - math.tanh(1.0), 1.0),
    }
    for name, (err, at) in expected.items():
        row = hard[name]
        assert row["max_abs_error"] == pytest.approx(err, rel=1e-9)
        assert abs(abs(row["at_x"]) - abs(at)) < 1e-5
        if row["symmetric"]:
            assert name != "hard_mish"
    # FACTS.md: 0.142 at −3, 0.069 at ≈ −1.32, 0.253 at −2
    assert round(hard["hard_swish"]["max_abs_error"], 3) == 0.142
    assert round(hard["hard_sigmoid"]["max_abs_error"], 3) == 0.069
    assert round(hard["hard_mish"]["max_abs_error"], 3) == 0.253


def test_markdown_has_both_tables(table_rows):
    md = render_markdown(table_rows)
    for name in DEMO_FUNCTIONS + HARD_FIT_FUNCTIONS:
        assert f"| {name} |" in md
    assert "| K=4 | K=8 | K=16 | K=32 |" in md
    assert "| hard_mish | mish | 0.2525 | -2.000 |" in md
    assert md.count("uniform, minimax values") == len(DEMO_FUNCTIONS + HARD_FIT_FUNCTIONS)
