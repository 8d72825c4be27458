"""Fake quantization: quantize → dequantize in float, with a straight-through gradient.

Rounding is half to even (torch.round), as ONNX QuantizeLinear and NumPy do. The gradient passes
where the value fell inside the clamp range and is zero outside (STE); with a learnable scale the
scale gets the LSQ gradient (Esser et al., 2020).
"""
from __future__ import annotations

import math
import weakref
from typing import NamedTuple

import numpy as np
import torch
from torch import nn

from edgeact.dense import dense_elements
from edgeact.errors import QuantizationError
from edgeact.observers import MinMaxObserver, make_observer
from edgeact.qparams import QuantParams


def _shape_for(param: torch.Tensor, x: torch.Tensor, axis: int | None) -> torch.Tensor:
    if axis is None or param.dim() == 0:
        return param
    shape = [1] * x.dim()
    shape[axis] = param.numel()
    return param.reshape(shape)


class _FakeQuantSTE(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, scale, zero_point, qmin, qmax):
        # The same operations in the same order as round(x / s) + z → clamp → (q − z)·s, in place on one
        # buffer: QAT runs this on every tensor at every step, and fresh temporaries cost more than the math.
        q = torch.div(x, scale)
        q.round_().add_(zero_point)
        inside = (q >= qmin).logical_and_(q <= qmax)
        ctx.save_for_backward(inside)
        return q.clamp_(qmin, qmax).sub_(zero_point).mul_(scale)

    @staticmethod
    def backward(ctx, grad):
        (inside,) = ctx.saved_tensors
        return grad * inside, None, None, None, None


class _FakeQuantObserved(torch.autograd.Function):
    """_FakeQuantSTE for a tensor its observer has just found finite: the same float operations in the same
    order, with the straight-through mask held as float 1/0 instead of bool.

    Comparisons into bool tensors and float × bool products are slow elementwise kernels in torch on CPU;
    here the mask is one float kernel — hardtanh_backward keeps its input strictly inside (qmin − ½,
    qmax + ½), i.e. the integer-valued q inside [qmin, qmax] — and the backward is a float product,
    grad · 1.0 or grad · 0.0, the bits grad · True/False gives. (hardtanh_backward's scalar and vector
    code disagree about NaN, hence only for inputs known to be finite.) scale and zero point are
    tensors of x's dtype (0-d per tensor, shaped to broadcast per channel): a Python number would be
    converted to a tensor by every op. `bounds` is (qmin, qmax, zp_is_zero); with zp_is_zero the final − 0
    is skipped (an identity; the + 0 stays, as it turns round's −0.0 into +0.0).
    """

    @staticmethod
    def forward(ctx, x, scale, zero_point, bounds):
        qmin, qmax, zp_is_zero = bounds  # one argument: autograd.Function.apply inspects each one
        q = torch.div(x, scale)
        q.round_().add_(zero_point)
        mask = step_mask(q, qmin, qmax)
        ctx.save_for_backward(mask)
        q.clamp_(qmin, qmax)
        return (q if zp_is_zero else q.sub_(zero_point)).mul_(scale)

    @staticmethod
    def backward(ctx, grad):
        (mask,) = ctx.saved_tensors
        return grad * mask, None, None, None


def step_mask(q: torch.Tensor, lo: int, hi: int) -> torch.Tensor:
    """1.0 where the finite, integer-valued q is in [lo, hi], else 0.0: one float kernel (see _FakeQuantObserved)."""
    ones = _ONE if q.dtype == torch.float32 else q.new_ones(())
    return torch.ops.aten.hardtanh_backward(ones.expand_as(q), q, lo - 0.5, hi + 0.5)


def _weights_step_applies(obs, x: torch.Tensor) -> bool:
    mn, mx = obs._buffers["min_val"], obs._buffers["max_val"]
    return (type(obs) is MinMaxObserver and obs.symmetric and obs.dtype == "int8" and obs.axis == 0
            and x.dtype == torch.float32
            and x.device.type == "cpu" and x.dim() >= 2 and x.is_contiguous() and obs.has_data
            and mn.dtype == torch.float32 and mn.shape == (x.shape[0],) and not mn.is_inference()
            and not mx.is_inference())


