"""Piecewise-linear (PWL) stand-ins: exact PWL activations, minimax PWL fits, and their error table.

A PWL function is what an integer device evaluates cheaply without a table (compare, multiply, add),
and it is how the hard variants (hard_sigmoid, hard_swish, hard_mish) stand in for smooth ones.
`PiecewiseLinear` is the immutable object (NumPy and autograd-friendly torch evaluation, an int8 table
through `.bind()`, a module through `.to_module()`); `fit_pwl` finds the K-segment continuous PWL with
the smallest maximum absolute error (optionally: the smallest error after int8 output quantization);
`demo_table` / `render_markdown` give the table the demo prints and the README keeps.
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np
import scipy.sparse as sp
import torch
from scipy.optimize import linprog

from edgeact.activations import ActivationDef, BoundActivation, bind, get
from edgeact.errors import EdgeActError, QuantizationError, UnsupportedError
from edgeact.nn.activations import Activation
from edgeact.qparams import QuantParams


class PWLError(EdgeActError, ValueError):
    """An invalid piecewise-linear definition or fit request (unsorted knots, NaN values, K < 1, …)."""


# ----------------------------------------------------------------------------------------------------
# The PWL object
# ----------------------------------------------------------------------------------------------------

def _float_tuple(values, what: str) -> tuple[float, ...]:
    try:
        arr = np.asarray(values, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError) as exc:
        raise PWLError(f"PWL {what} must be a sequence of numbers: {exc}") from exc
    if not np.all(np.isfinite(arr)):
        raise PWLError(f"PWL {what} contain NaN or Inf ({arr.tolist()}); give finite numbers")
    return tuple(float(v) for v in arr)


@dataclass(frozen=True)
class PiecewiseLinear:
    """Continuous PWL: `values[i]` at `breakpoints[i]`, linear in between, and straight lines of
    `left_slope` / `right_slope` beyond the first / last breakpoint.

    Immutable and hashable; `name` is what its bound activation (and so its int8 table) is called.
    """

    breakpoints: tuple[float, ...]
    values: tuple[float, ...]
    left_slope: float = 0.0
    right_slope: float = 0.0
    name: str = "pwl"

    def __post_init__(self) -> None:
        bp = _float_tuple(self.breakpoints, "breakpoints")
        vals = _float_tuple(self.values, "values")
        if not bp:
            raise PWLError("a PWL needs at least one breakpoint (the point its two end lines meet)")
        if len(bp) != len(vals):
            raise PWLError(f"{len(bp)} breakpoints but {len(vals)} values: give one value per breakpoint")
        if np.any(np.diff(bp) <= 0):
            raise PWLError(f"PWL breakpoints must be strictly increasing, got {list(bp)}: sort them and "
                           "drop duplicates")
        slopes = _float_tuple((self.left_slope, self.right_slope), "end slopes")
        object.__setattr__(self, "breakpoints", bp)
        object.__setattr__(self, "values", vals)
        object.__setattr__(self, "left_slope", slopes[0])
        object.__setattr__(self, "right_slope", slopes[1])

    # ---- shape ------------------------------------------------------------------------------------
    @property
    def segments(self) -> int:
        """Number of segments between the first and the last breakpoint."""
        return len(self.breakpoints) - 1

    @property
    def slopes(self) -> np.ndarray:
        """Slope of every piece, left line first and right line last (segments + 2 of them)."""
        bp, v = np.asarray(self.breakpoints), np.asarray(self.values)
        inner = np.diff(v) / np.diff(bp)
        return np.concatenate([[self.left_slope], inner, [self.right_slope]])

    def _pieces(self):
        """Per piece (index = number of breakpoints <= x): anchor x, anchor value, slope."""
        bp = np.asarray(self.breakpoints)
        anchors = np.concatenate([bp[:1], bp])
        anchor_values = np.concatenate([self.values[:1], self.values])
        return bp, anchors, anchor_values, self.slopes

    # ---- evaluation ----------------------------------------------------------------------------------
    def numpy(self, x) -> np.ndarray:
        """float64 evaluation: value at the piece's anchor + slope · (x − anchor); NaN stays NaN."""
        x = np.asarray(x, dtype=np.float64)
        bp, anchors, anchor_values, slopes = self._pieces()
        idx = np.searchsorted(bp, x, side="right")
        return anchor_values[idx] + slopes[idx] * (x - anchors[idx])

    __call__ = numpy

    def torch(self, x: torch.Tensor) -> torch.Tensor:
        """The same formula in torch (x's dtype and device): autograd gives the piece's slope."""
        bp, anchors, anchor_values, slopes = self._pieces()
        kw = {"dtype": x.dtype if x.is_floating_point() else torch.float32, "device": x.device}
        xf = x.to(kw["dtype"])
        idx = torch.searchsorted(torch.as_tensor(bp, **kw), xf.contiguous(), right=True)
        return (torch.as_tensor(anchor_values, **kw)[idx]
                + torch.as_tensor(slopes, **kw)[idx] * (xf - torch.as_tensor(anchors, **kw)[idx]))

    def derivative(self, x) -> np.ndarray:
        """Slope of the piece x lies in (the right piece at a breakpoint)."""
        bp = np.asarray(self.breakpoints)
        return self.slopes[np.searchsorted(bp, np.asarray(x, dtype=np.float64), side="right")]

    # ---- integration with tables and modules ---------------------------------------------------------
    def bind(self, **params) -> BoundActivation:
        """The bound activation an int8 table is built from (`int8_table(pwl, in_qp, out_qp)`)."""
        if params:
            raise PWLError(f"a PWL has no parameters, got {sorted(params)}; fit a new PWL instead")
        return BoundActivation(self.name, _PWLNumpy(self), {}, None)

    def to_module(self) -> "PiecewiseLinearActivation":
        """A torch module (an `edgeact.nn.Activation`), so `QuantAct(pwl)` works."""
        return PiecewiseLinearActivation(self)

    def renamed(self, name: str) -> "PiecewiseLinear":
        return PiecewiseLinear(self.breakpoints, self.values, self.left_slope, self.right_slope, name)

    # ---- exact PWL activations ----------------------------------------------------------------------
    @classmethod
    def exact(cls, name: str, **params) -> "PiecewiseLinear":
        """The registry activation `name` as an exact PWL (relu, relu6, leaky_relu, prelu with one
        slope, hard_sigmoid, hard_tanh, identity); UnsupportedError for a function that is not PWL."""
        definition = get(name)
        p = definition.params(**params)
        key = definition.name
        label = "pwl(" + ",".join([key] + [f"{k}={np.asarray(v).reshape(-1)[0]:g}" for k, v in params.items()]) + ")"
        if key == "identity":
            return cls((0.0,), (0.0,), 1.0, 1.0, label)
        if key == "relu":
            return cls((0.0,), (0.0,), 0.0, 1.0, label)
        if key == "relu6":
            return cls((0.0, 6.0), (0.0, 6.0), 0.0, 0.0, label)
        if key in ("leaky_relu", "prelu"):
            slope = p["negative_slope" if key == "leaky_relu" else "weight"]
            if np.size(slope) != 1:
                raise UnsupportedError(f"{key} with one slope per channel is one PWL per channel; "
                                       "build them with PiecewiseLinear.exact(name, weight=w) for each w")
            return cls((0.0,), (0.0,), float(np.asarray(slope).reshape(-1)[0]), 1.0, label)
        if key == "hard_tanh":
            lo, hi = float(p["min_val"]), float(p["max_val"])
            if not lo < hi:
                raise PWLError(f"hard_tanh needs min_val < max_val, got {lo}, {hi}")
            return cls((lo, hi), (lo, hi), 0.0, 0.0, label)
        if key == "hard_sigmoid":
            alpha, beta = float(p["alpha"]), float(p["beta"])
            if alpha == 0.0:
                return cls((0.0,), (min(max(beta, 0.0), 1.0),), 0.0, 0.0, label)
            x0, x1 = -beta / alpha, (1.0 - beta) / alpha  # where αx+β reaches 0 and 1
            if alpha > 0:
                return cls((x0, x1), (0.0, 1.0), 0.0, 0.0, label)
            return cls((x1, x0), (1.0, 0.0), 0.0, 0.0, label)
        raise UnsupportedError(f"{key} is not piecewise linear, so it has no exact PWL form; "
                               f"use fit_pwl({key!r}, segments=K) for a minimax PWL stand-in")


