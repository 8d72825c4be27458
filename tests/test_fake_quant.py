"""Fake quantization: codes equal to onnxruntime's QuantizeLinear, torch's own fake-quant op, the STE and LSQ."""
from __future__ import annotations

import functools

import numpy as np
import onnxruntime as ort
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper

from edgeact.errors import QuantizationError
from edgeact.fake_quant import FakeQuantize, dequantize_codes, fake_quantize, quantize_codes
from edgeact.qparams import QuantParams

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@functools.lru_cache(maxsize=None)
def ort_quantize_linear(dtype: str, axis: int | None = None, channels: int = 1):
    """onnxruntime running one QuantizeLinear (scale and zero point as inputs, so one session serves all)."""
    elem = TensorProto.INT8 if dtype == "int8" else TensorProto.UINT8
    sz_shape = [channels] if axis is not None else []
    node = helper.make_node("QuantizeLinear", ["x", "s", "z"], ["y"], **({"axis": axis} if axis is not None else {}))
    graph = helper.make_graph(
        [node], "q",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, None),
         helper.make_tensor_value_info("s", TensorProto.FLOAT, sz_shape),
         helper.make_tensor_value_info("z", elem, sz_shape)],
        [helper.make_tensor_value_info("y", elem, None)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 20)])
    model.ir_version = 9
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    return ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])


def run_ort(x: np.ndarray, qp: QuantParams) -> np.ndarray:
    sess = ort_quantize_linear(qp.dtype, qp.axis, len(qp.scale) if qp.per_channel else 1)
    s = np.asarray(qp.scale, np.float32)
    z = np.asarray(qp.zero_point, qp.np_dtype)
    return sess.run(None, {"x": x.astype(np.float32), "s": s, "z": z})[0].astype(np.int64)


@st.composite
def per_tensor(draw):
    dtype = draw(st.sampled_from(["int8", "uint8"]))
    lo, hi = QuantParams.qrange_of(dtype)
    return QuantParams(draw(st.floats(1e-4, 10.0)), draw(st.integers(lo, hi)), dtype)


def inputs_with_ties(qp: QuantParams, seed: int) -> np.ndarray:
    """Random float32 values, the exact half-step ties (k + ½)·s, every code's value, and out-of-range values."""
    rng = np.random.default_rng(seed)
    s = np.float32(qp.scale)
    k = rng.integers(-300, 300, size=1000).astype(np.float32)
    return np.concatenate([(rng.normal(size=2000) * 100 * s), (k + np.float32(0.5)) * s, k * s,
                           [0.0, 1e30, -1e30]]).astype(np.float32)


# ------------------------------------------------------------------- codes, against the runtime

@SETTINGS
@given(per_tensor(), st.integers(0, 2**16))
def test_quantize_codes_equal_onnxruntime_quantize_linear(qp, seed):
    """Round half to even in float32, as the runtime does — including at exact ties."""
    x = inputs_with_ties(qp, seed)
    want = run_ort(x, qp)
    np.testing.assert_array_equal(quantize_codes(torch.from_numpy(x), qp).numpy(), want)
    # fake_quantize carries the same codes: (q − z)·s in float32
    fq = fake_quantize(torch.from_numpy(x), qp)
    np.testing.assert_array_equal(fq.numpy(), dequantize_codes(torch.from_numpy(want), qp).numpy())


def test_per_channel_codes_equal_onnxruntime():
    rng = np.random.default_rng(0)
    w = rng.normal(size=(6, 4, 3, 3)).astype(np.float32) * np.linspace(0.1, 3, 6, dtype=np.float32)[:, None, None, None]
    qp = QuantParams.from_range(w.min(axis=(1, 2, 3)), w.max(axis=(1, 2, 3)), "int8", symmetric=True, axis=0,
                                narrow=True)
    want = run_ort(w, qp)
    np.testing.assert_array_equal(quantize_codes(torch.from_numpy(w), qp).numpy(), want)
    assert want.min() >= -127  # symmetric narrow: never the most negative code
    np.testing.assert_array_equal(fake_quantize(torch.from_numpy(w), qp).numpy(),
                                  dequantize_codes(torch.from_numpy(want), qp).numpy())


def test_dequantize_codes_is_float32_affine():
    qp = QuantParams(0.1, 3)
    q = torch.arange(-128, 128)
    got = dequantize_codes(q, qp)
    assert got.dtype == torch.float32
    want = (np.arange(-128, 128) - 3).astype(np.float32) * np.float32(qp.scale)
    np.testing.assert_array_equal(got.numpy(), want)
    assert dequantize_codes(q, qp, torch.float64).dtype == torch.float64


