"""The QAT step's fast path computes, bit for bit, what the plain formulas compute.

The reference here is written out from the definitions — observers as tensor updates of min/max (or
their moving average), QuantParams.from_range, fake quantization as round(x/s)+z → clamp → (q−z)·s with
a bool straight-through mask, and an activation's step as its int8 table at the input's code with the
activation's derivative at that code as the gradient — and compared with edgeact's path (which leaves the
quantization of a tensor whose only consumer is a table to that table) on values, gradients, observer
buffers, trained weights and the converted int8 model, as raw bits (so −0.0 ≠ +0.0).
Tensor layouts are part of the result: a convolution's kernel, hence its float rounding, follows the
strides of its input, so the reference returns its fake-quant values in the strides of x / s.
"""
from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import edgeact
from edgeact.dense import flat_view
from edgeact.errors import QuantizationError
from edgeact.fake_quant import FakeQuantize, dequantize_codes, table_positions
from edgeact.nn import QuantAct
from edgeact.observers import MovingAverageMinMaxObserver
from edgeact.qparams import QuantParams
from edgeact.quantize import QConfig, start_qat


def bits(t: torch.Tensor) -> torch.Tensor:
    t = t.detach()
    return t.view(torch.int32) if t.dtype == torch.float32 else t


def same_bits(a: torch.Tensor, b: torch.Tensor) -> bool:
    return a.shape == b.shape and a.dtype == b.dtype and torch.equal(bits(a), bits(b))


# -- the reference ------------------------------------------------------------------------------
class _RefSTE(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, s, z, qmin, qmax):
        q = torch.round(x / s) + z
        inside = (q >= qmin) & (q <= qmax)
        ctx.save_for_backward(inside)
        y = (q.clamp(qmin, qmax) - z) * s
        # in the strides torch gives x / s, as edgeact's in-place ops on x / s keep them: for an (N, 1, H, W)
        # input those are channels-last ones, and the convolutions downstream (and their rounding) follow
        return torch.empty_like(x / s).copy_(y)

    @staticmethod
    def backward(ctx, grad):
        (inside,) = ctx.saved_tensors
        return grad * inside, None, None, None, None


def ref_fake_quantize(x, qp: QuantParams):
    scale = torch.tensor(qp.scale, dtype=x.dtype)
    zp = torch.tensor(qp.zero_point, dtype=x.dtype)
    if qp.axis is not None:
        shape = [1] * x.dim()
        shape[qp.axis] = -1
        scale, zp = scale.reshape(shape), zp.reshape(shape)
    return _RefSTE.apply(x, scale, zp, qp.qmin, qp.qmax)


def ref_observe(obs, x):
    x = x.detach().float()
    if obs.axis is None:
        lo, hi = torch.aminmax(x)
    else:
        lo, hi = torch.aminmax(x.transpose(0, obs.axis).reshape(x.shape[obs.axis], -1), dim=1)
    assert bool(torch.isfinite(lo).all() and torch.isfinite(hi).all())
    if not bool(torch.isfinite(obs.min_val).all()):
        obs.min_val, obs.max_val = lo.clone(), hi.clone()
    elif isinstance(obs, MovingAverageMinMaxObserver):
        obs.min_val = obs.min_val + obs.c * (lo - obs.min_val)
        obs.max_val = obs.max_val + obs.c * (hi - obs.max_val)
    else:
        obs.min_val, obs.max_val = torch.minimum(obs.min_val, lo), torch.maximum(obs.max_val, hi)
    obs.__dict__["_seen"] = False


def ref_qparams(obs) -> QuantParams:
    lo = obs.min_val.double().numpy()
    hi = obs.max_val.double().numpy()
    if obs.axis is None:
        lo, hi = float(lo), float(hi)
    return QuantParams.from_range(lo, hi, obs.dtype, obs.symmetric, obs.axis, obs.narrow)


def ref_fake_quant_forward(self, x):
    """FakeQuantize.forward while observing, from the definitions."""
    if self.observe:
        ref_observe(self.observer, x)
        self._qp = None
        self.__dict__["_step_qp"] = None
    if not self.enabled:
        return x
    if self._qp is None:
        self._qp = ref_qparams(self.observer)
    return ref_fake_quantize(x, self._qp)