def _observed_weight_scales(obs, x: torch.Tensor) -> np.ndarray | None:
    """A weight's per-channel observation and symmetric scales in NumPy on the tensors' memory: the same
    IEEE float32 operations in the same order as observer.update and _observed_qparams_tensors, at a NumPy
    call's cost per operation instead of a torch op's (weights are small: that cost is most of their QAT
    step). None, having written nothing, for non-finite weights; None after the update for a zero scale —
    the general path then raises the error that names the cause."""
    w = x.detach().numpy().reshape(x.shape[0], -1)
    lo, hi = w.min(axis=1), w.max(axis=1)
    if not (np.isfinite(lo).all() and np.isfinite(hi).all()):
        return None
    mn, mx = obs.min_val.numpy(), obs.max_val.numpy()
    np.minimum(mn, lo, out=mn)
    np.maximum(mx, hi, out=mx)
    qmin, qmax = _qrange(obs)
    scale = np.maximum(np.maximum(-mn, mx), np.float32(0.0)) / np.float32((qmax - qmin) // 2)
    return scale if scale.min() > 0.0 else None


class _FakeQuantWeights(torch.autograd.Function):
    """_FakeQuantObserved for symmetric int8 per-channel weights (axis 0, contiguous) in NumPy, after
    _observed_weight_scales: the same float32 operations (rint and torch.round both round half to even),
    the same bits. The range was widened to this step's weights before the scale was taken, so
    |w / s| ≤ 127 + a rounding: every code is inside — the clamp changes nothing and the straight-through
    mask is all ones (the gradient passes unchanged)."""

    @staticmethod
    def forward(ctx, x, scale):
        scale = scale[:, None]
        q = np.divide(x.detach().numpy().reshape(x.shape[0], -1), scale)
        np.rint(q, out=q)
        q += np.float32(0.0)  # −0.0 → +0.0, as the + zero point does
        q *= scale
        return torch.from_numpy(q).view(x.shape)

    @staticmethod
    def backward(ctx, grad):
        return grad, None


with torch.inference_mode(False):
    _ONE = torch.ones(())  # never written: expanded as the mask's "gradient" input
    _ZERO = torch.zeros(())  # never written: the zero point of symmetric weights


class StepOutput(NamedTuple):
    """A FakeQuantize's record of its output in this QAT step. `batch_range` is the min and max of the tensor
    it quantized; `deferred`: it returned that tensor unquantized, because its only consumer — a QuantAct
    (`defers_to_table`) — finds the codes itself and applies the straight-through mask with its table."""

    tensor: weakref.ref
    version: int
    scale: float
    zero_point: int
    batch_range: tuple[float, float]
    deferred: bool


def scalar_tensors(module: nn.Module, scale: float, zero_point: float,
                   slot: str = "_scalars") -> tuple[torch.Tensor, torch.Tensor]:
    """This step's scale and zero point as two 0-d float32 tensors the module keeps under `slot`, filled in
    place (cheaper than new tensors, and a Python number would be converted by every op; the fake-quant
    functions keep neither for their backward)."""
    pair = module.__dict__.get(slot)
    if pair is None:
        with torch.inference_mode(False):  # writable in and out of inference mode
            pair = module.__dict__[slot] = (torch.empty(()), torch.empty(()))
    pair[0].fill_(scale)
    pair[1].fill_(zero_point)
    return pair


class _FakeQuantLSQ(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, scale, zero_point, qmin, qmax, grad_scale):
        v = x / scale
        q = torch.round(v) + zero_point
        below, above = q < qmin, q > qmax
        ctx.save_for_backward(v, below, above, zero_point)
        ctx.consts = (qmin, qmax, grad_scale, scale.shape)
        return (q.clamp(qmin, qmax) - zero_point) * scale

    @staticmethod
    def backward(ctx, grad):
        v, below, above, zero_point = ctx.saved_tensors
        qmin, qmax, grad_scale, scale_shape = ctx.consts
        inside = ~(below | above)
        ds = torch.where(below, qmin - zero_point, torch.where(above, qmax - zero_point, torch.round(v) - v))
        gs = grad * ds * grad_scale
        # `scale` arrives broadcastable to x (shape [1, …, C, …, 1] per channel): sum over the broadcast
        # dims, i.e. over everything but the channel axis — found by position, not by size.
        gs = gs.sum() if len(scale_shape) == 0 else gs.sum_to_size(scale_shape)
        return grad * inside, gs.reshape(scale_shape), None, None, None, None


def fake_quantize(x: torch.Tensor, qp: QuantParams) -> torch.Tensor:
    """Fake-quantize `x` with fixed QuantParams (STE gradient)."""
    scale = torch.as_tensor(qp.scale, dtype=x.dtype, device=x.device)
    zp = torch.as_tensor(qp.zero_point, dtype=x.dtype, device=x.device)
    return _FakeQuantSTE.apply(x, _shape_for(scale, x, qp.axis), _shape_for(zp, x, qp.axis), qp.qmin, qp.qmax)


def _all_finite(x: torch.Tensor) -> bool:
    # NaN and ±Inf make the sum non-finite, so a finite sum proves every element finite in one cheap
    # reduction; only a non-finite sum (or an overflowing one) needs the elementwise check.
    return math.isfinite(float(dense_elements(x).sum())) or bool(torch.isfinite(x).all())


def quantize_codes(x: torch.Tensor, qp: QuantParams) -> torch.Tensor:
    """Codes (int64) of a float tensor, round half to even in the tensor's dtype."""
    if not _all_finite(x):
        raise QuantizationError("cannot quantize NaN/Inf: the input contains non-finite values")
    scale = _shape_for(torch.as_tensor(qp.scale, dtype=x.dtype), x, qp.axis)
    zp = _shape_for(torch.as_tensor(qp.zero_point, dtype=x.dtype), x, qp.axis)
    # clamp before the cast: x/s beyond the int64 range (x = 1e30) would wrap around to the wrong end
    return (torch.round(x / scale) + zp).clamp(qp.qmin, qp.qmax).long()


def table_positions(x: torch.Tensor, qp: QuantParams) -> torch.Tensor:
    """`quantize_codes(x, qp) − qmin` (per tensor) as int32: where each element's code sits in a table over
    qmin..qmax. The shift is folded into the zero point and the clamp (exact: the values are small integers
    or clamp anyway), and int32 converts and indexes faster than int64 — QuantAct gathers at every QAT step."""
    if qp.per_channel:
        raise QuantizationError("table_positions() is for per-tensor parameters")
    if not _all_finite(x):
        raise QuantizationError("cannot quantize NaN/Inf: the input contains non-finite values")
    return _shifted_codes(x, qp, 0)


def positions_with_ends(x: torch.Tensor, qp: QuantParams) -> torch.Tensor:
    """table_positions(x, qp) + 1 in a table over qmin − 1 … qmax + 1 (int32): everything below the range at 0,
    above it at the last entry — for a per-tensor `qp` and an `x` known finite (its observer has checked it)."""
    return _shifted_codes(x, qp, 1)


def _shifted_codes(x: torch.Tensor, qp: QuantParams, ends: int) -> torch.Tensor:
    """round(x / s) + z − qmin + ends, clamped to [0, qmax − qmin + 2·ends], as int32."""
    scale = torch.as_tensor(qp.scale, dtype=x.dtype)
    q = torch.div(x, scale).round_().add_(qp.zero_point - qp.qmin + ends)
    return q.clamp_(0, qp.qmax - qp.qmin + 2 * ends).int()


def grid_positions(x: torch.Tensor, qp: QuantParams) -> torch.Tensor:
    """table_positions(x, qp) for an x that lies on qp's grid — a fake-quant output, x = fl(k·s) with
    qmin ≤ k + z ≤ qmax — in two passes instead of six: x·fl(1/s) is k within 255 · 3 · 2⁻²⁴ < 10⁻⁴, so
    adding z − qmin + ½ and truncating gives k + z − qmin exactly; no clamp and no NaN check are needed."""
    offset = torch.tensor(qp.zero_point - qp.qmin + 0.5, dtype=x.dtype)
    return torch.add(offset, x, alpha=float(np.float32(1.0 / qp.scale))).int()


def dequantize_codes(q: torch.Tensor, qp: QuantParams, dtype=torch.float32) -> torch.Tensor:
    """(q − z)·s in `dtype` (float32: what DequantizeLinear and TFLite's DEQUANTIZE compute)."""
    scale = _shape_for(torch.as_tensor(qp.scale, dtype=dtype), q, qp.axis)
    zp = _shape_for(torch.as_tensor(qp.zero_point, dtype=torch.int64), q, qp.axis)
    return (q.long() - zp).to(dtype) * scale


def _qrange(observer) -> tuple[int, int]:
    return QuantParams.qrange_of(observer.dtype, observer.narrow)


def _observed_qparams_tensors(observer) -> tuple[torch.Tensor, torch.Tensor | float] | None:
    """`QuantParams.from_range(observer range)` as tensors: scale (rounded to float32) and zero point
    (a tensor, or one number when symmetric).

    The same float64 operations in the same order as `from_range` (IEEE division and round half to
    even give the same bits in torch and NumPy), without NumPy, a dataclass and per-channel Python
    loops at every QAT step. None when the range is unusable: the caller then takes the QuantParams
    path, which raises the error that names the cause.
    """
    if not observer.has_data:
        return None
    qmin, qmax = _qrange(observer)
    if observer.symmetric and observer.min_val.dtype == torch.float32:
        # Weights. max(−lo, hi) is exact in float32, and a float32 quotient equals the float64 quotient
        # rounded to float32 (float64 carries more than 2·24 + 2 bits), so float32 ops give from_range's
        # scale in a third of the ops; the zero point is one number.
        # max(−min(lo, 0), max(hi, 0)) = max(−lo, hi, 0): max is exact, so the order does not matter
        amax = torch.maximum(observer.min_val.detach().neg(), observer.max_val.detach()).clamp_min_(0.0)
        scale32 = amax.div_((qmax - qmin) // 2)
        if not float(scale32.min()) > 0.0:  # an empty range (the observer has checked for NaN/Inf)
            return None
        return scale32, 0.0 if observer.dtype != "uint8" else 128.0
    lo = observer.min_val.detach().double().clamp(max=0.0)
    hi = observer.max_val.detach().double().clamp(min=0.0)
    if observer.symmetric:
        scale = torch.maximum(-lo, hi) / ((qmax - qmin) // 2)
        zp = torch.full_like(scale, 0 if observer.dtype != "uint8" else 128)
    else:
        scale = (hi - lo) / (qmax - qmin)
        zp = torch.round(qmin - lo / scale.float().double()).clamp(qmin, qmax)
    scale32 = scale.float()
    if not bool(((hi - lo > 0) & torch.isfinite(scale32) & (scale32 > 0)).all()):
        return None
    return scale32, zp


def _scalar_qparams(lo: float, hi: float, dtype: str, symmetric: bool, narrow: bool):
    """`QuantParams.from_range(lo, hi)` per tensor in Python floats (IEEE float64, round half to even, as
    NumPy): (scale rounded to float32 — what QuantParams stores and fake quantization uses —, zero point),
    or None when the range is unusable (the QuantParams path then raises the error that names the cause).
    A QAT step needs this for ~60 tensors; a dozen tensor ops each cost more than the arithmetic."""
    qmin, qmax = QuantParams.qrange_of(dtype, narrow)
    lo, hi = min(lo, 0.0), max(hi, 0.0)
    if not hi - lo > 0.0:
        return None
    if symmetric:
        scale32 = float(np.float32(max(-lo, hi) / ((qmax - qmin) // 2)))
        zp = 0 if dtype != "uint8" else 128
    else:
        scale32 = float(np.float32((hi - lo) / (qmax - qmin)))
        zp = min(max(round(qmin - lo / scale32), qmin), qmax)
    if not (math.isfinite(scale32) and scale32 > 0.0):
        return None
    return scale32, zp


class FakeQuantize(nn.Module):
    """Observer + fake quantization for one tensor.

    Calibration: `observe=True, enabled=False` (watch only). QAT: both on. After `freeze()` the
    quantization parameters stay fixed; `qparams()` gives them as QuantParams. `fix(qp)` fixes them for good
    (an activation whose output range the runtimes prescribe): calibration and QAT then leave them alone.
    """

    fixed = False  # a class default: models pickled before `fix` existed load unfixed

    def __init__(self, observer: str = "minmax", dtype: str = "int8", symmetric: bool = False,
                 axis: int | None = None, narrow: bool = False, learnable_scale: bool = False,
                 name: str = "a tensor", **observer_kw):
        super().__init__()
        self.dtype, self.symmetric, self.axis, self.narrow, self.name = dtype, symmetric, axis, narrow, name
        self.observer = make_observer(observer, dtype=dtype, symmetric=symmetric, axis=axis, narrow=narrow,
                                      name=name, **observer_kw)
        self.observe, self.enabled = True, True
        self.learnable_scale = learnable_scale
        self._qp: QuantParams | None = None
        # set by prepare() when this tensor's only consumer is a QuantAct: in a QAT step the tensor is then
        # observed here and quantized by that QuantAct's table (StepOutput.deferred)
        self.defers_to_table = False
        if learnable_scale:
            self.scale = nn.Parameter(torch.tensor(1.0))
        self.register_buffer("initialized", torch.tensor(False))

    # -- parameters ---------------------------------------------------------------------------
    def qparams(self) -> QuantParams:
        if self.learnable_scale and bool(self.initialized):
            base = self._qp or self.observer.qparams()
            scale = self.scale.detach().abs().cpu()
            return QuantParams(tuple(scale.reshape(-1).tolist()) if base.per_channel else float(scale),
                               base.zero_point, base.dtype, base.axis, base.narrow)
        if self._qp is None:
            step = self.__dict__.get("_step_qp")  # this step's (scale, zero point), from the same range
            self._qp = (QuantParams.checked_per_tensor(step[0], step[1], self.dtype, self.narrow)
                        if step is not None else self.observer.qparams())
        return self._qp

    def set_qparams(self, qp: QuantParams) -> None:
        """Fix the parameters by hand (and stop observing)."""
        self._qp, self.observe = qp, False
        if self.learnable_scale:
            with torch.no_grad():
                self.scale.data = torch.as_tensor(qp.scale, dtype=torch.float32).clone()
            self.initialized.fill_(True)

    def fix(self, qp: QuantParams) -> None:
        """Fix the parameters for good: never observed, in calibration and QAT alike."""
        self.set_qparams(qp)
        self.fixed = True

    @property
    def calibrated(self) -> bool:
        """Whether this quantizer has parameters to quantize with (observed data, or fixed)."""
        return self.fixed or self.observer.has_data

    def freeze(self) -> QuantParams:
        qp = self.qparams()
        self.observe = False
        return qp

    # -- forward ------------------------------------------------------------------------------
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.observe and not self.learnable_scale:
            return self._observe_step(x)
        if self.observe:
            self.observer(x)
            self._qp = None
        if not self.enabled:
            return x
        qp = self.qparams()
        if self.learnable_scale:
            if not bool(self.initialized):
                with torch.no_grad():
                    self.scale.data = torch.as_tensor(qp.scale, dtype=x.dtype).clone()
                self.initialized.fill_(True)
                self.observe = False
            n = x.numel() / (self.scale.numel() or 1)
            grad_scale = 1.0 / math.sqrt(n * qp.qmax)
            zp = _shape_for(torch.as_tensor(qp.zero_point, dtype=x.dtype), x, qp.axis)
            return _FakeQuantLSQ.apply(x, _shape_for(self.scale.abs(), x, qp.axis), zp, qp.qmin, qp.qmax, grad_scale)
        return fake_quantize(x, qp)

    def _observe_step(self, x: torch.Tensor) -> torch.Tensor:
        """Calibration (observe only) and QAT (observe, then fake-quantize with the range just updated).

        QAT runs this for every tensor at every step, so the parameters are computed without building
        QuantParams (built on demand by qparams(), from the same numbers): per tensor in Python floats,
        per channel as tensors.
        """
        obs = self._modules["observer"]
        state = self.__dict__  # plain attributes: spares nn.Module.__setattr__ twice per tensor and step
        state["_qp"], state["_step_qp"], state["_last_output"] = None, None, None
        if self.axis == 0 and self.enabled and _weights_step_applies(obs, x):
            scale = _observed_weight_scales(obs, x)
            if scale is not None:
                return _FakeQuantWeights.apply(x, scale)
        rng = obs.observe_range(x)
        if rng is None:
            if x.dtype == torch.float32:
                obs.update(x.detach())  # what calling the observer does, without the module call
            else:
                obs(x)
        if not self.enabled:
            return x
        qmin, qmax = _qrange(obs)
        if rng is not None:
            p = _scalar_qparams(rng[0], rng[1], obs.dtype, obs.symmetric, obs.narrow)
            if p is not None:
                scale32, zp = p
                state["_step_qp"] = p
                batch = obs.__dict__["batch_range"]
                if state.get("defers_to_table"):
                    state["_last_output"] = StepOutput(weakref.ref(x), x._version, scale32, zp, batch, True)
                    return x
                scale_t, zp_t = scalar_tensors(self, scale32, zp)
                out = _FakeQuantObserved.apply(x, scale_t, zp_t, (qmin, qmax, zp == 0))
                state["_last_output"] = StepOutput(weakref.ref(out), out._version, scale32, zp, batch, False)
                return out
        elif obs.minmax_range:
            fast = _observed_qparams_tensors(obs)
            if fast is not None:
                scale, zp = fast
                zp_is_zero = False
                if isinstance(zp, torch.Tensor):
                    zp = _shape_for(zp.to(x.dtype), x, self.axis)
                elif x.dtype == torch.float32:
                    zp, zp_is_zero = (_ZERO, True) if zp == 0 else (scalar_tensors(self, 1.0, zp)[1], False)
                else:
                    zp = torch.tensor(zp, dtype=x.dtype)
                return _FakeQuantObserved.apply(x, _shape_for(scale.to(x.dtype), x, self.axis), zp,
                                                (qmin, qmax, zp_is_zero))
        return fake_quantize(x, self.qparams())  # a histogram range, or the error that names the cause

    def observes_extremes(self) -> bool:
        """Whether this step's range can be observed from a tensor's min and max alone (observe_extremes)."""
        return (self.observe and not self.learnable_scale
                and self._modules["observer"]._scalar_update_applies(torch.float32))

    def observe_extremes(self, lo: float, hi: float) -> None:
        """_observe_step for a float32 tensor known only by its min and max (a table's outputs): the range
        updated and this step's parameters set — or, for a range that has none, left for qparams() to refuse
        with the observer's error. Only where observes_extremes()."""
        obs = self._modules["observer"]
        lo, hi = obs.observe_extremes(lo, hi)
        state = self.__dict__
        state["_qp"], state["_last_output"] = None, None
        state["_step_qp"] = _scalar_qparams(lo, hi, obs.dtype, obs.symmetric, obs.narrow)

    def record_output(self, out: torch.Tensor, qp: QuantParams, batch_range: tuple[float, float]) -> None:
        """Note `out`, made by someone else with this quantizer's `qp` (a table), as this step's output."""
        self.__dict__["_last_output"] = StepOutput(weakref.ref(out), out._version, qp.scale, qp.zero_point,
                                                   batch_range, False)

    def __getstate__(self):
        # `_last_output` is this step's (weak) link to an output tensor: not state, and a weakref does not pickle
        state = super().__getstate__() if hasattr(super(), "__getstate__") else self.__dict__
        return {k: v for k, v in state.items() if k != "_last_output"}

    def step_output(self, x: torch.Tensor, qp: QuantParams) -> "StepOutput | None":
        """What this QAT step's output was, if `x` is it — unchanged since (its version counter) and made
        with `qp`; None otherwise."""
        out = self.__dict__.get("_last_output")
        if (out is not None and out.tensor() is x and x._version == out.version and out.scale == qp.scale
                and out.zero_point == qp.zero_point):
            return out
        return None

    def on_grid(self, x: torch.Tensor, qp: QuantParams) -> bool:
        """Whether `x` is this step's fake-quantized output made with `qp`: every element is on qp's grid (a
        table can find its positions with grid_positions)."""
        out = self.step_output(x, qp)
        return out is not None and not out.deferred

    def extra_repr(self) -> str:
        state = str(self._qp) if self._qp is not None else "not calibrated"
        return f"{self.name}: {state}, observe={self.observe}, enabled={self.enabled}"
