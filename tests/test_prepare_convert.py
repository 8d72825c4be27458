"""prepare → calibrate → convert on small models: structure, numerics against float64 references, errors."""
from __future__ import annotations

import io

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import edgeact
from edgeact.errors import QuantizationError, UnsupportedError
from edgeact.nn import HardSwish, QuantAct
from edgeact.quantized import QuantizedActivation, QuantizedConv2d, QuantizedLinear
import nets


def SmallCNN(act=nn.SiLU):
    return nets.SmallCNN(act, in_channels=1, residual=True)


def _model(act=nn.SiLU, seed=0):
    torch.manual_seed(seed)
    m = SmallCNN(act).eval()
    with torch.no_grad():
        m.bn.running_mean.uniform_(-0.5, 0.5)
        m.bn.running_var.uniform_(0.5, 2.0)
        m.bn.weight.uniform_(0.5, 1.5)
    return m


def _calibrated(m, qconfig=None, activations=None, n=128):
    p = edgeact.prepare(m, activations=activations, qconfig=qconfig)
    edgeact.calibrate(p, torch.randn(n, 1, 8, 8), progress=False)
    return p


def test_prepared_model_without_fake_quant_equals_float_model():
    """BatchNorm folding and the rewrite change nothing while fake quantization is off."""
    m = _model()
    p = edgeact.prepare(m)
    x = torch.randn(16, 1, 8, 8)
    torch.testing.assert_close(p(x), m(x), atol=1e-5, rtol=1e-5)


def test_activation_swap_by_name_covers_modules_and_functional_calls():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc1, self.act, self.fc2 = nn.Linear(4, 4), nn.SiLU(), nn.Linear(4, 4)

        def forward(self, x):
            return F.silu(self.fc2(self.act(self.fc1(x))))

    p = edgeact.prepare(Net(), activations={"silu": "hard_swish"})
    acts = [m for m in p.modules() if isinstance(m, QuantAct)]
    assert len(acts) == 2 and all(isinstance(a.act, HardSwish) for a in acts)


def test_converted_conv_equals_float64_reference_of_dequantized_tensors():
    """The integer conv (padding, groups, bias scale) is the float64 conv of the dequantized values, rounded."""
    m = _model()
    c = edgeact.convert(_calibrated(m))
    convs = [mod for mod in c.modules() if isinstance(mod, QuantizedConv2d)]
    assert len(convs) == 2
    for conv in convs:
        in_qp, out_qp, w_qp = conv.in_qparams[0], conv.out_qparams, conv.weight_qparams
        q = torch.randint(in_qp.qmin, in_qp.qmax + 1, (4, conv.weight_codes.shape[1] * conv.groups, 6, 6))
        x = torch.from_numpy(in_qp.dequantize(q.numpy()))
        w = torch.from_numpy(w_qp.dequantize(conv.weight_codes.numpy()))
        b = torch.from_numpy(conv.bias_codes.numpy().astype(np.float64) * conv.bias_scale.astype(np.float64))
        y = F.conv2d(x, w, b, conv.stride, conv.padding, conv.dilation, conv.groups)
        expected = out_qp.quantize(y.numpy())
        got = conv(q).numpy()
        # float64 rounding of the two routes can differ only at exact .5 ties
        assert np.abs(got - expected).max() <= 1
        assert (got != expected).mean() < 1e-3


def test_converted_model_tracks_fake_quant_model_within_a_few_steps():
    m = _model()
    p = _calibrated(m)
    c = edgeact.convert(p)
    x = torch.randn(32, 1, 8, 8)
    out_qp = [mod for mod in c.modules() if isinstance(mod, QuantizedLinear)][0].out_qparams
    steps = ((p(x) - c(x)).abs() / out_qp.scale).max().item()
    assert steps <= 4, steps
    assert (m(x) - c(x)).abs().max() < 0.25


def test_every_converted_activation_is_its_ideal_table():
    m = _model(nn.Mish)
    c = edgeact.convert(_calibrated(m))
    acts = [mod for mod in c.modules() if isinstance(mod, QuantizedActivation)]
    assert len(acts) == 2
    for a in acts:
        in_qp, out_qp = a.in_qparams[0], a.out_qparams
        codes = torch.from_numpy(in_qp.codes())
        x = in_qp.dequantize(codes.numpy())
        mish = x * np.tanh(np.log1p(np.exp(x)))  # independent formula
        expected = np.clip(np.rint(mish / out_qp.scale) + out_qp.zero_point, out_qp.qmin, out_qp.qmax)
        np.testing.assert_array_equal(a(codes).numpy(), expected)