class _RefTable(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, value, slope):
        ctx.save_for_backward(slope)
        return value

    @staticmethod
    def backward(ctx, grad):
        (slope,) = ctx.saved_tensors
        return grad * slope, None, None


def ref_quant_act_forward(self, x):
    """QuantAct.forward while fake-quantizing, from the definitions: the value is the table's at the input's
    code; the gradient is the activation's analytic derivative at the input's dequantized code, zero where the
    output's fake quantization would clamp it; the output range observed is the activation's over the codes
    from the input's smallest to its largest."""
    xq = self.input_quant(x)
    in_qp = self.in_qparams()
    codes = (torch.round(xq.detach() / torch.tensor(in_qp.scale)) + in_qp.zero_point).clamp(in_qp.qmin, in_qp.qmax)
    at = codes.long() - in_qp.qmin
    grid = dequantize_codes(torch.arange(in_qp.qmin, in_qp.qmax + 1), in_qp)
    with torch.no_grad():
        y = self.act(grid)
    out = self.output_quant
    ref_observe(out.observer, y[int(at.min()):int(at.max()) + 1])
    out._qp = ref_qparams(out.observer)
    out_qp = out._qp
    q = torch.round(y / torch.tensor(out_qp.scale)) + out_qp.zero_point
    inside = (q >= out_qp.qmin) & (q <= out_qp.qmax)
    bound = self.act.bound()
    slope = torch.from_numpy(bound.definition.derivative(grid.double().numpy(), **bound.params)).float() * inside
    value = dequantize_codes(self.current_table(), out_qp)
    return _RefTable.apply(xq, torch.empty_like(xq).copy_(value[at]), torch.empty_like(xq).copy_(slope[at]))


# -- one quantizer, many steps --------------------------------------------------------------------
CONFIGS = [dict(observer="moving_average"), dict(observer="moving_average", dtype="uint8"),
           dict(observer="minmax"), dict(observer="moving_average", symmetric=True),
           dict(observer="minmax", symmetric=True, axis=0, narrow=True),
           dict(observer="minmax", symmetric=True, axis=1, narrow=True)]


@pytest.mark.parametrize("kw", CONFIGS)
@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
def test_observed_fake_quant_equals_the_reference_bit_for_bit(kw, layout):
    """Values, gradients and observer buffers over 30 steps, with inputs on exact ties (x/s = k + ½),
    exact zeros and values far outside the range (the clamp and the zero mask)."""
    gen = torch.Generator().manual_seed(7)
    fast, ref = FakeQuantize(**kw), FakeQuantize(**kw)
    for step in range(30):
        x = torch.randn(4, 6, 5, 5, generator=gen) * (0.3 + step % 7) + (step % 3 - 1)
        if step > 0:  # ties and zeros at this step's scale, and a few values clamped hard
            qp = fast.qparams()
            s = torch.tensor(qp.scale if qp.axis is None else qp.scale[0])
            x.view(-1)[:40] = (torch.arange(40) - 20 + 0.5) * s
            x.view(-1)[40:50] = 0.0
            x.view(-1)[50:55] = torch.tensor([1e4, -1e4, 3e3, -3e3, 1e5])
        if layout == "channels_last":
            x = x.to(memory_format=torch.channels_last)
        xa, xb = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
        ya = fast(xa)
        yb = ref_fake_quant_forward(ref, xb)
        assert same_bits(ya, yb), f"step {step}: values differ"
        assert ya.stride() == yb.stride()
        g = torch.randn(x.shape, generator=gen)
        g.view(-1)[::7] = 0.0
        ya.backward(g)
        yb.backward(g)
        assert same_bits(xa.grad, xb.grad), f"step {step}: gradients differ"
        assert same_bits(fast.observer.min_val, ref.observer.min_val)
        assert same_bits(fast.observer.max_val, ref.observer.max_val)
        assert fast.qparams() == ref.qparams()