@dataclass(frozen=True)
class _PWLNumpy:
    """Hashable float64 evaluator with the `fn(x, **params)` signature a BoundActivation expects."""

    pwl: PiecewiseLinear

    def __call__(self, x, **_params) -> np.ndarray:
        return self.pwl.numpy(x)


class PiecewiseLinearActivation(Activation):
    """A PWL as an `edgeact.nn` activation: torch forward, `bound()` for the int8 table."""

    activation_name = "pwl"

    def __init__(self, pwl: "PiecewiseLinear | PWLFit"):
        super().__init__()
        self.pwl = pwl.pwl if isinstance(pwl, PWLFit) else pwl

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pwl.torch(x)

    def bound(self) -> BoundActivation:
        return self.pwl.bind()

    def extra_repr(self) -> str:
        return f"{self.pwl.name}, {len(self.pwl.breakpoints)} breakpoints"


# ----------------------------------------------------------------------------------------------------
# Minimax fitting
# ----------------------------------------------------------------------------------------------------
#
# For fixed breakpoints t_0 < … < t_K the values v that minimise max |f − L| are a linear program
# (the Chebyshev fit: L is linear in v), solved on a grid that rides with the segments; the final
# values are refined by adding the true error maxima as constraints (cutting planes / exchange), so
# the reported error is the continuum one. The breakpoints are optimised by sequential linear
# programming: the error is linearised in (v, t), an LP inside a trust region proposes a step, and the
# step is kept only if the max error on the grid goes down. Starts: the equidistribution of |f''|^½
# with a breakpoint on every kink of f (the asymptotically optimal density), plus balanced segment
# errors at small K; uniform breakpoints with minimax values stay a candidate, so a fit never loses
# to uniform. Everything is deterministic (no random restarts).

_GRID = 13  # LP points per segment (both ends included) while the breakpoints move
_GRID_FINAL = 33  # LP points per segment for the final values at the chosen breakpoints
_DENSE = 129  # points per segment when measuring the true error


@dataclass(frozen=True)
class Int8FitReport:
    """Errors of a fit after int8 output quantization, on the values of the 256 input codes.

    LSB errors are max |table code − code of the exact function| (ideal semantics); `value_error` is
    max |dequantized table − f(x)|, which for a 0-LSB fit equals the exact function's own table error.
    """

    in_qparams: QuantParams
    out_qparams: QuantParams
    lsb_error: int
    value_error: float
    mismatched_codes: int
    float_fit_lsb_error: int  # the plain (value-minimax) fit with the same K, for comparison
    uniform_lsb_error: int  # uniform breakpoints, values chosen for int8
    uniform_interp_lsb_error: int  # uniform breakpoints, values f(t_i)
    exact_value_error: float  # the exact function's own table: the floor for value_error


@dataclass(frozen=True)
class PWLFit:
    """A fitted PWL with its maximum absolute error on `x_range` and the uniform baselines."""

    pwl: PiecewiseLinear
    function: str
    segments: int
    x_range: tuple[float, float]
    max_error: float  # max |f − pwl| over x_range (continuum, refined to the maximiser)
    argmax: float  # where it is attained
    uniform_error: float  # uniform breakpoints with their own minimax values
    uniform_interp_error: float  # uniform breakpoints, values f(t_i) (interpolation)
    tails: str  # 'asymptotic' or 'segments': what the PWL does outside x_range
    int8: Int8FitReport | None = None

    def __call__(self, x) -> np.ndarray:
        return self.pwl.numpy(x)

    def torch(self, x: torch.Tensor) -> torch.Tensor:
        return self.pwl.torch(x)

    def bind(self, **params) -> BoundActivation:
        return self.pwl.bind(**params)

    def to_module(self) -> PiecewiseLinearActivation:
        return self.pwl.to_module()

    @property
    def breakpoints(self) -> tuple[float, ...]:
        return self.pwl.breakpoints


