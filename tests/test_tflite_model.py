"""Converted models exported to .tflite and run by LiteRT: the int8 codes equal the converted model's
(backend="tflite") at every tensor, on 100 random inputs.

LiteRT's default configuration (the XNNPACK delegate) is what backend="tflite" reproduces: 0 codes
differ. Without the delegate (optimized builtin kernels) and with the reference kernels, the fixed-point
requantization of CONV_2D / FULLY_CONNECTED / ADD / MUL / MEAN rounds differently at near-ties: the
'tflite' arithmetic is a few codes off there (bounded below), and semantics 'tflite-builtin' /
'tflite-reference' reproduce those kernel sets exactly (tests/test_tflite_builtin.py).
"""
from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import edgeact
from edgeact.backend import get_backend
from edgeact.export.litert import interpreter as rt
from edgeact.activations import names
from edgeact.errors import ExportError, ModelFileError, UnsupportedError
from edgeact.export.litert.writer import METADATA_KEY, same_padding_matches, to_tflite
from edgeact.export.litert.run import run_tflite, tflite_metadata, verify_tflite
from edgeact.pwl import fit_pwl
import nets

INPUTS = 100
pytest.importorskip("edgeact.export.verify", reason="verify_tflite reports through edgeact.export.verify")


def SmallCNN():
    return nets.SmallCNN(nn.ReLU, in_channels=3, residual=True)