@pytest.mark.parametrize("dtype", ["int8", "uint8"])
def test_uint8_and_int8_activation_formats(dtype):
    m = _model(nn.Hardswish)
    c = edgeact.convert(_calibrated(m, edgeact.QConfig(activation_dtype=dtype)))
    for mod in c.modules():
        if isinstance(mod, QuantizedActivation):
            assert mod.in_qparams[0].dtype == dtype and mod.out_qparams.dtype == dtype
    x = torch.randn(8, 1, 8, 8)
    assert (m(x) - c(x)).abs().max() < 0.25


def test_converted_model_survives_save_and_load():
    c = edgeact.convert(_calibrated(_model(nn.ReLU6)))
    buf = io.BytesIO()
    torch.save(c, buf)
    buf.seek(0)
    loaded = torch.load(buf, weights_only=False)
    x = torch.randn(8, 1, 8, 8)
    torch.testing.assert_close(loaded(x), c(x), rtol=0, atol=0)


def test_qat_reduces_the_loss_of_a_fake_quantized_model():
    torch.manual_seed(0)
    x = torch.randn(256, 1, 8, 8)
    target = (x.mean((1, 2, 3)) > 0).long()
    p = _calibrated(_model(nn.Hardswish), edgeact.quantize.QAT_QCONFIG)
    edgeact.start_qat(p)
    opt = torch.optim.Adam(p.parameters(), lr=1e-2)
    losses = []
    for _ in range(60):
        opt.zero_grad()
        loss = F.cross_entropy(p(x), target)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.75 * losses[0]
    edgeact.freeze(p)
    c = edgeact.convert(p)
    acc = (c(x).argmax(1) == target).float().mean()
    assert acc > 0.8


def test_unsupported_module_is_named_with_its_path_and_the_supported_list():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.body = nn.Sequential(nn.Linear(4, 4), nn.LayerNorm(4))

        def forward(self, x):
            return self.body(x)

    with pytest.raises(UnsupportedError, match=r"LayerNorm.*body\.1.*supports"):
        edgeact.prepare(Net())


def test_untraceable_model_gets_a_clear_error():
    class Net(nn.Module):
        def forward(self, x):
            return x if x.sum() > 0 else -x

    with pytest.raises(UnsupportedError, match="cannot be traced"):
        edgeact.prepare(Net())


def test_nan_weights_are_refused_by_name():
    m = _model()
    with torch.no_grad():
        m.dw.weight[0, 0, 0, 0] = float("nan")
    with pytest.raises(QuantizationError, match=r"dw\.weight.*NaN"):
        edgeact.prepare(m)


def test_zero_width_calibration_range_names_the_tensor():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 4)
            self.act = nn.ReLU()

        def forward(self, x):
            return self.act(self.fc(x))

    net = Net()
    with torch.no_grad():
        net.fc.weight.zero_()
        net.fc.bias.fill_(-1.0)  # ReLU output is always 0
    p = edgeact.prepare(net)
    with pytest.raises(QuantizationError, match=r"act.*zero-width"):
        edgeact.calibrate(p, torch.randn(16, 4), progress=False)


def test_nan_in_calibration_data_is_refused():
    p = edgeact.prepare(_model())
    x = torch.randn(4, 1, 8, 8)
    x[0, 0, 0, 0] = float("nan")
    with pytest.raises(QuantizationError, match="NaN"):
        edgeact.calibrate(p, x, progress=False)


def test_average_pool_feeding_another_op_keeps_its_input_parameters():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv, self.pool, self.fc = nn.Conv2d(1, 4, 3), nn.AvgPool2d(2), nn.Linear(4 * 3 * 3, 5)

        def forward(self, x):
            return self.fc(torch.flatten(self.pool(self.conv(x)), 1))

    torch.manual_seed(0)
    net = Net().eval()
    p = edgeact.prepare(net)
    edgeact.calibrate(p, torch.randn(32, 1, 8, 8), progress=False)
    c = edgeact.convert(p)
    pool = [m for m in c.modules() if type(m).__name__ == "QuantizedAvgPool2d"][0]
    assert pool.in_qparams[0] == pool.out_qparams
    x = torch.randn(8, 1, 8, 8)
    assert (net(x) - c(x)).abs().max() < 0.1