@dataclass
class _Target:
    """What the LP must match. Float mode: f on a grid that moves with the segments (lo = hi = f,
    weight 1). Int8 mode: fixed input codes, each with the interval of values that round to the
    exact function's code (weight = output scale, so the LP objective is in LSB)."""

    f: Callable[[np.ndarray], np.ndarray]
    codes_x: np.ndarray | None = None
    lo: np.ndarray | None = None
    hi: np.ndarray | None = None
    weight: float = 1.0
    extra_x: np.ndarray | None = None  # exchange points (float mode)
    grid: int = _GRID  # points per segment (float mode)

    @property
    def error_bounds(self) -> tuple[float | None, None]:
        # int8: a margin of more than half a step inside every rounding interval means nothing (and
        # a fully saturated function would make the LP unbounded).
        return (-0.5, None) if np.any(self.lo != self.hi) else (None, None)

    def points(self, t: np.ndarray):
        """(segment index, position μ in the segment, lo, hi) of every constraint point."""
        K = len(t) - 1
        if self.codes_x is not None:
            seg = np.clip(np.searchsorted(t, self.codes_x, side="right") - 1, 0, K - 1)
            mu = (self.codes_x - t[seg]) / (t[seg + 1] - t[seg])
            return seg, mu, self.lo, self.hi
        u = np.linspace(0.0, 1.0, self.grid)
        seg, mu = np.repeat(np.arange(K), self.grid), np.tile(u, K)
        if self.extra_x is not None and self.extra_x.size:
            xs = np.clip(self.extra_x, t[0], t[-1])
            eseg = np.clip(np.searchsorted(t, xs, side="right") - 1, 0, K - 1)
            seg = np.concatenate([seg, eseg])
            mu = np.concatenate([mu, (xs - t[eseg]) / (t[eseg + 1] - t[eseg])])
        x = t[seg] + mu * (t[seg + 1] - t[seg])
        y = self.f(x)
        return seg, mu, y, y


def _minimax_lp(seg, mu, level, lo, hi, weight, error_bounds, K, grad=None, radius=None):
    """Solve  min e  s.t.  lo − w·e ≤ level + B·dv + G·dt ≤ hi + w·e  (rows only where a bound is
    finite), B the hat-function rows (1−μ, μ) and G the breakpoint gradients (`grad` = (rows, cols,
    vals) over the K−1 interior breakpoints, each move bounded by ±radius). Returns (dv, dt, e)."""
    m = seg.size
    r = np.arange(m)
    rows = [r, r]
    cols = [seg, seg + 1]
    vals = [1.0 - mu, mu]
    n_t = 0
    if grad is not None:
        g_rows, g_cols, g_vals = grad
        n_t = K - 1
        rows.append(g_rows)
        cols.append(K + 1 + g_cols)
        vals.append(g_vals)
    n = K + 1 + n_t + 1
    rows.append(r)
    cols.append(np.full(m, n - 1))
    vals.append(np.zeros(m))  # placeholder for the error column, filled per side below
    rows, cols, vals = np.concatenate(rows), np.concatenate(cols), np.concatenate(vals)
    err_col = cols == n - 1
    up, down = np.isfinite(hi), np.isfinite(lo)
    # upper rows: +A z − w e ≤ hi − level ; lower rows: −A z − w e ≤ level − lo
    keep_up, keep_dn = up[rows], down[rows]
    new_up = np.cumsum(up) - 1
    new_dn = np.cumsum(down) - 1 + int(up.sum())
    all_rows = np.concatenate([new_up[rows[keep_up]], new_dn[rows[keep_dn]]])
    all_cols = np.concatenate([cols[keep_up], cols[keep_dn]])
    v_up = np.where(err_col, -weight, vals)[keep_up]
    v_dn = np.where(err_col, -weight, -vals)[keep_dn]
    A = sp.csr_matrix((np.concatenate([v_up, v_dn]), (all_rows, all_cols)), shape=(int(up.sum() + down.sum()), n))
    b = np.concatenate([(hi - level)[up], (level - lo)[down]])
    bounds = np.full((n, 2), np.nan)
    bounds[:, 0], bounds[:, 1] = -np.inf, np.inf
    if n_t:
        bounds[K + 1:K + 1 + n_t, 0], bounds[K + 1:K + 1 + n_t, 1] = -radius, radius
    bounds[-1, 0] = -np.inf if error_bounds[0] is None else error_bounds[0]
    c = np.zeros(n)
    c[-1] = 1.0
    res = linprog(c, A_ub=A, b_ub=b, bounds=bounds, method="highs")
    if res.status != 0:
        raise PWLError(f"the minimax linear program failed ({res.message}); the function may be NaN or "
                       "infinite on the range — check it and the range")
    z = res.x
    return z[:K + 1], z[K + 1:K + 1 + n_t], float(z[-1])


def _best_values(target: _Target, t: np.ndarray) -> tuple[np.ndarray, float]:
    """Minimax values at fixed breakpoints t (on the target's points) and the LP's error level."""
    K = len(t) - 1
    seg, mu, lo, hi = target.points(t)
    v, _, e = _minimax_lp(seg, mu, np.zeros(seg.size), lo, hi, target.weight, target.error_bounds, K)
    return v, e


def _knot_gradients(target: _Target, t, v, seg, mu, riding: bool):
    """∂(L − f)/∂t_i at every constraint point, for the interior breakpoints, as (rows, cols, vals).

    `riding` (float mode): the points ride with their segment (x = t_s + μ·h_s) as the objective's
    grid does, so L at a point does not depend on t and f moves under it: −f'(x)·∂x/∂t. Otherwise
    (int8 codes, and a second start where f' jumps) the points stay put and the line through them
    moves: ∂L/∂t_s = −slope·(1−μ), ∂L/∂t_{s+1} = −slope·μ.
    """
    K = len(t) - 1
    if riding:
        x = t[seg] + mu * (t[seg + 1] - t[seg])
        eta = 1e-6 * max(1.0, float(t[-1] - t[0]))
        c = -(target.f(x + eta) - target.f(x - eta)) / (2 * eta)
    else:
        c = -(v[seg + 1] - v[seg]) / (t[seg + 1] - t[seg])
    r = np.arange(seg.size)
    left_ok, right_ok = seg >= 1, seg + 1 <= K - 1
    return (np.concatenate([r[left_ok], r[right_ok]]), np.concatenate([seg[left_ok] - 1, seg[right_ok]]),
            np.concatenate([(c * (1 - mu))[left_ok], (c * mu)[right_ok]]))


