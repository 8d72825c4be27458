"""Analytic derivatives (edgeact.derivatives) against torch autograd in float64, and Mish's seed form."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from edgeact import activations as A
from edgeact import derivatives as D
from edgeact import numpy_functional as nf

GRID = np.unique(np.concatenate([np.linspace(-50.0, 50.0, 100_001), [-1e-12, 1e-12, 1e-300, -1e-300]]))

# (name, params, where the derivative jumps)
CASES = [
    ("identity", {}, []),
    ("sigmoid", {}, []),
    ("tanh", {}, []),
    ("relu", {}, [0.0]),
    ("leaky_relu", {}, [0.0]),
    ("leaky_relu", {"negative_slope": 0.2}, [0.0]),
    ("prelu", {}, [0.0]),
    ("prelu", {"weight": -0.7}, [0.0]),
    ("relu6", {}, [0.0, 6.0]),
    ("selu", {}, [0.0]),
    ("elu", {}, [0.0]),
    ("elu", {"alpha": 0.3}, [0.0]),
    ("softplus", {}, []),
    ("swish", {}, []),
    ("swish", {"beta": 1.7}, []),
    ("swish", {"beta": 0.3}, []),
    ("hard_sigmoid", {}, [-3.0, 3.0]),
    ("hard_sigmoid", {"alpha": 0.2, "beta": 0.5}, [-2.5, 2.5]),
    ("hard_tanh", {}, [-1.0, 1.0]),
    ("hard_tanh", {"min_val": -0.5, "max_val": 2.0}, [-0.5, 2.0]),
    ("hard_swish", {}, [-3.0, 3.0]),
    ("mish", {}, []),
    ("hard_mish", {}, [-2.0, 0.0]),
    ("gelu", {}, []),
    ("gelu", {"approximate": "tanh"}, []),
]
IDS = [f"{n}-{p}" if p else n for n, p, _ in CASES]

# Where autograd is not the exact derivative: torch.nn.functional.softplus returns x above 20 (slope 1
# instead of σ(x), off by < e^-20), and hardsigmoid's backward multiplies by the float32 constant 1/6.
ATOL = {"softplus": math.exp(-20.0), "hard_sigmoid": 1e-8}


def autograd(name, x, **params):
    xt = torch.tensor(x, dtype=torch.float64, requires_grad=True)
    A.get(name).torch(xt, **params).sum().backward()
    return xt.grad.numpy()


def test_every_activation_has_a_derivative_case():
    assert {n for n, _, _ in CASES} == set(A.names())


@pytest.mark.parametrize("name,params,kinks", CASES, ids=IDS)
def test_derivative_equals_autograd_away_from_kinks(name, params, kinks):
    x = GRID[np.all(np.abs(GRID[:, None] - np.array(kinks + [np.inf])[None, :]) > 1e-9, axis=1)]
    got = A.get(name).grad(x, **params)
    want = autograd(name, x, **params)
    assert got.shape == x.shape and np.isfinite(got).all()
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=ATOL.get(name, 1e-14))


@pytest.mark.parametrize("name,params,kinks", [c for c in CASES if c[2]], ids=[i for i, c in zip(IDS, CASES) if c[2]])
def test_derivative_at_a_kink_is_one_of_the_one_sided_slopes(name, params, kinks):
    """At a kink the derivative does not exist; the value used must be one of the two one-sided slopes."""
    act = A.get(name)
    h = 1e-7
    for k in kinks:
        left = (act.numpy(k, **params) - act.numpy(k - h, **params)) / h
        right = (act.numpy(k + h, **params) - act.numpy(k, **params)) / h
        g = float(act.grad(np.array([k]), **params)[0])
        assert min(abs(g - left), abs(g - right)) < 1e-6, (k, g, left, right)


# hard_sigmoid with other α, β is clamp(αx + β, 0, 1) in torch, whose autograd passes the gradient AT the
# clamp bounds (α), while F.hardsigmoid's backward gives 0 there: torch has no single convention for it.
# Both are one-sided slopes (checked above); the derivative follows F.hardsigmoid's.
TORCH_CONVENTION = [(c, i) for c, i in zip(CASES, IDS)
                    if c[2] and not (c[0] == "hard_sigmoid" and c[1])]


@pytest.mark.parametrize("name,params,kinks", [c for c, _ in TORCH_CONVENTION], ids=[i for _, i in TORCH_CONVENTION])
def test_derivative_at_a_kink_follows_autograd(name, params, kinks):
    """The derivatives module promises PyTorch's convention at kinks (so plots agree with training)."""
    x = np.array(kinks)
    np.testing.assert_allclose(A.get(name).grad(x, **params), autograd(name, x, **params),
                               rtol=0, atol=ATOL.get(name, 1e-15))


