"""Observers: min-max exact, the moving-average formula, percentile clipping, MSE-optimal ranges, NaN errors."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from edgeact.errors import QuantizationError
from edgeact.observers import (
    MinMaxObserver, MovingAverageMinMaxObserver, MSEObserver, PercentileObserver, make_observer,
)
from edgeact.qparams import QuantParams


def batches(seed=0, n=5, shape=(4, 3, 8, 8), scale=3.0):
    gen = torch.Generator().manual_seed(seed)
    return [torch.randn(*shape, generator=gen) * scale + i for i in range(n)]


def quant_mse(x: np.ndarray, qp: QuantParams) -> float:
    return float(np.mean((qp.dequantize(qp.quantize(x)) - x) ** 2))


def test_minmax_is_the_exact_range_seen():
    obs = MinMaxObserver()
    data = batches()
    for b in data:
        assert obs(b) is not None
    allx = torch.cat([b.reshape(-1) for b in data])
    lo, hi = obs.range()
    assert lo == allx.min().item() and hi == allx.max().item()
    assert obs.qparams() == QuantParams.from_range(float(allx.min()), float(allx.max()))


def test_minmax_returns_its_input_unchanged():
    x = torch.randn(10)
    assert torch.equal(MinMaxObserver()(x), x)


def test_minmax_per_channel_is_exact_per_channel():
    w = torch.randn(6, 4, 3, 3, generator=torch.Generator().manual_seed(3))
    obs = MinMaxObserver(axis=0, symmetric=True, narrow=True)
    obs(w)
    lo, hi = obs.range()
    np.testing.assert_array_equal(lo, w.amin(dim=(1, 2, 3)).numpy())
    np.testing.assert_array_equal(hi, w.amax(dim=(1, 2, 3)).numpy())
    qp = obs.qparams()
    assert qp.per_channel and qp.axis == 0 and qp.narrow and qp.zero_point == (0,) * 6
    amax = w.abs().amax(dim=(1, 2, 3)).double().numpy()
    np.testing.assert_allclose(qp.scale, amax / 127, rtol=1e-7)
    # axis 1 (e.g. a transposed weight) reduces over everything else
    obs1 = MinMaxObserver(axis=1)
    obs1(w)
    np.testing.assert_array_equal(obs1.range()[1], w.amax(dim=(0, 2, 3)).numpy())


def test_moving_average_follows_its_formula():
    c = 0.1
    obs = MovingAverageMinMaxObserver(averaging_constant=c)
    data = batches(n=6)
    lo, hi = float(data[0].min()), float(data[0].max())
    for i, b in enumerate(data):
        obs(b)
        if i:
            lo = lo + c * (float(b.min()) - lo)
            hi = hi + c * (float(b.max()) - hi)
        got_lo, got_hi = obs.range()
        assert got_lo == pytest.approx(lo, rel=1e-6) and got_hi == pytest.approx(hi, rel=1e-6)


def test_moving_average_shrugs_off_one_odd_batch():
    obs = MovingAverageMinMaxObserver(averaging_constant=0.01)
    for b in batches(n=4, scale=1.0):
        obs(b - b.mean())
    before = obs.range()[1]
    obs(torch.tensor([1000.0, -1.0]))
    assert obs.range()[1] < before + 0.011 * 1000


def test_percentile_clips_a_planted_outlier():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(200_000, generator=gen)
    x[12345] = 1000.0
    x[54321] = -800.0
    pct = PercentileObserver(percentile=99.99)
    pct(x)
    lo, hi = pct.range()
    # the true 0.01 % / 99.99 % quantiles of N(0, 1) are ∓3.72; one histogram bin here is ~0.88 wide
    assert -5.0 < lo < -2.5 and 2.5 < hi < 5.0
    mm = MinMaxObserver()
    mm(x)
    assert mm.range() == (-800.0, 1000.0)
    # and the clipped range quantizes the bulk of the data far better
    xs = x.double().numpy()
    assert quant_mse(xs[np.abs(xs) < 4], pct.qparams()) < quant_mse(xs[np.abs(xs) < 4], mm.qparams()) / 100


def test_percentile_histogram_grows_over_batches():
    pct = PercentileObserver(percentile=99.0, bins=512)
    gen = torch.Generator().manual_seed(1)
    pct(torch.rand(50_000, generator=gen))           # U(0, 1)
    pct(torch.rand(50_000, generator=gen) * 4 - 2)   # U(−2, 2): the range grows, the old mass is re-binned
    assert float(pct.histogram.sum()) == pytest.approx(100_000)
    lo, hi = pct.range()
    # the mixture's 1 % quantile is −1.96 + …, its 99 % quantile 1.96: within a couple of bins
    assert lo == pytest.approx(-1.96, abs=0.05) and hi == pytest.approx(1.96, abs=0.05)


@pytest.mark.parametrize("dist", ["laplace", "student_t3"])
def test_mse_observer_beats_minmax_on_heavy_tailed_data(dist):
    rng = np.random.default_rng(0)
    x = (rng.laplace(size=200_000) if dist == "laplace" else rng.standard_t(3, size=200_000)).astype(np.float32)
    mse, mm = MSEObserver(), MinMaxObserver()
    mse(torch.from_numpy(x))
    mm(torch.from_numpy(x))
    xs = x.astype(np.float64)
    err_mse, err_mm = quant_mse(xs, mse.qparams()), quant_mse(xs, mm.qparams())
    assert err_mse < 0.8 * err_mm
    lo, hi = mse.range()
    assert float(x.min()) < lo and hi < float(x.max())  # it clipped
    # within 2 % of the best clipping range of the same family, found by brute force on the data itself
    lo0, hi0 = float(x.min()), float(x.max())
    best = min(quant_mse(xs, QuantParams.from_range(lo0 * f, hi0 * f)) for f in np.linspace(0.3, 1.0, 141))
    assert err_mse <= 1.02 * best


def test_mse_observer_keeps_the_full_range_of_uniform_data():
    x = torch.linspace(-1, 1, 100_001)
    obs = MSEObserver()
    obs(x)
    lo, hi = obs.range()
    assert lo <= -0.98 and hi >= 0.98


@pytest.mark.parametrize("kind", ["minmax", "moving_average", "percentile", "mse"])
@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_nan_or_inf_raises_an_error_naming_the_tensor(kind, bad):
    obs = make_observer(kind, name="conv3 output")
    x = torch.randn(100)
    x[7] = bad
    kind_name = "NaN" if bad != bad else "Inf"
    with pytest.raises(QuantizationError, match=rf"{kind_name} values reached conv3 output.*calibration data"):
        obs(x)


@pytest.mark.parametrize("kind", ["minmax", "moving_average", "percentile", "mse"])
def test_no_data_is_an_error_naming_the_tensor(kind):
    with pytest.raises(QuantizationError, match=r"no data was observed for layer1\.act.*calibrat"):
        make_observer(kind, name="layer1.act").qparams()


@pytest.mark.parametrize("kind", ["minmax", "moving_average"])
def test_all_zero_tensor_is_an_error_naming_the_tensor(kind):
    obs = make_observer(kind, name="dead relu")
    obs(torch.zeros(10))
    with pytest.raises(QuantizationError, match=r"dead relu: zero-width range"):
        obs.qparams()


def test_unknown_observer_and_per_channel_histogram_are_errors():
    with pytest.raises(QuantizationError, match=r"unknown observer 'minmaxx'.*minmax"):
        make_observer("minmaxx")
    with pytest.raises(QuantizationError, match="per tensor"):
        make_observer("percentile", axis=0)


def test_observer_state_is_in_the_state_dict():
    obs = MinMaxObserver()
    obs(torch.tensor([-1.0, 2.0]))
    fresh = MinMaxObserver()
    fresh.load_state_dict(obs.state_dict())
    assert fresh.range() == (-1.0, 2.0)