def _knot_step(target: _Target, t: np.ndarray, v: np.ndarray, radius: np.ndarray, riding: bool):
    """One SLP step: breakpoint moves (within ±radius) and value changes that minimise the linearised
    max error; returns the proposed breakpoints and values and the predicted error level."""
    K = len(t) - 1
    seg, mu, lo, hi = target.points(t)
    level = v[seg] * (1 - mu) + v[seg + 1] * mu
    grad = _knot_gradients(target, t, v, seg, mu, riding)
    dv, dt, e = _minimax_lp(seg, mu, level, lo, hi, target.weight, target.error_bounds, K, grad, radius)
    return np.r_[t[0], t[1:-1] + dt, t[-1]], v + dv, e


def _level_error(target: _Target, t: np.ndarray, v: np.ndarray) -> float:
    """The LP's objective for given (t, v): max violation of the target's bounds, in weight units."""
    seg, mu, lo, hi = target.points(t)
    L = v[seg] * (1 - mu) + v[seg + 1] * mu
    with np.errstate(invalid="ignore"):
        return float(np.max(np.maximum(L - hi, lo - L)) / target.weight)


def _optimize_knots(target: _Target, t: np.ndarray, max_iter: int, riding: bool = True):
    """Trust-region SLP over breakpoints and values jointly; monotone in the discretised minimax error.
    Returns (breakpoints, values, error level)."""
    v, err = _best_values(target, t)
    K = len(t) - 1
    if K < 2:
        return t, v, err
    riding = riding and target.codes_x is None
    rho = 0.25  # trust radius as a fraction of the neighbouring segment lengths (< 0.5 keeps the order)
    for _ in range(max_iter):
        h = np.diff(t)
        radius = rho * np.minimum(h[:-1], h[1:])
        t_new, v_new, predicted = _knot_step(target, t, v, radius, riding)
        err_new = _level_error(target, t_new, v_new) if np.all(np.diff(t_new) > 0) else np.inf
        gain, promised = err - err_new, err - predicted
        if gain > 1e-12 * max(abs(err), 1e-300):
            t, v, err = t_new, v_new, err_new
            if gain > 0.5 * promised:
                rho = min(0.45, rho * 2.0)
        else:
            rho *= 0.25
        if rho < 1e-5:
            break
    v, err = _best_values(target, t)
    return t, v, err


