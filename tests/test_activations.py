"""Every activation: torch function vs NumPy twin vs torch.nn vs a 40-digit mpmath formula; registry metadata.

The references are independent of the code under test: torch.nn's own modules, and the textbook formulas
evaluated with mpmath at 40 significant digits (tests/test_activations.py::MP_REFERENCE).
"""
from __future__ import annotations

import math

import mpmath as mp
import numpy as np
import pytest
import torch
from torch import nn

import edgeact.nn as enn
from edgeact import activations as A
from edgeact import functional as F
from edgeact import numpy_functional as nf
from edgeact.errors import EdgeActError, UnsupportedError

KINKS = [-6.0, -3.0, -2.0, -1.0, 0.0, 1.0, 2.0, 3.0, 6.0]
TINY = [-1e-300, -1e-12, 1e-12, 1e-300, -0.0]
# A dense float64 grid with the extremes ±50, every kink (and its float neighbours) and 0.
GRID = np.unique(np.concatenate([
    np.linspace(-50.0, 50.0, 100_001), KINKS, TINY,
    np.nextafter(KINKS, np.inf), np.nextafter(KINKS, -np.inf),
]))

def _prelu(weight: float) -> nn.PReLU:
    """nn.PReLU with an exactly float64 slope (its constructor rounds `init` to float32)."""
    m = nn.PReLU(1).double()
    m.weight.data.fill_(weight)
    return m


# (registry name, params, a factory of the torch.nn module computing the same function, or None where torch
# has no op). Factories: .double() / .float() convert a module in place, so every test gets a fresh one.
CASES = [
    ("identity", {}, lambda: nn.Identity()),
    ("sigmoid", {}, lambda: nn.Sigmoid()),
    ("tanh", {}, lambda: nn.Tanh()),
    ("relu", {}, lambda: nn.ReLU()),
    ("leaky_relu", {}, lambda: nn.LeakyReLU()),
    ("leaky_relu", {"negative_slope": 0.2}, lambda: nn.LeakyReLU(0.2)),
    ("leaky_relu", {"negative_slope": 0.0}, lambda: nn.LeakyReLU(0.0)),
    ("prelu", {}, lambda: _prelu(0.25)),
    ("prelu", {"weight": -0.3}, lambda: _prelu(-0.3)),
    ("relu6", {}, lambda: nn.ReLU6()),
    ("selu", {}, lambda: nn.SELU()),
    ("elu", {}, lambda: nn.ELU()),
    ("elu", {"alpha": 0.5}, lambda: nn.ELU(0.5)),
    ("elu", {"alpha": 2.0}, lambda: nn.ELU(2.0)),
    ("softplus", {}, lambda: nn.Softplus()),
    ("swish", {}, lambda: nn.SiLU()),
    ("swish", {"beta": 1.7}, None),
    ("swish", {"beta": 0.25}, None),
    ("hard_sigmoid", {}, lambda: nn.Hardsigmoid()),
    ("hard_sigmoid", {"alpha": 0.2, "beta": 0.5}, None),  # ONNX's defaults
    ("hard_sigmoid", {"alpha": 0.5, "beta": 0.6}, None),
    ("hard_tanh", {}, lambda: nn.Hardtanh()),
    ("hard_tanh", {"min_val": -2.0, "max_val": 3.0}, lambda: nn.Hardtanh(-2.0, 3.0)),
    ("hard_swish", {}, lambda: nn.Hardswish()),
    ("mish", {}, lambda: nn.Mish()),
    ("hard_mish", {}, None),
    ("gelu", {}, lambda: nn.GELU()),
    ("gelu", {"approximate": "none"}, lambda: nn.GELU("none")),
    ("gelu", {"approximate": "tanh"}, lambda: nn.GELU("tanh")),
]
CASE_IDS = [f"{n}-{p}" if p else n for n, p, _ in CASES]

# torch.nn.Softplus (and F.softplus) return x itself above its threshold 20: off by log1p(e^-x) < e^-20.
SOFTPLUS_THRESHOLD_ERROR = math.exp(-20.0)


def _mp(fn):
    def at_40_digits(x, **params):
        with mp.workdps(40):
            return float(fn(mp.mpf(x), **params))
    return at_40_digits


def _mp_sigmoid(x):
    return 1 / (1 + mp.exp(-x))


def _mp_softplus(x):
    return mp.log(1 + mp.exp(x))


def _mp_elu(x, alpha=1.0):
    return x if x > 0 else alpha * (mp.exp(x) - 1)