def test_edgeact_activation_modules_are_quantized_whole_not_traced_into():
    from edgeact.nn import HardMish, Swish

    net = nn.Sequential(nn.Linear(4, 8), HardMish(), nn.Linear(8, 8), Swish(beta=1.5), nn.Linear(8, 2))
    p = edgeact.prepare(net)
    names = sorted(m.activation_name for m in p.modules() if isinstance(m, QuantAct))
    assert names == ["hard_mish", "swish"]
    edgeact.calibrate(p, torch.randn(64, 4), progress=False)
    x = torch.randn(16, 4)
    assert (net(x) - edgeact.convert(p)(x)).abs().max() < 0.1


def test_a_module_called_twice_gets_one_integer_module_per_call():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1, self.conv2 = nn.Conv2d(1, 4, 3, padding=1), nn.Conv2d(4, 4, 3, padding=1)
            self.pool = nn.MaxPool2d(2)

        def forward(self, x):
            return self.pool(self.conv2(self.pool(self.conv1(x)))).flatten(1)

    torch.manual_seed(0)
    net = Net().eval()
    with torch.no_grad():
        net.conv2.weight.mul_(20)  # very different ranges at the two pooling calls
    p = edgeact.prepare(net)
    edgeact.calibrate(p, torch.randn(32, 1, 8, 8), progress=False)
    c = edgeact.convert(p)
    pools = [m for m in c.modules() if type(m).__name__ == "QuantizedMaxPool2d"]
    assert len(pools) == 2 and pools[0].in_qparams[0] != pools[1].in_qparams[0]
    x = torch.randn(4, 1, 8, 8)
    scale = max(p.in_qparams[0].scale for p in pools)
    assert (net(x) - c(x)).abs().max() < 4 * scale


def test_identity_activation_adds_no_requantization():
    """The linear activation keeps its input's parameters: no extra rounding step (and no bare DQ→Q
    pair in an ONNX file, which onnxruntime would fold into its neighbours)."""
    from edgeact.nn import Identity

    net = nn.Sequential(nn.Linear(4, 8), Identity(), nn.Linear(8, 2))
    p = edgeact.prepare(net)
    assert not [m for m in p.modules() if isinstance(m, QuantAct)]
    edgeact.calibrate(p, torch.randn(64, 4), progress=False)
    c = edgeact.convert(p)
    assert not [m for m in c.modules() if isinstance(m, QuantizedActivation)]
    x = torch.randn(8, 4)
    assert (net(x) - c(x)).abs().max() < 0.05


@pytest.mark.parametrize("fuse", [True, False])
def test_relu_after_conv_shares_its_parameters_when_fused(fuse):
    """conv → ReLU6: one range, observed after the activation, so the conv's requantization clamps and
    the runtimes fold the activation into the conv (TFLite's fused activation)."""
    net = _model(nn.ReLU6)
    c = edgeact.convert(_calibrated(net, edgeact.QConfig(fuse_relu=fuse)))
    conv = [m for m in c.modules() if isinstance(m, QuantizedConv2d)][0]
    act = [m for m in c.modules() if isinstance(m, QuantizedActivation)][0]
    assert (conv.out_qparams == act.in_qparams[0] == act.out_qparams) is fuse
    if fuse:
        in_qp = act.in_qparams[0]
        lo, hi = in_qp.zero_point, min(in_qp.qmax, in_qp.zero_point + round(6.0 / in_qp.scale))
        np.testing.assert_array_equal(act.table.numpy(), np.clip(in_qp.codes(), lo, hi))
    x = torch.randn(16, 1, 8, 8)
    assert (net(x) - c(x)).abs().max() < 0.25


def test_a_bias_that_cannot_be_int32_is_refused_by_layer_name():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc1, self.fc2 = nn.Linear(4, 4), nn.Linear(4, 2)

        def forward(self, x):
            return self.fc2(self.fc1(x))

    net = Net()
    with torch.no_grad():
        net.fc2.bias.fill_(1e6)
        net.fc2.weight.fill_(1e-6)
        net.fc1.weight.mul_(1e-4)
        net.fc1.bias.zero_()
    p = edgeact.prepare(net)
    edgeact.calibrate(p, torch.randn(16, 4), progress=False)
    with pytest.raises(QuantizationError, match=r"fc2.*does not fit int32"):
        edgeact.convert(p)