def test_the_moving_average_in_scalars_is_the_float32_tensor_formula():
    """The scalar update rounds like the tensor formula, over ranges from 1e-6 to 1e6."""
    gen = torch.Generator().manual_seed(3)
    fast, ref = MovingAverageMinMaxObserver(), MovingAverageMinMaxObserver()
    fast(torch.randn(10, generator=gen))
    ref_observe(ref, fast.min_val.reshape(1).clone())
    ref.min_val, ref.max_val = fast.min_val.clone(), fast.max_val.clone()
    for step in range(500):
        x = torch.randn(37, generator=gen) * float(10.0 ** ((step % 13) - 6))
        assert fast.observe_range(x) is not None
        ref_observe(ref, x)
        assert same_bits(fast.min_val, ref.min_val) and same_bits(fast.max_val, ref.max_val), step


@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
def test_quant_act_table_step_equals_the_reference(layout):
    gen = torch.Generator().manual_seed(5)
    fast = QuantAct("hard_swish", observer="moving_average")
    ref = copy.deepcopy(fast)
    _assert_steps_equal(fast, ref, ref_quant_act_forward, gen, layout == "channels_last")


def _assert_steps_equal(fast, ref, ref_forward, gen, channels_last: bool):
    """12 steps of the QuantAct `fast` against `ref_forward(ref, x)` — the first only observes —: values,
    the output's observed range and gradients, bit for bit."""
    for step in range(12):
        x = torch.randn(8, 6, 4, 4, generator=gen) * (1 + step)
        if channels_last:
            x = x.to(memory_format=torch.channels_last)
        for module in (fast, ref):
            for q in (module.input_quant, module.output_quant):
                if isinstance(q, FakeQuantize):
                    q.enabled = step > 0
        xa, xb = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
        ya = fast(xa)
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(FakeQuantize, "forward", ref_fake_quant_forward)
            yb = ref_forward(ref, xb) if step > 0 else ref(xb)
        assert same_bits(ya, yb), step
        assert same_bits(fast.output_quant.observer.max_val, ref.output_quant.observer.max_val), step
        g = torch.randn(x.shape, generator=gen)
        ya.backward(g)
        yb.backward(g)
        assert same_bits(xa.grad, xb.grad), step


def ref_fused_relu_forward(self, x):
    """A ReLU sharing its conv's output quantizer, from the definitions: the quantizer observes relu(x); the
    value is the table's at x's code (clamped), the gradient the derivative at that code where the output
    stays in range, and zero where x's code is outside the range."""
    out = self.output_quant
    with torch.no_grad():
        ref_observe(out.observer, self.act(x.detach()))
    out._qp = qp = ref_qparams(out.observer)
    code = torch.round(x.detach() / torch.tensor(qp.scale)) + qp.zero_point
    inside_in = (code >= qp.qmin) & (code <= qp.qmax)
    at = code.clamp(qp.qmin, qp.qmax).long() - qp.qmin
    grid = dequantize_codes(torch.arange(qp.qmin, qp.qmax + 1), qp)
    with torch.no_grad():
        y = self.act(grid)
    q = torch.round(y / torch.tensor(qp.scale)) + qp.zero_point
    bound = self.act.bound()
    slope = torch.from_numpy(bound.definition.derivative(grid.double().numpy(), **bound.params)).float()
    slope = slope * ((q >= qp.qmin) & (q <= qp.qmax))
    value = dequantize_codes(self.current_table(), qp)
    return _RefTable.apply(x, torch.empty_like(x).copy_(value[at]), torch.empty_like(x).copy_(slope[at] * inside_in))


@pytest.mark.parametrize("act", ["relu", "relu6"])
def test_a_fused_relu_step_equals_the_reference(act):
    from edgeact.nn.quant_act import SharedQuant

    gen = torch.Generator().manual_seed(8)
    shared = FakeQuantize("moving_average")
    fast = QuantAct(act, input_quant=SharedQuant(shared), output_quant=shared)
    _assert_steps_equal(fast, copy.deepcopy(fast), ref_fused_relu_forward, gen, channels_last=True)


