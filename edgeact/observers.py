"""Observers: watch a tensor during calibration and choose its quantization range.

min-max (the range seen), moving-average min-max (QAT, robust to one odd batch), percentile
(clips rare outliers via a histogram) and MSE-optimal (the clipping range with the least
quantization error on the histogram). Each is a module so its state is in the state_dict.
"""
from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from edgeact.dense import dense_elements
from edgeact.errors import QuantizationError
from edgeact.qparams import QuantParams


def _check_finite(x: torch.Tensor, where: str) -> None:
    if not torch.isfinite(x).all():
        kind = "NaN" if torch.isnan(x).any() else "Inf"
        raise QuantizationError(
            f"{kind} values reached {where}: fix the model (NaN weights?) or the calibration data; "
            "a tensor with NaN/Inf has no quantization range"
        )


class Observer(nn.Module):
    """Base: records a range; `qparams()` turns it into QuantParams."""

    def __init__(self, dtype: str = "int8", symmetric: bool = False, axis: int | None = None,
                 narrow: bool = False, name: str = "a tensor"):
        super().__init__()
        self.dtype, self.symmetric, self.axis, self.narrow = dtype, symmetric, axis, narrow
        self.where = name
        self.register_buffer("min_val", torch.tensor(float("inf")))
        self.register_buffer("max_val", torch.tensor(float("-inf")))

    #: the quantization range is the observed min/max (a histogram observer's is a statistic of it)
    minmax_range = True

    @property
    def has_data(self) -> bool:
        # `_seen` spares a tensor check per QAT step; the buffers stay the truth (a loaded state_dict).
        if self.__dict__.get("_seen"):
            return True
        seen = bool(torch.isfinite(self.min_val).all())
        self.__dict__["_seen"] = seen
        return seen

    def _load_from_state_dict(self, *args, **kwargs):
        self.__dict__["_seen"] = False
        super()._load_from_state_dict(*args, **kwargs)

    def _reduce(self, x: torch.Tensor):
        if self.axis is None:
            return torch.aminmax(dense_elements(x))  # one pass over x instead of two; the same two numbers
        flat = (x if self.axis == 0 else x.transpose(0, self.axis)).reshape(x.shape[self.axis], -1)
        return torch.aminmax(flat, dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.detach()
        self.update(x.float())
        return x

    def _finite_range(self, x: torch.Tensor):
        """min and max, checked: NaN propagates through them and Inf shows in them, so checking
        these two is as good as checking every element, and far cheaper in QAT."""
        lo, hi = self._reduce(x)
        _check_finite(torch.stack([lo.reshape(-1), hi.reshape(-1)]), self.where)
        return lo, hi

    def update(self, x: torch.Tensor) -> None:
        if self.axis is not None and self.has_data and x.dtype == self.min_val.dtype == torch.float32:
            return self._update_channels(x)
        lo, hi = self._finite_range(x)
        if not self.has_data:
            self.min_val, self.max_val = lo.clone(), hi.clone()
        else:
            self.min_val, self.max_val = torch.minimum(self.min_val, lo), torch.maximum(self.max_val, hi)

    def _update_channels(self, x: torch.Tensor) -> None:
        """Per channel (the weights, at every QAT step) in fewer ops: NaN and Inf make the summed spans
        non-finite, so one sum stands for the elementwise check unless it is non-finite (or overflows);
        the running min/max are updated in place."""
        lo, hi = self._reduce(x)
        if not math.isfinite(float((hi - lo).sum())):
            _check_finite(torch.stack([lo, hi]), self.where)
        if self.min_val.is_inference() or self.max_val.is_inference():
            self.min_val, self.max_val = torch.minimum(self.min_val, lo), torch.maximum(self.max_val, hi)
        else:
            torch.minimum(self.min_val, lo, out=self.min_val)
            torch.maximum(self.max_val, hi, out=self.max_val)

    def observe_range(self, x: torch.Tensor) -> tuple[float, float] | None:
        """Observe `x` and return the updated range as Python floats (the float32 buffer values), for the
        QAT step: one aminmax, the update in scalars, the buffers filled in place — where it applies (per
        tensor, float32, a min/max range, a range already started); None elsewhere, then call the module.
        The batch's own min and max stay in `batch_range` until the next call."""
        if not self._scalar_update_applies(x.dtype):
            return None
        lo_t, hi_t = torch.aminmax(dense_elements(x.detach()))
        lo, hi = lo_t.item(), hi_t.item()
        if not (math.isfinite(lo) and math.isfinite(hi)):
            _check_finite(torch.stack([lo_t, hi_t]), self.where)
        self.__dict__["batch_range"] = (lo, hi)
        return self._widen(lo, hi)

    def observe_extremes(self, lo: float, hi: float) -> tuple[float, float] | None:
        """observe_range() for a float32 tensor whose min and max are known without a pass over it (an
        activation's values over a span of input codes, from its table): the same update."""
        if not self._scalar_update_applies(torch.float32):
            return None
        if not (math.isfinite(lo) and math.isfinite(hi)):
            _check_finite(torch.tensor([lo, hi]), self.where)
        return self._widen(lo, hi)

    def _scalar_update_applies(self, dtype: torch.dtype) -> bool:
        buffers = self._buffers  # read once: nn.Module attribute lookup costs more than the arithmetic here
        return (self.axis is None and self.minmax_range and dtype == torch.float32
                and buffers["min_val"].dtype == torch.float32 and self.has_data)

    def _widen(self, lo: float, hi: float) -> tuple[float, float]:
        mn, mx = self._buffers["min_val"], self._buffers["max_val"]
        lo, hi = self._merge(mn.item(), mx.item(), lo, hi)
        if mn.is_inference() or mx.is_inference():  # not writable outside inference mode
            self.min_val, self.max_val = torch.tensor(lo), torch.tensor(hi)
        else:
            mn.fill_(lo)
            mx.fill_(hi)
        return lo, hi

    def _merge(self, mn: float, mx: float, lo: float, hi: float) -> tuple[float, float]:
        """update()'s rule on scalars: the range [mn, mx] seen so far widened to [lo, hi]."""
        return min(mn, lo), max(mx, hi)

    def range(self) -> tuple[np.ndarray, np.ndarray]:
        if not self.has_data:
            raise QuantizationError(
                f"no data was observed for {self.where}: run calibration (edgeact.calibrate) or QAT "
                "steps that reach this tensor before convert"
            )
        return self.min_val.detach().cpu().numpy().astype(np.float64), self.max_val.detach().cpu().numpy().astype(np.float64)

    def qparams(self) -> QuantParams:
        lo, hi = self.range()
        if self.axis is None:
            lo, hi = float(lo), float(hi)
        try:
            return QuantParams.from_range(lo, hi, self.dtype, self.symmetric, self.axis, self.narrow)
        except QuantizationError as exc:
            raise QuantizationError(f"{self.where}: {exc}") from None


class MinMaxObserver(Observer):
    """The range seen over all calibration batches."""


class MovingAverageMinMaxObserver(Observer):
    """Exponential moving average of per-batch min/max (what QAT uses)."""

    def __init__(self, averaging_constant: float = 0.01, **kw):
        super().__init__(**kw)
        self.c = averaging_constant

    def update(self, x: torch.Tensor) -> None:
        lo, hi = self._finite_range(x)
        if not self.has_data:
            self.min_val, self.max_val = lo.clone(), hi.clone()
        else:
            self.min_val = self.min_val + self.c * (lo - self.min_val)
            self.max_val = self.max_val + self.c * (hi - self.max_val)

    def _merge(self, mn: float, mx: float, lo: float, hi: float) -> tuple[float, float]:
        # update()'s float32 tensor arithmetic, operation for operation, on NumPy float32 scalars
        c, mn, mx = np.float32(self.c), np.float32(mn), np.float32(mx)
        return float(mn + c * (np.float32(lo) - mn)), float(mx + c * (np.float32(hi) - mx))


class _HistogramObserver(Observer):
    """Keeps a histogram over a range that grows as needed (per-tensor only)."""

    minmax_range = False

    def __init__(self, bins: int = 2048, **kw):
        super().__init__(**kw)
        if self.axis is not None:
            raise QuantizationError("histogram observers are per tensor; use MinMaxObserver for per-channel weights")
        self.bins = bins
        self.register_buffer("histogram", torch.zeros(bins, dtype=torch.float64))

    def update(self, x: torch.Tensor) -> None:
        _check_finite(x, self.where)
        lo, hi = float(x.min()), float(x.max())
        if not self.has_data:
            new_lo, new_hi = lo, hi
        else:
            new_lo, new_hi = min(lo, float(self.min_val)), max(hi, float(self.max_val))
        if new_hi <= new_lo:
            new_hi = new_lo + 1e-12
        if self.has_data and (new_lo < float(self.min_val) or new_hi > float(self.max_val)):
            # Re-bin the old histogram into the wider range (mass at old bin centres).
            old_edges = np.linspace(float(self.min_val), float(self.max_val), self.bins + 1)
            centres = (old_edges[:-1] + old_edges[1:]) / 2
            rebinned, _ = np.histogram(centres, bins=self.bins, range=(new_lo, new_hi),
                                       weights=self.histogram.numpy())
            self.histogram = torch.from_numpy(rebinned)
        hist, _ = np.histogram(x.cpu().numpy().ravel(), bins=self.bins, range=(new_lo, new_hi))
        self.histogram = self.histogram + torch.from_numpy(hist.astype(np.float64))
        self.min_val, self.max_val = torch.tensor(new_lo), torch.tensor(new_hi)

    def _edges(self) -> np.ndarray:
        return np.linspace(float(self.min_val), float(self.max_val), self.bins + 1)


class PercentileObserver(_HistogramObserver):
    """Clip to the [100−p, p] percentiles of everything seen (drops rare outliers)."""

    def __init__(self, percentile: float = 99.99, **kw):
        super().__init__(**kw)
        self.percentile = percentile

    def range(self):
        super().range()
        hist = self.histogram.numpy()
        cdf = np.cumsum(hist) / hist.sum()
        edges = self._edges()
        lo = edges[np.searchsorted(cdf, (100.0 - self.percentile) / 100.0)]
        hi = edges[min(np.searchsorted(cdf, self.percentile / 100.0) + 1, self.bins)]
        return np.float64(lo), np.float64(hi)


class MSEObserver(_HistogramObserver):
    """The clipping range that minimises the expected squared quantization error on the histogram."""

    def __init__(self, candidates: int = 100, **kw):
        super().__init__(**kw)
        self.candidates = candidates

    def range(self):
        lo0, hi0 = super().range()
        hist = self.histogram.numpy()
        edges = self._edges()
        centres = (edges[:-1] + edges[1:]) / 2
        best, best_err = (lo0, hi0), np.inf
        for frac in np.linspace(1.0 / self.candidates, 1.0, self.candidates):
            lo, hi = min(lo0 * frac, 0.0), max(hi0 * frac, 0.0)
            if hi - lo <= 0:
                continue
            qp = QuantParams.from_range(lo, hi, self.dtype, self.symmetric, None, self.narrow)
            err = np.sum(hist * (qp.dequantize(qp.quantize(centres)) - centres) ** 2)
            if err < best_err:
                best, best_err = (np.float64(lo), np.float64(hi)), err
        return best


OBSERVERS = {
    "minmax": MinMaxObserver,
    "moving_average": MovingAverageMinMaxObserver,
    "percentile": PercentileObserver,
    "mse": MSEObserver,
}


def make_observer(kind: str = "minmax", **kw) -> Observer:
    if kind not in OBSERVERS:
        raise QuantizationError(f"unknown observer {kind!r}; choose one of {', '.join(OBSERVERS)}")
    return OBSERVERS[kind](**kw)