def test_quantize_codes_nan_is_an_error():
    with pytest.raises(QuantizationError, match="NaN"):
        quantize_codes(torch.tensor([0.0, float("nan")]), QuantParams(0.1))


# ------------------------------------------------------------ against torch's own fake-quant op

@SETTINGS
@given(per_tensor(), st.integers(0, 2**16))
def test_matches_torch_fake_quantize_away_from_ties(qp, seed):
    """torch multiplies by 1/s (float32), so it may differ by a step where x/s is within float32 rounding of a
    tie; everywhere else forward and gradient must agree."""
    rng = np.random.default_rng(seed)
    x = torch.from_numpy((rng.normal(size=4000) * 200 * qp.scale).astype(np.float32)).requires_grad_()
    v = x.detach().double() / qp.scale
    clear = (v - torch.floor(v) - 0.5).abs() > 1e-4
    ours = fake_quantize(x, qp)
    ours.sum().backward()
    g_ours = x.grad.clone()
    x.grad = None
    theirs = torch.fake_quantize_per_tensor_affine(x, qp.scale, qp.zero_point, qp.qmin, qp.qmax)
    theirs.sum().backward()
    torch.testing.assert_close(ours[clear], theirs[clear], rtol=0, atol=0)
    torch.testing.assert_close(g_ours[clear], x.grad[clear], rtol=0, atol=0)


def test_per_channel_matches_torch_fake_quantize_per_channel():
    w = torch.randn(8, 3, 3, 3, generator=torch.Generator().manual_seed(0))
    w = w * torch.linspace(0.05, 4, 8).reshape(8, 1, 1, 1)
    qp = QuantParams.from_range(w.amin(dim=(1, 2, 3)).numpy(), w.amax(dim=(1, 2, 3)).numpy(), "int8",
                                symmetric=True, axis=0, narrow=True)
    want = torch.fake_quantize_per_channel_affine(
        w, torch.tensor(qp.scale, dtype=torch.float32), torch.tensor(qp.zero_point, dtype=torch.int32), 0, -127, 127)
    torch.testing.assert_close(fake_quantize(w, qp), want, rtol=0, atol=1e-7)
    fq = FakeQuantize(axis=0, symmetric=True, narrow=True, name="conv.weight")
    torch.testing.assert_close(fq(w), want, rtol=0, atol=1e-7)
    assert fq.qparams() == qp


# ------------------------------------------------------------------------------------ the STE

def test_ste_gradient_is_one_inside_and_zero_outside_the_clamp_range():
    qp = QuantParams(0.1, -28)  # range [−10.0, 15.5]
    top, bottom = float(qp.dequantize(qp.qmax)), float(qp.dequantize(qp.qmin))
    s = qp.scale
    x = torch.tensor([bottom - 5, bottom - 0.6 * s, bottom - 0.4 * s, bottom, 0.0, 3.3, top, top + 0.4 * s,
                      top + 0.6 * s, top + 100], requires_grad=True)
    fake_quantize(x, qp).backward(torch.full_like(x, 3.0))
    assert x.grad.tolist() == [0, 0, 3, 3, 3, 3, 3, 3, 0, 0]


@SETTINGS
@given(per_tensor(), st.integers(0, 2**16))
def test_ste_gradient_matches_the_clamp_mask(qp, seed):
    rng = np.random.default_rng(seed)
    x = torch.from_numpy((rng.normal(size=2000) * 300 * qp.scale).astype(np.float32)).requires_grad_()
    fake_quantize(x, qp).sum().backward()
    code = torch.round(x.detach() / qp.scale) + qp.zero_point
    inside = (code >= qp.qmin) & (code <= qp.qmax)
    assert torch.equal(x.grad, inside.float())
    assert 0 < int(inside.sum()) < x.numel()


# ------------------------------------------------------------------------------------ FakeQuantize

def test_fake_quantize_module_calibrates_then_freezes():
    fq = FakeQuantize("minmax", name="stem output")
    fq.enabled = False
    data = torch.linspace(-2, 6, 1000)
    assert torch.equal(fq(data), data)  # calibration: watch only
    fq(torch.tensor([7.0]))
    qp = fq.freeze()
    assert qp == QuantParams.from_range(-2.0, 7.0)
    fq.enabled = True
    y = fq(torch.tensor([100.0, 0.0]))  # frozen: no more observing, values clamp to the calibrated range
    assert fq.qparams() == qp
    assert y.tolist() == [pytest.approx(float(qp.dequantize(qp.qmax)), abs=1e-6), 0.0]
    assert "stem output" in repr(fq)


def test_set_qparams_fixes_them():
    fq = FakeQuantize()
    qp = QuantParams(0.05, 10)
    fq.set_qparams(qp)
    fq(torch.randn(100) * 1000)
    assert fq.qparams() == qp