def _kinks(f, a: float, b: float, n: int = 1 << 15) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Jumps of f' inside (a, b) (hard_swish at ±3, selu at 0), and f'' on a fine grid without them.

    A kink shows as an isolated second difference of size |jump|·h, while a smooth f gives f''·h²:
    a local maximum of |Δ²y| much larger than its neighbours 3 points away is a kink, located where
    the tangent lines from either side meet. Returns (kink x, |jump|, grid x, |f''| on the grid).
    """
    x = np.linspace(a, b, n + 1)
    y = f(x)
    h = x[1] - x[0]
    d2 = np.abs(y[2:] - 2 * y[1:-1] + y[:-2])  # at x[1:-1]
    scale = max(np.abs(np.diff(y)).max() / h, 1e-300)  # max |f'|
    i = np.arange(3, d2.size - 3)
    nb = np.maximum(d2[i - 3], d2[i + 3])
    peak = (d2[i] >= d2[i - 1]) & (d2[i] > d2[i + 1]) & (d2[i] > 20 * nb) & (d2[i] > 1e-7 * scale * h)
    kink_x, jumps = [], []
    for k in i[peak] + 1:  # index into x
        if k - 3 < 0 or k + 3 > n:
            continue
        sl = (y[k - 2] - y[k - 3]) / h
        sr = (y[k + 3] - y[k + 2]) / h
        if abs(sr - sl) < 1e-12:
            continue
        # Tangent lines through x[k-3] (left) and x[k+3] (right) meet at the kink.
        xk = (y[k + 3] - y[k - 3] + sl * x[k - 3] - sr * x[k + 3]) / (sl - sr)
        if x[k - 3] < xk < x[k + 3] and a < xk < b:
            kink_x.append(xk)
            jumps.append(abs(sr - sl))
    curv = d2 / h**2
    for xk in kink_x:  # take the spike out of the curvature density
        near = np.abs(x[1:-1] - xk) <= 3 * h
        far = np.abs(x[1:-1] - xk) <= 6 * h
        curv[near] = np.max(curv[far & ~near]) if np.any(far & ~near) else 0.0
    curv = np.concatenate([curv[:1], curv, curv[-1:]])
    return np.asarray(kink_x), np.asarray(jumps), x, curv


def _equidistributed_knots(f, a: float, b: float, K: int, pin_kinks: bool = True) -> tuple[np.ndarray, bool]:
    """Breakpoints on f's kinks (unless not `pin_kinks`), the rest with equal shares of ∫|f''|^½ (a
    best line on a segment of length h misses by ≈ h²|f''|/16, so this density equalises the segment
    errors); and whether f has kinks."""
    kink_x, jumps, x, curv = _kinks(f, a, b)
    kinked = bool(kink_x.size)
    if not pin_kinks:
        kink_x = kink_x[:0]
    if kink_x.size > K - 1:  # not enough breakpoints for every kink: keep the largest jumps
        kink_x = np.sort(kink_x[np.argsort(-jumps)[:K - 1]])
    rho = np.sqrt(curv)
    rho = rho + 0.02 * rho.mean() + 1e-300  # a floor: flat stretches still get some breakpoints
    cum = np.concatenate([[0.0], np.cumsum(0.5 * (rho[1:] + rho[:-1]) * np.diff(x))])
    edges = np.concatenate([[a], kink_x, [b]])
    mass = np.diff(np.interp(edges, x, cum))
    pieces = edges.size - 1
    # Segments per piece: at least one each, the rest by largest remainder of the ∫ρ share.
    share = mass / mass.sum() * K
    count = np.maximum(1, np.floor(share).astype(int))
    while count.sum() > K:  # (pieces ≤ K, so a piece with more than one segment exists)
        count[np.argmax(np.where(count > 1, count - share, -np.inf))] -= 1
    while count.sum() < K:
        count[np.argmax(share - count)] += 1
    t = [a]
    for j in range(pieces):
        c0, c1 = np.interp([edges[j], edges[j + 1]], x, cum)
        inner = np.interp(np.linspace(c0, c1, count[j] + 1)[1:-1], cum, x)
        t.extend(inner.tolist())
        t.append(edges[j + 1])
    t = np.asarray(t)
    t[0], t[-1] = a, b
    return t, kinked


def _segment_line_errors(f, t: np.ndarray, points: int = 48) -> np.ndarray:
    """Per segment, the error of its best (Chebyshev) straight line, ignoring continuity: half the
    narrowest vertical strip around the samples, over slopes found by golden-section search."""
    u = np.linspace(0.0, 1.0, points)
    x = t[:-1, None] + u * np.diff(t)[:, None]
    y = f(x.ravel()).reshape(x.shape)
    chord = np.diff(y, axis=1) / np.diff(x, axis=1)
    lo, hi = chord.min(axis=1), chord.max(axis=1)  # the best slope is one of the chord slopes' range

    def width(m):
        r = y - m[:, None] * x
        return r.max(axis=1) - r.min(axis=1)

    g = (math.sqrt(5) - 1) / 2
    c, d = hi - g * (hi - lo), lo + g * (hi - lo)
    wc, wd = width(c), width(d)
    for _ in range(50):
        left = wc < wd
        hi, lo = np.where(left, d, hi), np.where(left, lo, c)
        c, d = hi - g * (hi - lo), lo + g * (hi - lo)
        wc, wd = width(c), width(d)
    return 0.5 * np.minimum(wc, wd)


def _balanced_knots(f, t: np.ndarray, iterations: int = 60) -> np.ndarray:
    """Move breakpoints so that every segment's best-line error is the same (de Boor's balancing
    with the model error ≈ c·h²): helps at small K, where |f''|^½ equidistribution is off."""
    a, b = t[0], t[-1]
    best_err, best_t = np.inf, t
    for _ in range(iterations):
        d = _segment_line_errors(f, t)
        if d.max() < best_err:
            best_err, best_t = d.max(), t.copy()
        density = np.sqrt(np.maximum(d, 1e-300))  # per segment: √d/h, integrated over h
        cum = np.concatenate([[0.0], np.cumsum(density)])
        t = 0.5 * t + 0.5 * np.interp(np.linspace(0.0, cum[-1], t.size), cum, t)
        t[0], t[-1] = a, b
    return best_t


def _error_maxima(f, t: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per segment: the x of the largest |f − L| and that error. Every local maximum of a dense sample
    is refined by golden-section search (a segment can have two nearly equal peaks)."""
    K = len(t) - 1
    u = np.linspace(0.0, 1.0, _DENSE)
    x = t[:-1, None] + u[None, :] * np.diff(t)[:, None]
    L = v[:-1, None] * (1 - u) + v[1:, None] * u
    e = np.abs(f(x.ravel()).reshape(x.shape) - L)
    padded = np.pad(e, ((0, 0), (1, 1)), constant_values=-np.inf)
    peak = (e >= padded[:, :-2]) & (e >= padded[:, 2:])
    seg, j = np.nonzero(peak)
    lo = x[seg, np.maximum(j - 1, 0)]
    hi = x[seg, np.minimum(j + 1, _DENSE - 1)]
    seg_lo, seg_hi, vl, vr = t[seg], t[seg + 1], v[seg], v[seg + 1]

    def err(xx):
        mu = (xx - seg_lo) / (seg_hi - seg_lo)
        return np.abs(f(xx) - (vl * (1 - mu) + vr * mu))

    g = (math.sqrt(5) - 1) / 2
    c, d = hi - g * (hi - lo), lo + g * (hi - lo)
    ec, ed = err(c), err(d)
    for _ in range(40):
        left = ec > ed
        hi = np.where(left, d, hi)
        lo = np.where(left, lo, c)
        c, d = hi - g * (hi - lo), lo + g * (hi - lo)
        ec, ed = err(c), err(d)
    cand_x = np.concatenate([x[seg, j], np.where(ec > ed, c, d)])
    cand_e = np.concatenate([e[seg, j], np.maximum(ec, ed)])
    cand_s = np.concatenate([seg, seg])
    best_x, best_e = np.empty(K), np.full(K, -np.inf)
    order = np.argsort(cand_e)  # later (larger) writes win
    best_x[cand_s[order]] = cand_x[order]
    best_e[cand_s[order]] = cand_e[order]
    return best_x, best_e


def _minimax_values(f, t: np.ndarray) -> tuple[np.ndarray, float, float]:
    """Minimax values at fixed breakpoints: grid LP, then exchange in the true error maxima (cutting
    planes); returns the values with the smallest true max error seen, that error and where it is."""
    target = _Target(f, grid=_GRID_FINAL)
    v, level = _best_values(target, t)
    best = None
    extra = np.empty(0)
    for _ in range(8):
        xs, es = _error_maxima(f, t, v)
        k = int(np.argmax(es))
        if best is None or es[k] < best[1]:
            best = (v, float(es[k]), float(xs[k]))
        if es[k] <= level * (1 + 1e-6) + 1e-15:
            break
        extra = np.concatenate([extra, xs[es > level]])
        target.extra_x = extra
        v, level = _best_values(target, t)
    return best


def _asymptotic_slopes(f, a: float, b: float) -> tuple[float | None, float | None]:
    """Slopes of f far outside [a, b] (None where they are not finite and moderate)."""
    R = 1e4 * max(1.0, b - a)
    with np.errstate(all="ignore"):
        y = f(np.array([a - 2 * R, a - R, b + R, b + 2 * R]))
        sl, sr = (y[1] - y[0]) / R, (y[3] - y[2]) / R
    ok = lambda s: s if (np.isfinite(s) and abs(s) < 1e3) else None  # noqa: E731
    return ok(sl), ok(sr)