# Klambauer et al. 2017; strings, so that mpmath reads them at the working precision
SELU_ALPHA = "1.6732632423543772848170429916717"
SELU_SCALE = "1.0507009873554804934193349852946"

# The textbook formulas, at 40 digits: the reference nothing in edgeact computes.
MP_REFERENCE = {
    "identity": lambda x: x,
    "sigmoid": _mp_sigmoid,
    "tanh": mp.tanh,
    "relu": lambda x: max(x, 0),
    "leaky_relu": lambda x, negative_slope=0.01: x if x >= 0 else negative_slope * x,
    "prelu": lambda x, weight=0.25: x if x >= 0 else weight * x,
    "relu6": lambda x: min(max(x, 0), 6),
    "selu": lambda x: mp.mpf(SELU_SCALE) * (x if x > 0 else mp.mpf(SELU_ALPHA) * (mp.exp(x) - 1)),
    "elu": _mp_elu,
    "softplus": _mp_softplus,
    "swish": lambda x, beta=1.0: x * _mp_sigmoid(beta * x),
    "hard_sigmoid": lambda x, alpha=1 / 6, beta=0.5: min(max(alpha * x + beta, 0), 1),
    "hard_tanh": lambda x, min_val=-1.0, max_val=1.0: min(max(x, min_val), max_val),
    "hard_swish": lambda x: x * min(max(x + 3, 0), 6) / 6,
    "mish": lambda x: x * mp.tanh(_mp_softplus(x)),
    "hard_mish": lambda x: x * min(max(x + 2, 0), 2) / 2,
    "gelu": lambda x, approximate="none": (
        x / 2 * (1 + mp.erf(x / mp.sqrt(2))) if approximate == "none"
        else x / 2 * (1 + mp.tanh(mp.sqrt(2 / mp.pi) * (x + mp.mpf("0.044715") * x**3)))),
}


def test_every_registered_activation_is_covered():
    assert {n for n, _, _ in CASES} == set(A.names()) == set(MP_REFERENCE)


@pytest.mark.parametrize("name,params,_", CASES, ids=CASE_IDS)
def test_numpy_twin_equals_torch_function(name, params, _):
    act = A.get(name)
    want = act.torch(torch.from_numpy(GRID), **params).numpy()
    got = act.numpy(GRID, **params)
    assert got.dtype == np.float64 and got.shape == GRID.shape
    if name == "softplus":
        below = GRID <= 20
        np.testing.assert_allclose(got[below], want[below], rtol=1e-14, atol=1e-15)
        np.testing.assert_allclose(got[~below], want[~below], rtol=0, atol=SOFTPLUS_THRESHOLD_ERROR)
    else:
        np.testing.assert_allclose(got, want, rtol=1e-14, atol=1e-15)


@pytest.mark.parametrize("name,params,module", [c for c in CASES if c[2] is not None],
                         ids=[i for i, c in zip(CASE_IDS, CASES) if c[2] is not None])
def test_numpy_twin_equals_torch_nn(name, params, module):
    want = module().double()(torch.from_numpy(GRID)).detach().numpy()
    got = A.get(name).numpy(GRID, **params)
    atol = SOFTPLUS_THRESHOLD_ERROR if name == "softplus" else 1e-15
    np.testing.assert_allclose(got, want, rtol=1e-14, atol=atol)


@pytest.mark.parametrize("name,params,_", CASES, ids=CASE_IDS)
def test_numpy_twin_equals_40_digit_formula(name, params, _):
    xs = np.unique(np.concatenate([np.linspace(-50.0, 50.0, 801), np.linspace(-4.0, 4.0, 401), KINKS, TINY]))
    ref = np.array([_mp(MP_REFERENCE[name])(x, **params) for x in xs])
    got = A.get(name).numpy(xs, **params)
    # float64 relative accuracy, plus an absolute floor for the cancellation in 1 + erf(x/√2) at x ≪ 0
    np.testing.assert_allclose(got, ref, rtol=1e-13, atol=2e-15)


@pytest.mark.parametrize("name,params,module", [c for c in CASES if c[2] is not None],
                         ids=[i for i, c in zip(CASE_IDS, CASES) if c[2] is not None])