@pytest.mark.parametrize("act, top", [("relu", None), ("relu6", 6.0)])
@pytest.mark.parametrize("qp", [QuantParams(0.05, -128), QuantParams(0.031, -20), QuantParams(0.1, 3, "uint8"),
                                QuantParams(0.001, -128)])
def test_a_relu_table_on_its_own_parameters_is_a_clamp_of_codes(act, top, qp):
    """What lets a fused ReLU/ReLU6 step skip the table's gathers: its table is clip(code, z, code of the top)
    and its slopes are 1 exactly on the codes whose grid value lies strictly inside (0, top), within range."""
    from edgeact.nn.quant_act import _code_clamp_bounds

    table = edgeact.int8_table(act, qp, qp, backend="ideal")
    codes = np.arange(qp.qmin, qp.qmax + 1)
    grid = (codes - np.float32(qp.zero_point)).astype(np.float32) * np.float32(qp.scale)
    hi = qp.qmax if top is None else min(qp.qmax, qp.zero_point + round(top / qp.scale))
    inside = (grid > 0) & (grid < (np.inf if top is None else top))
    slopes = np.concatenate([[0.0], inside.astype(np.float32), [0.0]]).astype(np.float32)
    assert _code_clamp_bounds(table, slopes, qp.qmin) == (
        max(qp.zero_point, qp.qmin), hi, int(codes[inside][0]), int(codes[inside][-1]))
    hard_swish = edgeact.int8_table("hard_swish", qp, qp, backend="ideal")
    assert _code_clamp_bounds(hard_swish, slopes, qp.qmin) is None  # not a clamp of the codes
    slopes[slopes.size // 2] = 0.5  # a slope other than 1: the gradient needs the table
    assert _code_clamp_bounds(table, slopes, qp.qmin) is None


def ref_any_quant_act_forward(self, x):
    fused = getattr(self.input_quant, "source", None) is self.output_quant  # a ReLU sharing its conv's quantizer
    return (ref_fused_relu_forward if fused else ref_quant_act_forward)(self, x)


def _train(model, batches, steps):
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=2e-3)
    for x, y in batches[:steps]:
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()


@pytest.mark.parametrize("act, qconfig", [("hard_swish", QConfig(observer="moving_average")),
                                          ("hard_swish", QConfig(observer="minmax", activation_dtype="uint8")),
                                          ("relu6", QConfig(observer="moving_average"))])
def test_qat_of_a_study_model_equals_the_reference_run(act, qconfig):
    """mnv3s (the study's model): a few QAT steps with edgeact's path and with the reference formulas give the
    same bits in every weight, bias and observer buffer, and the same converted model. (With relu6 every
    activation but the squeeze-excite gates is a ReLU6 fused with its conv: a table that clamps codes.)"""
    from edgeact.models import digits_for, load

    data = digits_for("mnv3s")
    trained = load("mnv3s", act)
    batches = [(data.x_train[i:i + 32], data.y_train[i:i + 32]) for i in range(0, 32 * 6, 32)]
    runs = {}
    for name in ("fast", "reference"):
        model = edgeact.prepare(trained, qconfig=qconfig)
        edgeact.calibrate(model, data.calibration_batches()[:2], progress=False)
        start_qat(model)
        torch.manual_seed(0)  # the model's dropout draws from it
        if name == "fast":
            _train(model, batches, 6)
        else:
            with pytest.MonkeyPatch.context() as mp:
                mp.setattr(FakeQuantize, "forward", ref_fake_quant_forward)
                mp.setattr(QuantAct, "forward", ref_any_quant_act_forward)
                _train(model, batches, 6)
        state = {k: v.clone() for k, v in model.state_dict().items()}
        with torch.no_grad():
            out = edgeact.convert(model)(data.x_test[:64])
        runs[name] = state, out
    (sa, oa), (sb, ob) = runs["fast"], runs["reference"]
    assert sa.keys() == sb.keys()
    differ = [k for k in sa if not same_bits(sa[k], sb[k])]
    assert not differ, differ[:5]
    assert same_bits(oa, ob)