def _make_pwl(f, t, v, tails: str, name: str) -> PiecewiseLinear:
    seg = np.diff(v) / np.diff(t)
    left, right = float(seg[0]), float(seg[-1])
    if tails == "asymptotic":
        al, ar = _asymptotic_slopes(f, float(t[0]), float(t[-1]))
        left = left if al is None else float(al)
        right = right if ar is None else float(ar)
    return PiecewiseLinear(tuple(t), tuple(v), left, right, name)


def _resolve(fn, params) -> tuple[str, Callable[[np.ndarray], np.ndarray], tuple[float, float] | None]:
    """(label, float64 callable, registry range of interest) for a name, definition, bound or callable."""
    if isinstance(fn, (str, ActivationDef, BoundActivation, PiecewiseLinear, PWLFit)):
        bound = bind(fn, **params)
        if bound.channels is not None:
            raise UnsupportedError(f"{bound.name} has a parameter per channel; fit one PWL per channel value")
        rng = bound.definition.range_of_interest if bound.definition is not None else None
        return bound.name, lambda x: bound.on_codes(np.asarray(x, dtype=np.float64)), rng
    if callable(fn):
        if params:
            return getattr(fn, "__name__", "fn"), (lambda x: np.asarray(fn(x, **params), dtype=np.float64)), None
        return getattr(fn, "__name__", "fn"), (lambda x: np.asarray(fn(x), dtype=np.float64)), None
    raise PWLError(f"cannot fit a PWL to {fn!r}: give an activation name, a BoundActivation or a "
                   "vectorised float64 function of x")


def fit_pwl(fn, segments: int = 8, x_range: tuple[float, float] | None = None, *,
            int8: tuple[QuantParams, QuantParams] | None = None, tails: str = "asymptotic",
            max_iter: int | None = None, **params) -> PWLFit:
    """Minimax continuous PWL with `segments` segments and fitted breakpoints on `x_range`.

    `fn`: an activation name ('swish', params as keywords), an ActivationDef/BoundActivation, or a
    vectorised float64 function. `x_range` defaults to the registry's range of interest.
    Outside `x_range` the PWL continues with the function's asymptotic slopes (`tails='asymptotic'`,
    e.g. 0 for sigmoid so it stays bounded, 1 for swish's right side; if f has no finite asymptotic
    slope the end segment's slope is used) or with the end segments' slopes (`tails='segments'`).

    `int8=(in_qp, out_qp)`: the error that counts is at the 256 input codes after rounding the output
    with out_qp; the fit covers the codes' span and minimises the LSB error against the exact function's
    table (then keeps values centred in their rounding intervals). `result.int8` reports LSB and value
    errors. Results are cached in-process per (function, K, range, qparams).
    """
    if isinstance(segments, bool) or not isinstance(segments, (int, np.integer)) or segments < 1:
        raise PWLError(f"segments must be an integer ≥ 1, got {segments!r}")
    if tails not in ("asymptotic", "segments"):
        raise PWLError(f"tails must be 'asymptotic' or 'segments', got {tails!r}")
    label, f, default_range = _resolve(fn, params)
    if int8 is not None:
        in_qp, out_qp = _check_int8(int8)
        span = tuple(float(v) for v in in_qp.dequantize(np.array([in_qp.qmin, in_qp.qmax])))
        if x_range is not None and tuple(map(float, x_range)) != span:
            raise PWLError(f"an int8 fit covers every input code, i.e. [{span[0]:g}, {span[1]:g}]; "
                           f"leave x_range out instead of giving {tuple(x_range)}")
        x_range = span
    if x_range is None:
        if default_range is None:
            raise PWLError(f"give x_range=(a, b): {label} has no registry range of interest")
        x_range = default_range
    a, b = (float(x_range[0]), float(x_range[1]))
    if not (math.isfinite(a) and math.isfinite(b) and a < b):
        raise PWLError(f"x_range must be finite with a < b, got {x_range}")
    if max_iter is not None and (isinstance(max_iter, bool) or not isinstance(max_iter, (int, np.integer))
                                 or max_iter < 1):
        raise PWLError(f"max_iter must be an integer ≥ 1 (or None for the default), got {max_iter!r}")
    _check_fittable(f, label, a, b)
    iters = int(max_iter) if max_iter is not None else 40 + 4 * int(segments)
    key = _cache_key(fn, params)
    args = (label, int(segments), a, b, int8, tails, iters)
    if key is None:
        return _fit(f, *args)
    return _fit_cached(key, *args)


def _probe(f, x: np.ndarray, label: str) -> np.ndarray:
    """f on the vector x, which must give one finite float per point."""
    try:
        with np.errstate(all="ignore"):
            y = np.asarray(f(x), dtype=np.float64)
    except (TypeError, ValueError, IndexError, ZeroDivisionError, OverflowError) as exc:
        raise PWLError(f"{label} must be vectorised: called with a NumPy array of {x.size} points it raised "
                       f"{type(exc).__name__} ({str(exc)[:120]}); wrap it with numpy.vectorize(fn) or write it "
                       "with NumPy functions") from None
    if y.shape != x.shape:
        raise PWLError(f"{label} must be vectorised: for {x.size} points it returned shape {y.shape}; return "
                       "one value per point (numpy.vectorize(fn) does)")
    return y


def _check_fittable(f, label: str, a: float, b: float) -> None:
    """f must be finite and continuous on [a, b]: a NaN, an infinity, a jump or a pole between sample
    points would make a meaningless fit (errors of 1e11 reported as a result). Continuity test: on a
    continuous function the largest step between neighbouring samples halves when the grid is halved;
    across a jump it stays, across a pole it grows."""
    coarse, fine = np.linspace(a, b, 2**13 + 1), np.linspace(a, b, 2**14 + 1)
    y_coarse, y_fine = _probe(f, coarse, label), _probe(f, fine, label)
    bad = ~np.isfinite(y_fine)
    if bad.any():
        raise PWLError(f"{label} is NaN or infinite at x = {fine[bad][0]:g} in [{a:g}, {b:g}]; fit on a range "
                       "where it is finite")
    span = float(y_fine.max() - y_fine.min())
    j_coarse, j_fine = float(np.abs(np.diff(y_coarse)).max()), float(np.abs(np.diff(y_fine)).max())
    if j_fine > 0.8 * j_coarse and j_fine > 1e-3 * max(span, 1e-300):
        at = fine[int(np.abs(np.diff(y_fine)).argmax())]
        raise PWLError(f"{label} jumps near x = {at:.6g} (a pole or a discontinuity: its steps between samples do "
                       f"not shrink as they get closer); a continuous PWL cannot follow it — fit on a range that "
                       "excludes that point")


