"""QuantAct: the fake-quant path and the converted table path give the same code for every input code.

Checked over many random quantization parameters (int8 and uint8), for every activation and a per-channel
PReLU, and against exact rational arithmetic for the piecewise-linear ones; plus calibration, gradients,
QAT and the errors.
"""
from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

import edgeact.nn as enn
from edgeact import activations as A
from edgeact.errors import QuantizationError
from edgeact.fake_quant import FakeQuantize, dequantize_codes, quantize_codes
from edgeact.nn import QuantAct
from edgeact.qparams import QuantParams

SETTINGS = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _clamp(v, lo, hi):
    return min(max(v, lo), hi)


EXACT = {  # exact rational forms, independent of edgeact
    "relu6": lambda x: _clamp(x, 0, 6),
    "hard_swish": lambda x: x * _clamp(x + 3, 0, 6) / 6,
    "hard_mish": lambda x: x * _clamp(x + 2, 0, 2) / 2,
    "hard_sigmoid": lambda x: _clamp(x / 6 + Fraction(1, 2), 0, 1),
}


def exact_codes(fn, in_qp: QuantParams, out_qp: QuantParams, codes) -> np.ndarray:
    s_in, s_out = Fraction(in_qp.scale), Fraction(out_qp.scale)
    return np.array([_clamp(round(fn((int(q) - in_qp.zero_point) * s_in) / s_out) + out_qp.zero_point,
                            out_qp.qmin, out_qp.qmax) for q in codes])


@st.composite
def qparam_pair(draw):
    dtype = draw(st.sampled_from(["int8", "uint8"]))
    lo, hi = QuantParams.qrange_of(dtype)
    s_in = draw(st.one_of(st.floats(2e-3, 0.3), st.sampled_from([2.0**-k for k in range(1, 8)])))
    s_out = draw(st.one_of(st.floats(1e-3, 0.1), st.sampled_from([2.0**-k for k in range(2, 9)])))
    return (QuantParams(s_in, draw(st.integers(lo, hi)), dtype),
            QuantParams(s_out, draw(st.integers(lo, hi)), dtype))


def quant_act(activation, in_qp: QuantParams, out_qp: QuantParams, **kw) -> QuantAct:
    qa = QuantAct(activation, dtype=in_qp.dtype, **kw)
    qa.input_quant.set_qparams(in_qp)
    qa.output_quant.set_qparams(out_qp)
    return qa


def every_code(in_qp: QuantParams, channels: int = 1) -> tuple[np.ndarray, torch.Tensor]:
    """Every input code, as the float32 value the previous layer hands over, shaped (1, C, 256)."""
    codes = in_qp.codes()
    x = dequantize_codes(torch.from_numpy(codes), in_qp).reshape(1, 1, -1).repeat(1, channels, 1)
    return codes, x


def both_paths(qa: QuantAct, x: torch.Tensor, out_qp: QuantParams):
    fake = qa(x)
    fake_codes = quantize_codes(fake.detach(), out_qp)
    qa.convert()
    conv = qa(x)
    conv_codes = quantize_codes(conv, out_qp)
    assert torch.equal(fake.detach(), conv)  # the very same float values, not only the same codes
    return fake_codes.numpy(), conv_codes.numpy()


@SETTINGS
@given(st.sampled_from(A.names()), qparam_pair())
def test_fake_quant_path_equals_table_path_for_every_code(name, qps):
    in_qp, out_qp = qps
    codes, x = every_code(in_qp)
    qa = quant_act(name, in_qp, out_qp)
    fake, conv = both_paths(qa, x, out_qp)
    np.testing.assert_array_equal(fake, conv)
    # and both are the ideal table, code for code
    np.testing.assert_array_equal(conv.reshape(-1), qa.table.numpy())
    if name in EXACT:
        np.testing.assert_array_equal(conv.reshape(-1), exact_codes(EXACT[name], in_qp, out_qp, codes))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(qparam_pair(), st.lists(st.floats(-2.0, 2.0), min_size=4, max_size=4))
def test_per_channel_prelu_paths_agree_for_every_code_and_channel(qps, slopes):
    in_qp, out_qp = qps
    codes, x = every_code(in_qp, channels=4)
    prelu = enn.PReLU(4)
    with torch.no_grad():
        prelu.weight.copy_(torch.tensor(slopes))
    qa = quant_act(prelu, in_qp, out_qp)
    fake, conv = both_paths(qa, x, out_qp)
    np.testing.assert_array_equal(fake, conv)
    assert qa.table.shape == (4, len(codes))
    for c in range(4):
        w = Fraction(float(prelu.weight[c].detach()))  # the float32 slope the module holds, exactly
        np.testing.assert_array_equal(conv[0, c], exact_codes(lambda v: v if v >= 0 else w * v, in_qp, out_qp, codes))


def test_random_inputs_not_only_code_values_agree():
    """Values between and beyond the codes: the converted path quantizes them as the input fake-quant does."""
    in_qp, out_qp = QuantParams(0.05, 3), QuantParams(0.03, -40)
    x = torch.randn(8, 3, 16, 16, generator=torch.Generator().manual_seed(0)) * 5
    qa = quant_act("mish", in_qp, out_qp)
    fake = qa(x).detach()
    qa.convert()
    assert torch.equal(qa(x), fake)