def test_prepare_defers_to_a_table_only_where_it_is_the_only_consumer():
    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.c1, self.a1 = torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.Hardswish()
            self.c2, self.a2 = torch.nn.Conv2d(4, 4, 3, padding=1), torch.nn.Hardswish()

        def forward(self, x):
            y = self.c2(self.a1(self.c1(x)))
            return self.a2(y) + y  # c2's output has two consumers

    prepared = edgeact.prepare(Net().eval(), qconfig=QConfig(observer="moving_average"))
    deferring = {name for name, m in prepared.named_modules() if isinstance(m, FakeQuantize) and m.defers_to_table}
    assert deferring == {"c1_q.output_quant"}


def test_a_deferred_input_the_table_cannot_take_is_quantized_as_its_source_would():
    """An LSQ output scale leaves the table to the general path: the deferred input is fake-quantized there,
    with the same values and gradients as a source that did not defer."""
    from edgeact.nn.quant_act import SharedQuant

    gen = torch.Generator().manual_seed(6)
    x = torch.randn(6, 5, 4, 4, generator=gen)
    runs = []
    for defer in (True, False):
        source = FakeQuantize("moving_average")
        source.defers_to_table = defer
        qa = QuantAct("hard_swish", observer="moving_average", input_quant=SharedQuant(source), learnable_scale=True)
        source.enabled = qa.output_quant.enabled = False
        qa(source(x))
        source.enabled = qa.output_quant.enabled = True
        xa = (x * 2).requires_grad_(True)
        y = qa(source(xa))
        y.backward(torch.ones_like(y))
        runs.append((y, xa.grad))
    assert same_bits(runs[0][0], runs[1][0]) and same_bits(runs[0][1], runs[1][1])


# -- what the fast path must still refuse or leave to the general path ------------------------------
def test_nan_during_qat_names_the_tensor():
    fq = FakeQuantize("moving_average", name="stem output")
    fq(torch.randn(10))
    x = torch.randn(10)
    x[3] = float("nan")
    with pytest.raises(QuantizationError, match="NaN values reached stem output"):
        fq(x)
    w = FakeQuantize("minmax", symmetric=True, axis=0, narrow=True, name="conv weight")
    w(torch.randn(4, 3))
    bad = torch.randn(4, 3)
    bad[1, 2] = float("inf")
    with pytest.raises(QuantizationError, match="Inf values reached conv weight"):
        w(bad)


def test_a_histogram_observer_in_qat_quantizes_with_its_own_range():
    """Percentile clips outliers: during QAT the tensor is fake-quantized with the percentile range, not
    with the min/max the histogram spans."""
    gen = torch.Generator().manual_seed(0)
    fq = FakeQuantize("percentile", percentile=99.0)
    x = torch.randn(5000, generator=gen)
    x[0] = 50.0  # one outlier stretches min/max, not the 99th percentile
    y = fq(x)
    qp = fq.observer.qparams()
    assert qp.scale < 50.0 / 255  # the percentile range, far narrower than [min, max]
    assert same_bits(y, ref_fake_quantize(x, qp))


def test_table_positions_are_quantize_codes_minus_qmin():
    from edgeact.fake_quant import quantize_codes

    gen = torch.Generator().manual_seed(2)
    for qp in (QuantParams(0.05, -7), QuantParams(0.013, 200, "uint8"), QuantParams(0.5, 0, "int8", None, True)):
        x = torch.randn(2000, generator=gen) * 100 * qp.scale
        x[:20] = (torch.arange(20) - 10 + 0.5) * qp.scale  # ties
        at = table_positions(x, qp)
        assert at.dtype == torch.int32
        assert torch.equal(at.long(), quantize_codes(x, qp) - qp.qmin)
    with pytest.raises(QuantizationError, match="NaN"):
        table_positions(torch.tensor([1.0, float("nan")]), QuantParams(0.1, 0))


def test_flat_view_is_memory_order_or_none():
    x = torch.arange(2 * 3 * 4 * 5.0).reshape(2, 3, 4, 5)
    cl = x.to(memory_format=torch.channels_last)
    for t in (x, cl, x.permute(3, 1, 0, 2)):
        v = flat_view(t)
        assert v is not None and v.data_ptr() == t.data_ptr()
        assert torch.equal(v, torch.as_strided(t, (t.numel(),), (1,)))
    assert flat_view(x[:, :, :2]) is None
    assert flat_view(torch.zeros(3).expand(4, 3)) is None
    assert np.isclose(float(flat_view(cl).sum()), float(x.sum()))