def _cache_key(fn, params):
    try:
        key = (fn, tuple(sorted(params.items())))
        hash(key)
    except TypeError:
        return None
    return key


@functools.lru_cache(maxsize=512)
def _fit_cached(key, label, K, a, b, int8, tails, iters) -> PWLFit:
    fn, params = key
    return _fit(_resolve(fn, dict(params))[1], label, K, a, b, int8, tails, iters)


def _fit(f, label, K, a, b, int8, tails, iters) -> PWLFit:
    uniform = np.linspace(a, b, K + 1)
    v_uni, e_uni, at_uni = _minimax_values(f, uniform)
    v_int = f(uniform)
    e_int = float(_error_maxima(f, uniform, v_int)[1].max())

    candidates = [(e_uni, uniform, v_uni, at_uni)]
    equi, kinked = _equidistributed_knots(f, a, b, K)
    # Starts: |f''|^½ equidistribution with breakpoints on the kinks; at small K also balanced
    # segment errors (the asymptotic density is off there). Where f' jumps: the fixed-point
    # linearisation too, which keeps a breakpoint on a kink (the riding one sees the kink blurred),
    # and at small K starts without breakpoints on the kinks (a segment across a kink can be better).
    # A uniform start never won.
    starts = [(equi, True)]
    if K <= 8:
        starts.append((_balanced_knots(f, equi), True))
    if kinked:
        starts.append((equi, False))
        if K <= 8:
            free = _equidistributed_knots(f, a, b, K, pin_kinks=False)[0]
            starts += [(free, True), (_balanced_knots(f, free), True)]
    for start, riding in starts:
        t, _, _ = _optimize_knots(_Target(f), start, iters, riding)
        v, e, at = _minimax_values(f, t)
        candidates.append((e, t, v, at))
    e, t, v, at = min(candidates, key=lambda c: c[0])
    name = f"pwl({label},{K})"
    if int8 is None:
        pwl = _make_pwl(f, t, v, tails, name)
        return PWLFit(pwl, label, K, (a, b), e, at, e_uni, e_int, tails)
    return _fit_int8(f, label, K, a, b, int8, tails, iters, float_fit=(t, v), uniform=(uniform, v_int),
                     float_errors=(e_uni, e_int))


# ---- int8 ------------------------------------------------------------------------------------------

def _check_int8(int8) -> tuple[QuantParams, QuantParams]:
    try:
        in_qp, out_qp = int8
    except (TypeError, ValueError):
        raise QuantizationError("int8 must be a pair (input QuantParams, output QuantParams)") from None
    for role, qp in (("input", in_qp), ("output", out_qp)):
        if not isinstance(qp, QuantParams):
            raise QuantizationError(f"int8 {role} parameters must be a QuantParams, got {type(qp).__name__}")
        if qp.per_channel or qp.dtype not in ("int8", "uint8"):
            raise QuantizationError(f"int8 {role} parameters must be per-tensor int8/uint8, got {qp}")
    return in_qp, out_qp


def _codes_of(values: np.ndarray, out_qp: QuantParams) -> np.ndarray:
    """Ideal output codes (round half to even, clamp): what `int8_table(..., 'ideal')` computes."""
    return out_qp.quantize(values)


def _int8_target(f, in_qp: QuantParams, out_qp: QuantParams) -> tuple[_Target, np.ndarray, np.ndarray]:
    x = in_qp.dequantize(in_qp.codes())
    q = _codes_of(f(x), out_qp)
    s, z = out_qp.scale, out_qp.zero_point
    y = f(x)
    # Values in [lo, hi] round to the exact code. At a clamped code any value beyond the clamp
    # would do; the interval stops at f(x) so that the PWL stays a stand-in for f there too.
    lo = (q - z - 0.5) * s
    hi = (q - z + 0.5) * s
    lo = np.where(q == out_qp.qmin, np.minimum(lo, y), lo)
    hi = np.where(q == out_qp.qmax, np.maximum(hi, y), hi)
    return _Target(f, codes_x=x, lo=lo, hi=hi, weight=s), x, q


def _fit_int8(f, label, K, a, b, int8, tails, iters, float_fit, uniform, float_errors) -> PWLFit:
    in_qp, out_qp = int8
    target, x, q_exact = _int8_target(f, in_qp, out_qp)
    fx = f(x)

    def score(t, v):
        L = PiecewiseLinear(tuple(t), tuple(v)).numpy(x)
        q = _codes_of(L, out_qp)
        diff = np.abs(q - q_exact)
        return int(diff.max()), float(np.abs(out_qp.dequantize(q) - fx).max()), int((diff > 0).sum())

    t_f, v_f = float_fit
    t_u, v_ui = uniform
    v_u8, _ = _best_values(target, t_u)
    # Candidates, scored by (LSB error, value error): the plain fit; the LP that keeps every code in
    # its rounding interval with the widest margin (0 LSB when feasible); and the minimax fit on the
    # codes alone, which misses only codes whose exact value sits near a rounding tie (costing
    # ~half a step, no more than the exact table's own error).
    on_codes = _Target(f, codes_x=x, lo=fx, hi=fx, weight=out_qp.scale)
    candidates = [(t_f, v_f)]
    for tgt in (target, on_codes):
        for start in (t_f, _equidistributed_knots(f, a, b, K)[0]):
            t, v, _ = _optimize_knots(tgt, start, iters)
            candidates.append((t, v))
    scores = [score(*c) for c in candidates]
    best = min(range(len(candidates)), key=lambda i: (scores[i][0], round(scores[i][1], 12), scores[i][2]))
    (t, v), (lsb, value_err, mismatched) = candidates[best], scores[best]
    at, e = _error_maxima(f, t, v)
    k = int(np.argmax(e))
    info = Int8FitReport(in_qp, out_qp, lsb, value_err, mismatched, score(t_f, v_f)[0], score(t_u, v_u8)[0],
                        score(t_u, v_ui)[0], float(np.abs(out_qp.dequantize(q_exact) - fx).max()))
    pwl = _make_pwl(f, t, v, tails, f"pwl({label},{K},int8)")
    return PWLFit(pwl, label, K, (a, b), float(e[k]), float(at[k]), float_errors[0], float_errors[1], tails, info)