def test_accepts_torch_modules_and_names():
    qp = QuantParams(0.05, 0)
    for act in ["hard-swish", nn.Hardswish(), enn.HardSwish()]:
        qa = quant_act(act, qp, qp)
        assert qa.activation_name == "hard_swish"
    with pytest.raises(QuantizationError, match="Linear is not an activation edgeact can quantize"):
        QuantAct(nn.Linear(2, 2))


# ------------------------------------------------------------------------------------------ calibration

def test_calibration_then_convert():
    qa = QuantAct("hard_swish", observer="minmax")
    qa.input_quant.enabled = qa.output_quant.enabled = False  # calibration: observe only
    x = torch.linspace(-6, 6, 10_001)
    assert torch.equal(qa(x), enn.HardSwish()(x))  # float while calibrating
    in_qp, out_qp = qa.in_qparams(), qa.out_qparams()
    assert in_qp == QuantParams.from_range(-6.0, 6.0)
    assert out_qp == QuantParams.from_range(float(enn.HardSwish()(x).min()), 6.0)
    qa.input_quant.enabled = qa.output_quant.enabled = True
    qa.convert()
    assert qa.converted and qa.table.shape == (256,)
    before = qa(x)
    qa(torch.linspace(-100, 100, 11))  # converted: frozen, nothing observed any more
    assert qa.in_qparams() == in_qp and torch.equal(qa(x), before)
    # the converted output is within one output step (plus the input's half step) of the float function
    err = (before - enn.HardSwish()(x)).abs().max()
    assert float(err) <= out_qp.scale * 0.5 + in_qp.scale * 1.0 + 1e-6


def test_no_calibration_is_an_error_naming_the_tensor():
    qa = QuantAct("relu")
    with pytest.raises(QuantizationError, match=r"no data was observed for QuantAct input"):
        qa.convert()


def test_without_an_input_quantizer_it_says_what_to_do():
    qa = QuantAct("relu", input_quant=None)
    with pytest.raises(QuantizationError, match="no input quantizer.*prepare"):
        qa.in_qparams()


def test_shared_input_quantizer():
    """The input is already quantized by the producer's output FakeQuantize (SharedQuant)."""
    producer = FakeQuantize(name="conv output")
    producer.set_qparams(QuantParams(0.04, -5))
    qa = QuantAct("mish", input_quant=enn.SharedQuant(producer))
    qa.output_quant.set_qparams(QuantParams(0.03, -20))
    x = producer(torch.randn(2, 3, 5, 5, generator=torch.Generator().manual_seed(0)) * 3)
    fake = qa(x).detach()
    assert "input_quant._source" not in dict(qa.named_modules())
    qa.convert()
    assert torch.equal(qa(x), fake)


# ------------------------------------------------------------------------------------- gradients, QAT

def test_gradient_is_the_float_activations_through_the_ste():
    in_qp, out_qp = QuantParams(0.05, 0), QuantParams(0.05, 0)
    qa = quant_act("hard_swish", in_qp, out_qp)
    x = torch.tensor([-7.0, -2.0, -0.5, 0.0, 1.0, 2.5, 5.0, 7.0], requires_grad=True)
    qa(x).sum().backward()
    xq = dequantize_codes(quantize_codes(x.detach(), in_qp), in_qp).double().numpy()
    inside_in = np.abs(x.detach().numpy()) <= 6.4 - 0.025
    y = A.get("hard_swish").numpy(xq)
    inside_out = (y / out_qp.scale <= 127.5) & (y / out_qp.scale >= -128.5)
    want = A.get("hard_swish").grad(xq) * inside_in * inside_out
    np.testing.assert_allclose(x.grad.numpy(), want, rtol=1e-6, atol=1e-7)


def test_prelu_slope_trains_through_quant_act():
    qp = QuantParams(0.05, 0)
    prelu = enn.PReLU(2)
    qa = quant_act(prelu, qp, qp)
    x = torch.tensor([[-1.0, 2.0], [-3.0, 0.5]]).reshape(2, 2, 1)
    qa(x).sum().backward()
    # d/dw = x where x < 0 (per channel): channel 0 sees −1 and −3
    torch.testing.assert_close(prelu.weight.grad, torch.tensor([-4.0, 0.0]))


def test_qat_reduces_a_simple_loss_and_the_tables_follow_the_training():
    torch.manual_seed(0)
    x = torch.randn(512, 4)
    target = torch.nn.functional.hardswish(x @ torch.randn(4, 3)) @ torch.randn(3, 1)
    model = nn.Sequential(nn.Linear(4, 3), QuantAct("hard_swish", learnable_scale=True), nn.Linear(3, 1))
    qa = model[1]
    with torch.no_grad():  # calibrate
        qa.input_quant.enabled = qa.output_quant.enabled = False
        model(x)
        qa.input_quant.enabled = qa.output_quant.enabled = True
    opt = torch.optim.Adam(model.parameters(), lr=0.02)
    losses = []
    for _ in range(150):
        opt.zero_grad()
        loss = torch.mean((model(x) - target) ** 2)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert qa.output_quant.scale.grad is not None
    assert losses[-1] < 0.2 * losses[0]
    with torch.no_grad():
        fake = model(x)
        qa.convert()
        assert torch.equal(model(x), fake)
    assert qa.out_qparams().scale == pytest.approx(float(qa.output_quant.scale.detach().abs()), rel=1e-6)