class EveryOp(nn.Module):
    """Strided conv with padding TFLite's SAME cannot express (PAD + VALID), padded max pooling,
    squeeze-excite (mean → linear → sigmoid → broadcast mul), concatenation of differently quantized
    branches, a flatten with spatial extent feeding a linear, and average pooling as a second output
    (prepare cannot yet feed an AvgPool2d's output to another op)."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, stride=2, padding=1)
        self.act = nn.Hardswish()
        self.pool = nn.MaxPool2d(3, stride=2, padding=1)
        self.se_fc = nn.Linear(8, 8)
        self.branch = nn.Conv2d(8, 4, 1)
        self.avg = nn.AvgPool2d(2)
        self.head = nn.Linear(12 * 4 * 4, 5)

    def forward(self, x):
        y = self.pool(self.act(self.stem(x)))  # 16×16 → 8×8 → 4×4
        s = torch.sigmoid(self.se_fc(y.mean((2, 3))))
        y = y * s.unsqueeze(-1).unsqueeze(-1)
        y = torch.cat([y, F.relu6(self.branch(y))], dim=1)
        return self.head(torch.flatten(y, 1)), self.avg(y)


def converted(model, shape, activations=None, seed=0):
    torch.manual_seed(seed)
    p = edgeact.prepare(nets.random_bn_statistics(model.eval()), activations=activations)
    edgeact.calibrate(p, torch.randn(64, *shape) * 1.5, progress=False)
    return edgeact.convert(p, backend="tflite")


def inputs(shape, seed=1):
    return torch.randn(INPUTS, *shape, generator=torch.Generator().manual_seed(seed)) * 1.5


def _activation_choices():
    out = [(n, n) for n in names()]
    out += [("gelu(tanh)", "gelu"), ("pwl fit(swish,8)", fit_pwl("swish", segments=8))]
    return out


CHOICES = _activation_choices()


def small_cnn_exported(label, choice, tmp_path):
    """The small CNN with one of CHOICES converted (semantics 'tflite') and exported: (model, path)."""
    torch.manual_seed(0)
    model = SmallCNN()
    if label == "gelu(tanh)":
        model.act1, model.act2 = nn.GELU(approximate="tanh"), nn.GELU(approximate="tanh")
        c = converted(model, (3, 8, 8), activations={"gelu": "keep"})
    else:
        c = converted(model, (3, 8, 8), activations={"relu": choice})
    path = tmp_path / "cnn.tflite"
    to_tflite(c, torch.zeros(1, 3, 8, 8), path)
    return c, path


@pytest.mark.parametrize("label,choice", CHOICES, ids=[c[0] for c in CHOICES])
def test_small_cnn_every_activation_equals_litert(label, choice, tmp_path):
    c, path = small_cnn_exported(label, choice, tmp_path)
    report = verify_tflite(path, c, inputs((3, 8, 8)))
    assert report.ok, str(report)
    # outputs and every intermediate (identity is no op, and ReLU/ReLU6 fuse into the conv: no tensor of their own)
    assert report.codes_compared > INPUTS * 10 and len(report.tensors) >= (7 if label in ("identity", "relu", "relu6") else 9)


def test_every_op_model_equals_litert(tmp_path):
    c = converted(EveryOp(), (3, 16, 16))
    path = tmp_path / "every.tflite"
    to_tflite(c, torch.zeros(1, 3, 16, 16), path)
    x = inputs((3, 16, 16))
    report = verify_tflite(path, c, x)
    assert report.ok, str(report)
    ops = set(rt.delegated_ops(rt.load(path.read_bytes(), "builtin")))
    assert {"PAD", "PADV2", "MAX_POOL_2D", "MEAN", "MUL", "CONCATENATION", "GATHER", "DEPTHWISE_CONV_2D",
            "FULLY_CONNECTED", "HARD_SWISH"} - {"HARD_SWISH"} <= ops  # hard_swish is a table (faster)


def test_int8_io_model_takes_and_gives_codes():
    c = converted(SmallCNN(), (3, 8, 8), activations={"relu": "mish"})
    data = to_tflite(c, torch.zeros(1, 3, 8, 8), io="int8")
    x = inputs((3, 8, 8))
    in_qp = next(m for m in c.modules() if type(m).__name__ == "Quantize").out_qparams
    out_qp = next(m for m in c.modules() if type(m).__name__ == "Dequantize").in_qparams[0]
    codes = get_backend("litert").arithmetic.quantize(x, in_qp).numpy().astype(np.int8).transpose(0, 2, 3, 1)
    got = rt.run(rt.load(data), [codes])[0].astype(np.int64)
    with torch.no_grad():
        expected = np.rint(c(x).numpy() / np.float32(out_qp.scale)).astype(np.int64) + out_qp.zero_point
    np.testing.assert_array_equal(got, expected)


def test_relu_fused_into_conv_when_exact(tmp_path):
    """conv → relu with equal parameters around the relu: one CONV_2D with a fused RELU, same codes."""
    class ConvRelu(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3, padding=1)
            self.relu = nn.ReLU()

        def forward(self, x):
            return self.relu(self.conv(x))

    torch.manual_seed(3)
    m = ConvRelu().eval()
    with torch.no_grad():
        m.conv.bias.fill_(5.0)  # conv output ≥ 0 on the calibration data: relu's range is the conv's
        m.conv.weight.mul_(0.1)
    p = edgeact.prepare(m)
    edgeact.calibrate(p, torch.rand(64, 3, 8, 8), progress=False)
    c = edgeact.convert(p, backend="tflite")
    act = next(mod for mod in c.modules() if type(mod).__name__ == "QuantizedActivation")
    assert act.in_qparams[0] == act.out_qparams
    path = tmp_path / "fused.tflite"
    data = to_tflite(c, torch.zeros(1, 3, 8, 8), path)
    ops = rt.delegated_ops(rt.load(data, "builtin"))
    assert ops == ["QUANTIZE", "CONV_2D", "DEQUANTIZE"]
    report = verify_tflite(path, c, torch.rand(INPUTS, 3, 8, 8) * 2 - 0.5)
    assert report.ok, str(report)


def test_without_xnnpack_only_near_ties_differ(tmp_path):
    """The fixed-point kernels (no delegate / reference) round some near-ties the other way: against the
    XNNPACK arithmetic of backend='tflite', a few codes off by 1–2 LSB per layer, never more (the
    matching semantics 'tflite-builtin' / 'tflite-reference' are exact: tests/test_tflite_builtin.py)."""
    c = converted(SmallCNN(), (3, 8, 8), activations={"relu": "hard_swish"})
    path = tmp_path / "cnn.tflite"
    to_tflite(c, torch.zeros(1, 3, 8, 8), path)
    for mode in ("builtin", "reference"):
        report = verify_tflite(path, c, inputs((3, 8, 8)), mode=mode, backend="tflite")
        assert 0 < report.mismatches < 0.05 * report.codes_compared, str(report)
        assert report.max_lsb <= 3, str(report)


def test_export_is_deterministic_atomic_and_carries_its_tensor_map(tmp_path):
    c = converted(SmallCNN(), (3, 8, 8), activations={"relu": "gelu"})
    a, b = tmp_path / "a.tflite", tmp_path / "b.tflite"
    to_tflite(c, torch.zeros(1, 3, 8, 8), a)
    to_tflite(c, torch.zeros(1, 3, 8, 8), b)
    assert a.read_bytes() == b.read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.tflite", "b.tflite"]  # no temp files left
    tensors = tflite_metadata(a)
    assert {"conv_q_int", "dw_q_int", "fc_q_int"} <= set(tensors)
    assert METADATA_KEY == "edgeact"


def test_unwritable_path_leaves_nothing(tmp_path):
    c = converted(SmallCNN(), (3, 8, 8))
    with pytest.raises(ExportError):
        to_tflite(c, torch.zeros(1, 3, 8, 8), "/proc/edgeact_test.tflite")
    with pytest.raises(ExportError, match="do not fit the model"):
        to_tflite(c, torch.zeros(1, 5, 8, 8))
    assert list(tmp_path.iterdir()) == []


def test_bad_models_are_refused_with_the_fix():
    with pytest.raises(UnsupportedError, match="converted model"):
        to_tflite(SmallCNN(), torch.zeros(1, 3, 8, 8))

    c = converted(SmallCNN(), (3, 8, 8))
    with pytest.raises(UnsupportedError, match="io must be"):
        to_tflite(c, torch.zeros(1, 3, 8, 8), io="uint8")


def test_backend_mismatch_warns():
    torch.manual_seed(0)
    p = edgeact.prepare(nets.random_bn_statistics(SmallCNN().eval()))
    edgeact.calibrate(p, torch.randn(32, 3, 8, 8), progress=False)
    c = edgeact.convert(p, backend="ideal")
    with pytest.warns(UserWarning, match="backend='litert'"):
        to_tflite(c, torch.zeros(1, 3, 8, 8))


def test_verify_reports_a_foreign_or_damaged_file(tmp_path):
    c = converted(SmallCNN(), (3, 8, 8))
    path = tmp_path / "m.tflite"
    data = to_tflite(c, torch.zeros(1, 3, 8, 8), path)
    path.write_bytes(data[: len(data) // 3])
    with pytest.raises(ModelFileError):
        verify_tflite(path, c, inputs((3, 8, 8)))
    with pytest.raises(ModelFileError, match="does not exist"):
        run_tflite(tmp_path / "absent.tflite", [], [])


@pytest.mark.parametrize("size,kernel,stride,pad,expected", [
    (8, 3, 1, 1, True), (8, 3, 2, 1, False), (7, 3, 2, 1, True), (8, 1, 1, 0, True), (8, 5, 1, 2, True),
    (8, 3, 1, 0, False), (9, 2, 2, 0, False)])
def test_same_padding_equivalence(size, kernel, stride, pad, expected):
    """Against PyTorch itself: SAME matches iff the padded conv reads exactly TFLite's windows."""
    assert same_padding_matches(size, kernel, stride, 1, pad) == expected
    x = torch.randn(1, 1, size, size)
    w = torch.randn(1, 1, kernel, kernel)
    torch_out = F.conv2d(x, w, stride=stride, padding=pad)
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    same = F.conv2d(F.pad(x, (total // 2, total - total // 2, total // 2, total - total // 2)), w, stride=stride)
    assert (torch_out.shape == same.shape and torch.allclose(torch_out, same)) == expected


def test_warnings_are_not_raised_for_tflite_semantics():
    c = converted(SmallCNN(), (3, 8, 8))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        to_tflite(c, torch.zeros(1, 3, 8, 8))


def test_per_channel_prelu_and_spatial_flatten(tmp_path):
    """nn.PReLU(channels) stays one native PRELU with a slope per channel; a flatten of 6×6 maps feeds
    the Linear through permuted weight columns (no TRANSPOSE at run time)."""
    class M(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 8, 3, padding=1)
            self.act = nn.PReLU(8)
            self.fc = nn.Linear(8 * 6 * 6, 4)
            with torch.no_grad():
                self.act.weight.copy_(torch.linspace(-0.5, 0.5, 8))

        def forward(self, x):
            return self.fc(torch.flatten(self.act(self.conv(x)), 1))

    c = converted(M(), (3, 6, 6))
    path = tmp_path / "prelu.tflite"
    data = to_tflite(c, torch.zeros(1, 3, 6, 6), path)
    assert rt.delegated_ops(rt.load(data, "builtin")) == [
        "QUANTIZE", "CONV_2D", "PRELU", "RESHAPE", "FULLY_CONNECTED", "DEQUANTIZE"]
    report = verify_tflite(path, c, inputs((3, 6, 6)))
    assert report.ok, str(report)