def test_fake_quantize_module_names_the_tensor_on_nan():
    fq = FakeQuantize(name="block2.act input")
    with pytest.raises(QuantizationError, match=r"NaN values reached block2\.act input"):
        fq(torch.tensor([1.0, float("nan")]))


# ------------------------------------------------------------------------------------------ LSQ

def lsq_reference_grad(x: torch.Tensor, scale: torch.Tensor, qp: QuantParams, axis=None) -> torch.Tensor:
    """Esser et al. 2020, eq. 3, with the zero point: ∂x̂/∂s = round(v) − v inside, qmin−z / qmax−z outside,
    scaled by g = 1/√(N·Qp), N the number of values per scale."""
    shape = [1] * x.dim()
    if axis is not None:
        shape[axis] = -1
    s = scale.reshape(shape)
    z = torch.tensor(qp.zero_point, dtype=x.dtype).reshape(shape)
    v = x / s
    q = torch.round(v) + z
    d = torch.where(q < qp.qmin, qp.qmin - z, torch.where(q > qp.qmax, qp.qmax - z, torch.round(v) - v))
    g = 1.0 / np.sqrt(x.numel() / scale.numel() * qp.qmax)
    if axis is None:
        return (d * g).sum()
    return (d * g).sum(dim=[i for i in range(x.dim()) if i != axis])


def test_lsq_scale_gets_the_lsq_gradient():
    x = torch.randn(5000, generator=torch.Generator().manual_seed(0)) * 3
    fq = FakeQuantize(learnable_scale=True)
    fq.set_qparams(QuantParams(0.02, 5))  # small: many values clamp
    y = fq(x)
    y.sum().backward()
    assert fq.scale.grad is not None and float(fq.scale.grad) != 0.0
    want = lsq_reference_grad(x, fq.scale.detach(), fq.qparams())
    torch.testing.assert_close(fq.scale.grad, want.reshape(fq.scale.grad.shape), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("axis", [0, 1])
def test_lsq_per_channel_scale_gradient_is_summed_per_channel(axis):
    """A (4, 4, 3, 3) weight: the channel axis must be found by position, not by its size."""
    gen = torch.Generator().manual_seed(1)
    w = torch.randn(4, 4, 3, 3, generator=gen)
    w.select(axis, 2).mul_(10)
    fq = FakeQuantize(axis=axis, symmetric=True, narrow=True, learnable_scale=True)
    fq(w).sum().backward()
    want = lsq_reference_grad(w, fq.scale.detach(), fq.qparams(), axis)
    torch.testing.assert_close(fq.scale.grad.reshape(-1), want, rtol=1e-5, atol=1e-6)


def test_qat_with_a_learnable_scale_reduces_the_quantization_loss():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(20_000, generator=gen) * 2
    fq = FakeQuantize(learnable_scale=True, symmetric=True)
    fq.set_qparams(QuantParams(0.3, 0))  # far too coarse a step for N(0, 2²) in int8
    opt = torch.optim.Adam([fq.scale], lr=0.01)
    losses = []
    for _ in range(150):
        opt.zero_grad()
        loss = torch.mean((fq(x) - x) ** 2)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.1 * losses[0]
    learned = fq.qparams()
    assert learned.scale < 0.1
    # the learned parameters are what the module now uses (and what a table would be built from)
    assert torch.equal(fq(x), fake_quantize(x, learned))


@pytest.mark.parametrize("kw", [dict(observer="moving_average"), dict(observer="minmax", dtype="uint8"),
                                dict(observer="minmax", symmetric=True, axis=0, narrow=True),
                                dict(observer="moving_average", symmetric=True, dtype="uint8")])
def test_qat_step_equals_the_quantparams_path(kw):
    """While observing, the module builds scale and zero point as tensors (the fast QAT path); the values
    and gradients equal fake_quantize() with QuantParams.from_range() of the same observed range."""
    gen = torch.Generator().manual_seed(1)
    fq = FakeQuantize(**kw)
    for step in range(20):
        x = (torch.randn(8, 5, 6, generator=gen) * (0.5 + step) + step % 3).requires_grad_(True)
        y = fq(x)  # observes x, then fake-quantizes with the updated range
        obs = fq.observer
        lo, hi = obs.range()
        if obs.axis is None:
            lo, hi = float(lo), float(hi)
        qp = QuantParams.from_range(lo, hi, obs.dtype, obs.symmetric, obs.axis, obs.narrow)
        x2 = x.detach().clone().requires_grad_(True)
        ref = fake_quantize(x2, qp)
        assert torch.equal(y, ref)
        g = torch.randn(y.shape, generator=gen)
        y.backward(g)
        ref.backward(g)
        assert torch.equal(x.grad, x2.grad)