def test_edgeact_modules_match_torch_nn(name, params, module):
    x = torch.randn(2, 1, 7, 5, generator=torch.Generator().manual_seed(0)) * 6
    ref = module().float()
    want = ref(x).detach()
    converted = enn.from_torch(ref)
    assert converted is not None and converted.activation_name == name
    torch.testing.assert_close(converted(x), want, rtol=1e-6, atol=1e-6)
    extra = {"num_parameters": 1, "init": params["weight"]} if name == "prelu" and params else {}
    made = enn.make_activation(name, **(extra or ({} if name == "prelu" else params)))
    torch.testing.assert_close(made(x), want, rtol=1e-6, atol=1e-6)
    # the bound (table-building) function is the same function
    bound = converted.bound()
    assert bound.name == name
    np.testing.assert_allclose(bound(x.double().numpy()), want.double().numpy(), rtol=1e-6, atol=1e-6)


def test_from_torch_refuses_a_softplus_it_cannot_express():
    assert enn.from_torch(nn.Softplus(beta=2.0)) is None
    assert enn.from_torch(nn.Linear(2, 2)) is None


def test_swish_module_with_learnable_beta_matches_formula_and_trains():
    m = enn.Swish(beta=1.7, learnable=True)
    x = torch.linspace(-8, 8, 101, dtype=torch.float64)
    want = np.array([_mp(MP_REFERENCE["swish"])(float(v), beta=1.7) for v in x])
    np.testing.assert_allclose(m.double()(x).detach().numpy(), want, rtol=1e-6, atol=1e-7)
    m(x).sum().backward()
    assert m.beta.grad is not None and m.beta.grad.abs() > 0
    assert m.bound().params["beta"] == pytest.approx(1.7)


# ---------------------------------------------------------------------------------------------- PReLU


def test_prelu_per_channel_matches_torch_nn_and_the_twin():
    gen = torch.Generator().manual_seed(1)
    slopes = torch.tensor([0.25, -0.5, 0.0, 1.5, 0.01], dtype=torch.float64)
    x = torch.randn(3, 5, 4, 6, generator=gen, dtype=torch.float64) * 10
    ref = nn.PReLU(5).double()
    ref.weight.data.copy_(slopes)
    want = ref(x).detach().numpy()
    np.testing.assert_allclose(F.prelu(x, slopes).numpy(), want, rtol=0, atol=0)
    np.testing.assert_allclose(nf.prelu(x.numpy(), slopes.numpy()), want, rtol=0, atol=0)
    mod = enn.from_torch(ref.float())
    np.testing.assert_allclose(mod(x.float()).detach().numpy(), want, rtol=1e-6, atol=1e-6)
    # the channel dimension is dim 1, like torch: an independent per-channel loop
    for c in range(5):
        xc = x[:, c].numpy()
        np.testing.assert_array_equal(want[:, c], np.where(xc >= 0, xc, float(slopes[c]) * xc))


def test_prelu_bound_on_codes_gives_one_row_per_channel():
    slopes = np.array([0.25, -0.5, 0.0, 1.5])
    bound = A.bind("prelu", weight=slopes)
    assert bound.channels == 4
    x = np.linspace(-3, 3, 256)
    rows = bound.on_codes(x)
    assert rows.shape == (4, 256)
    for c, w in enumerate(slopes):
        np.testing.assert_array_equal(rows[c], np.where(x >= 0, x, w * x))
    # a shared slope (size 1) is per tensor
    shared = A.bind("prelu", weight=np.array([0.3]))
    assert shared.channels is None
    np.testing.assert_array_equal(shared.on_codes(x), np.where(x >= 0, x, 0.3 * x))


def test_prelu_module_bound_carries_trained_slopes():
    m = enn.PReLU(3)
    with torch.no_grad():
        m.weight.copy_(torch.tensor([0.1, 0.2, -0.3]))
    b = m.bound()
    assert b.channels == 3
    np.testing.assert_allclose(np.asarray(b.params["weight"]), [0.1, 0.2, -0.3], rtol=1e-7)
    assert enn.PReLU(1).bound().channels is None


# ------------------------------------------------------------------------------------- the registry

BIG = 1e6


def _slopes(name, lo=-10.0, hi=10.0):
    """Exact-binary grid (step 2⁻¹⁰), so a slope change is the function's, not rounding noise."""
    x = np.arange(round(lo * 1024), round(hi * 1024) + 1) / 1024.0
    y = A.get(name).numpy(x)
    return x, np.diff(y) * 1024.0


@pytest.mark.parametrize("name", A.names())
def test_bounds_in_metadata_are_true(name):
    act = A.get(name)
    f = act.numpy
    below, above = float(f(-BIG)), float(f(BIG))
    on_grid = f(GRID)
    if act.bounded_below:
        assert below > -10 and on_grid.min() > -10
    else:
        assert below < -1e3
    if act.bounded_above:
        assert above < 10 and on_grid.max() < 10
    else:
        assert above > 1e3