def test_prelu_per_channel_derivative_equals_autograd():
    gen = torch.Generator().manual_seed(0)
    w = np.array([0.25, -0.5, 0.0, 1.5])
    x = (torch.randn(2, 4, 3, 3, generator=gen, dtype=torch.float64) * 5).numpy()
    xt = torch.tensor(x, requires_grad=True)
    A.get("prelu").torch(xt, weight=torch.from_numpy(w)).sum().backward()
    np.testing.assert_array_equal(D.prelu(x, weight=w), xt.grad.numpy())


def test_prelu_slope_gradient_is_what_a_learnable_prelu_trains_with():
    """d/dw PReLU = x where x < 0 (summed per channel): autograd on the module vs the formula."""
    from edgeact.nn import PReLU

    m = PReLU(3).double()
    x = torch.randn(5, 3, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    m(x).sum().backward()
    want = torch.where(x < 0, x, torch.zeros_like(x)).sum(dim=(0, 2))
    torch.testing.assert_close(m.weight.grad, want)


# ------------------------------------------------------------------------------------------ Mish

def test_mish_seed_form_equals_autograd():
    """The seed's form f'(x) = sech²(softplus(x))·x·σ(x) + f(x)/x, written out here term by term."""
    x = GRID[GRID != 0.0]
    x = x[np.abs(x) > 1e-6]  # f(x)/x is 0/0 at 0 and loses all digits next to it
    sp = np.log1p(np.exp(-np.abs(x))) + np.maximum(x, 0.0)
    sech2 = 1.0 / np.cosh(sp) ** 2
    sigma = 1.0 / (1.0 + np.exp(-x))
    f = x * np.tanh(sp)
    seed = sech2 * x * sigma + f / x
    want = autograd("mish", x)
    np.testing.assert_allclose(seed, want, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(D.mish(x), want, rtol=1e-12, atol=1e-14)
    # through Swish: Δ(x)·swish(x) + f(x)/x with Δ = sech²(softplus(x))
    np.testing.assert_allclose(sech2 * nf.swish(x) + nf.mish(x) / x, want, rtol=1e-12, atol=1e-14)


def test_mish_derivative_at_zero_is_the_limit():
    """f(x)/x → tanh(ln 2) = 0.6 as x → 0, and sech²·x·σ → 0: f'(0) = 0.6."""
    assert D.mish(np.array([0.0]))[0] == pytest.approx(math.tanh(math.log(2.0)), abs=1e-15)
    assert math.tanh(math.log(2.0)) == pytest.approx(0.6, abs=1e-15)
    np.testing.assert_allclose(D.mish(np.array([0.0])), autograd("mish", np.array([0.0])), rtol=1e-15)


def test_derivatives_are_elementwise_and_keep_shape():
    x = np.linspace(-4, 4, 24).reshape(2, 3, 4)
    for name in A.names():
        g = A.get(name).grad(x)
        assert g.shape == x.shape and g.dtype == np.float64
        np.testing.assert_array_equal(g.reshape(-1), A.get(name).grad(x.reshape(-1)))