def test_grid_positions_equal_table_positions_on_the_grid():
    """Every code of int8, uint8 and narrow int8 grids, for scales from 1e-12 to 1e6."""
    from edgeact.fake_quant import grid_positions

    rng = np.random.default_rng(0)
    for i in range(300):
        dtype, narrow = [("int8", False), ("uint8", False), ("int8", True)][i % 3]
        lo, hi = QuantParams.qrange_of(dtype, narrow)
        qp = QuantParams(float(10.0 ** rng.uniform(-12, 6)), int(rng.integers(lo, hi + 1)), dtype, None, narrow)
        codes = torch.arange(lo, hi + 1)
        x = dequantize_codes(codes, qp)  # (q − z)·s in float32: what a fake-quant output holds
        assert torch.equal(grid_positions(x, qp), table_positions(x, qp)), qp


def test_quant_act_takes_its_positions_from_the_grid_only_for_its_input_quantizers_output():
    from edgeact.nn.quant_act import SharedQuant

    gen = torch.Generator().manual_seed(4)
    source = FakeQuantize("moving_average")
    qa = QuantAct("hard_swish", observer="moving_average", input_quant=SharedQuant(source))
    x = torch.randn(6, 5, 4, 4, generator=gen)
    source(x)  # calibrate both
    qa(source(x))
    xq = source(x * 2)
    assert source.on_grid(xq, source.qparams())
    assert not source.on_grid(xq.clone(), source.qparams())  # equal values, but not known to be on the grid
    changed = source(x * 3)
    with torch.no_grad():
        changed.add_(0.001)  # changed in place after the quantizer made it: off the grid
    assert not source.on_grid(changed, source.qparams())
    ref = copy.deepcopy(qa)
    y = qa(changed)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(FakeQuantize, "forward", ref_fake_quant_forward)
        assert same_bits(y, ref_quant_act_forward(ref, changed))
    xq = source(x * 2)
    ref = copy.deepcopy(qa)
    y = qa(xq)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(FakeQuantize, "forward", ref_fake_quant_forward)
        want = ref_quant_act_forward(ref, xq.clone())
    assert same_bits(y, want)


def test_a_table_dequantized_in_numpy_is_dequantize_codes():
    from edgeact.nn.quant_act import _dequantized

    rng = np.random.default_rng(1)
    for i in range(200):
        dtype = ("int8", "uint8")[i % 2]
        lo, hi = QuantParams.qrange_of(dtype)
        qp = QuantParams(float(10.0 ** rng.uniform(-10, 4)), int(rng.integers(lo, hi + 1)), dtype)
        table = rng.integers(lo, hi + 1, size=256).astype(np.int64)
        for dt in (torch.float32, torch.float64):
            assert same_bits(_dequantized(table, qp, dt), dequantize_codes(torch.from_numpy(table), qp, dt))


def test_checked_per_tensor_params_equal_validated_ones():
    for qp in (QuantParams(0.0123, -5), QuantParams(3e-7, 200, "uint8"), QuantParams(0.5, 0, "int8", None, True)):
        fast = QuantParams.checked_per_tensor(qp.scale, qp.zero_point, qp.dtype, qp.narrow)
        assert fast == qp and hash(fast) == hash(qp) and fast.qmin == qp.qmin


def test_a_model_in_qat_still_pickles():
    """torch.save(model) after QAT steps (the quantizers' per-step links to their outputs are not state)."""
    import io

    fq = FakeQuantize("moving_average")
    fq(torch.randn(10))
    y = fq(torch.randn(10))
    buf = io.BytesIO()
    torch.save(fq, buf)
    buf.seek(0)
    back = torch.load(buf, weights_only=False)
    assert back.qparams() == fq.qparams()
    assert not back.on_grid(y, fq.qparams())