# ----------------------------------------------------------------------------------------------------
# The demo / README table
# ----------------------------------------------------------------------------------------------------

DEMO_FUNCTIONS = ("swish", "mish", "gelu", "sigmoid", "tanh", "selu", "elu")
HARD_FIT_FUNCTIONS = ("hard_swish", "hard_mish")  # piecewise quadratic: PWL fits of them too
DEMO_SEGMENTS = (4, 8, 16, 32)
HARD_PAIRS = (("hard_sigmoid", "sigmoid"), ("hard_swish", "swish"), ("hard_mish", "mish"), ("hard_tanh", "tanh"))


def max_abs_difference(f, g, x_range: tuple[float, float] = (-8.0, 8.0), points: int = 200_001):
    """max |f − g| over x_range and the x where it is attained (grid, then a bounded local search).
    Returns (error, x, symmetric) — symmetric when the same error is attained at −x too."""
    from scipy.optimize import minimize_scalar

    a, b = map(float, x_range)
    x = np.linspace(a, b, points)
    d = np.abs(f(x) - g(x))
    i = int(np.argmax(d))
    best_x, best = float(x[i]), float(d[i])
    lo, hi = x[max(i - 1, 0)], x[min(i + 1, points - 1)]
    if hi > lo:
        res = minimize_scalar(lambda z: -abs(float(f(np.array([z]))[0] - g(np.array([z]))[0])),
                              bounds=(lo, hi), method="bounded", options={"xatol": 1e-12})
        if -res.fun > best:
            best_x, best = float(res.x), float(-res.fun)
    mirror = -best_x
    symmetric = bool(a <= mirror <= b and abs(best_x) > 1e-9
                     and abs(abs(float(f(np.array([mirror]))[0] - g(np.array([mirror]))[0])) - best) <= 1e-9 * best)
    return best, best_x, symmetric


def demo_table(functions: Sequence[str] = DEMO_FUNCTIONS + HARD_FIT_FUNCTIONS,
               segments: Sequence[int] = DEMO_SEGMENTS) -> list[dict[str, Any]]:
    """Rows for the demo and the README (render with `render_markdown`).

    section 'fit': one row per (function, K) on the function's range of interest (the registry's;
    [-8, 8] unless it says otherwise — tanh: [-4, 4]) with keys function, x_range, segments,
    minimax_error (fitted breakpoints), uniform_error (uniform breakpoints, minimax values),
    uniform_interp_error (uniform breakpoints, values f(t_i)), gain (uniform_error / minimax_error).
    section 'hard_vs_smooth': how far each hard variant is from the smooth function it replaces on
    [-8, 8]: keys hard, smooth, x_range, max_abs_error, at_x, symmetric (attained at ±at_x).
    """
    rows: list[dict[str, Any]] = []
    for name in functions:
        for K in segments:
            fit = fit_pwl(name, K)
            rows.append({"section": "fit", "function": fit.function, "x_range": fit.x_range, "segments": K,
                         "minimax_error": fit.max_error, "argmax": fit.argmax,
                         "uniform_error": fit.uniform_error, "uniform_interp_error": fit.uniform_interp_error,
                         "gain": fit.uniform_error / fit.max_error if fit.max_error > 0 else math.inf})
    for hard, smooth in HARD_PAIRS:
        err, at, sym = max_abs_difference(get(hard).numpy, get(smooth).numpy, (-8.0, 8.0))
        rows.append({"section": "hard_vs_smooth", "hard": hard, "smooth": smooth, "x_range": (-8.0, 8.0),
                     "max_abs_error": err, "at_x": at, "symmetric": sym})
    return rows


def _range_text(r) -> str:
    return f"[{r[0]:g}, {r[1]:g}]"


def render_markdown(rows: list[dict[str, Any]]) -> str:
    """Markdown for `demo_table()` rows: the PWL fit table (one column per K) and the hard-variant gaps."""
    out: list[str] = []
    fits = [r for r in rows if r["section"] == "fit"]
    if fits:
        ks = sorted({r["segments"] for r in fits})
        out.append("Max |f − PWL| on each function's range of interest, K segments: minimax fit "
                   "(breakpoints placed by the fit) vs uniform breakpoints (with their own minimax values, and "
                   "interpolating f). Outside the range the PWL follows f's asymptotic slopes.")
        out.append("")
        out.append("| function | range | breakpoints | " + " | ".join(f"K={k}" for k in ks) + " |")
        out.append("|---|---|---|" + "---:|" * len(ks))
        by = {(r["function"], r["segments"]): r for r in fits}
        for name in dict.fromkeys(r["function"] for r in fits):
            rng = _range_text(next(r["x_range"] for r in fits if r["function"] == name))
            for label, key in (("**minimax**", "minimax_error"), ("uniform, minimax values", "uniform_error"),
                               ("uniform, interpolated", "uniform_interp_error")):
                cells = [f"{by[(name, k)][key]:.2e}" if (name, k) in by else "" for k in ks]
                if key == "minimax_error":
                    cells = [f"**{c}**" if c else c for c in cells]
                out.append(f"| {name if key == 'minimax_error' else ''} | {rng if key == 'minimax_error' else ''} "
                           f"| {label} | " + " | ".join(cells) + " |")
    hard = [r for r in rows if r["section"] == "hard_vs_smooth"]
    if hard:
        if out:
            out.append("")
        out.append("How far each hard variant is from the smooth function it stands in for:")
        out.append("")
        out.append("| hard variant | stands in for | max abs error | at x | range |")
        out.append("|---|---|---:|---:|---|")
        for r in hard:
            at = f"±{abs(r['at_x']):.3f}" if r["symmetric"] else f"{r['at_x']:.3f}"
            out.append(f"| {r['hard']} | {r['smooth']} | {r['max_abs_error']:.4f} | {at} | {_range_text(r['x_range'])} |")
    return "\n".join(out) + "\n"