@pytest.mark.parametrize("name", A.names())
def test_monotonic_in_metadata_is_true(name):
    act = A.get(name)
    steps = np.diff(act.numpy(GRID))
    if act.monotonic:
        assert steps.min() >= 0.0
    else:
        assert steps.min() < -1e-6


@pytest.mark.parametrize("name", A.names())
def test_smooth_in_metadata_is_true(name):
    """Smooth = continuously differentiable: no jump in the slope between neighbouring grid intervals."""
    act = A.get(name)
    _, slopes = _slopes(name)
    jump = np.abs(np.diff(slopes)).max()
    if act.smooth:
        assert jump < 0.01, f"{name}: the slope jumps by {jump}"
    else:
        assert jump > 0.05


@pytest.mark.parametrize("name", A.names())
def test_piecewise_linear_in_metadata_is_true(name):
    act = A.get(name)
    x, slopes = _slopes(name)
    bends = np.count_nonzero(np.abs(np.diff(slopes)) > 1e-9)
    if act.piecewise_linear:
        assert bends <= 8, f"{name} bends at {bends} points"
    else:
        assert bends > 1000


def test_hard_variants_and_what_they_stand_in_for_agree():
    for act in A.REGISTRY.values():
        if act.hard_variant:
            assert A.get(act.hard_variant).stands_in_for == act.name
        if act.stands_in_for:
            assert A.get(act.stands_in_for).hard_variant == act.name
    pairs = {(a.stands_in_for, a.name) for a in A.REGISTRY.values() if a.stands_in_for}
    assert pairs == {("sigmoid", "hard_sigmoid"), ("tanh", "hard_tanh"), ("swish", "hard_swish"),
                     ("mish", "hard_mish")}


def test_learnable_parameters_and_ranges_are_sane():
    for act in A.REGISTRY.values():
        assert set(act.learnable) <= set(act.defaults)
        lo, hi = act.range_of_interest
        assert lo < 0 < hi
        assert act.description
    assert A.get("prelu").learnable == ("weight",) and A.get("swish").learnable == ("beta",)


@pytest.mark.parametrize("alias,name", [
    ("silu", "swish"), ("SiLU", "swish"), ("hardswish", "hard_swish"), ("hard-swish", "hard_swish"),
    ("Hard-Swish", "hard_swish"), ("hswish", "hard_swish"), ("hardsigmoid", "hard_sigmoid"),
    ("hardmish", "hard_mish"), ("hard_mish", "hard_mish"), ("hardtanh", "hard_tanh"), ("linear", "identity"),
    ("logistic", "sigmoid"), ("leakyrelu", "leaky_relu"), ("LeakyReLU", "leaky_relu"), ("lrelu", "leaky_relu"),
    (" relu6 ", "relu6"), ("GELU", "gelu"),
])
def test_aliases(alias, name):
    assert A.canonical_name(alias) == name
    assert A.get(alias) is A.REGISTRY[name]
    assert type(enn.make_activation(alias)).activation_name == name


def test_unknown_name_is_a_clear_error():
    with pytest.raises(UnsupportedError, match=r"unknown activation 'swishy'.*hard_swish"):
        A.get("swishy")
    with pytest.raises(EdgeActError):
        enn.make_activation("nope")


def test_unknown_parameter_is_a_clear_error():
    with pytest.raises(UnsupportedError, match=r"no parameter\(s\) \['slope'\].*negative_slope"):
        A.bind("leaky_relu", slope=0.1)
    with pytest.raises(UnsupportedError, match="none"):
        A.get("relu").numpy(np.zeros(2), alpha=1.0)


@pytest.mark.parametrize("fn", [lambda: A.bind("gelu", approximate="tanhh")(np.zeros(3)),
                                lambda: A.get("gelu").grad(np.zeros(3), approximate="erf")])
def test_gelu_unknown_approximation_is_an_error_not_a_silent_erf(fn):
    with pytest.raises(UnsupportedError, match="approximate"):
        fn()


def test_bind_keeps_parameters_and_merges_overrides():
    b = A.bind("elu", alpha=0.5)
    assert b.name == "elu" and dict(b.params) == {"alpha": 0.5} and b.definition is A.get("elu")
    b2 = A.bind(b, alpha=2.0)
    assert dict(b2.params) == {"alpha": 2.0}
    np.testing.assert_allclose(b2(np.array([-1.0])), [2.0 * math.expm1(-1.0)], rtol=1e-15)
    assert A.bind(b) is b
    assert A.bind(A.get("relu")).name == "relu"
