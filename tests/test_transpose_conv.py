"""ConvTranspose1d/2d and bilinear upsampling: zero insertion on codes + a plain conv, exact in both runtimes.

References are independent of the code under test: torch's own ConvTranspose / F.interpolate for the float
function, onnxruntime and LiteRT (and QEMU) for the integer files.
"""
from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import edgeact
from arm_check import assert_aarch64_equals_converted
from edgeact.errors import UnsupportedError
from edgeact.export import to_onnx, to_tflite, verify
from edgeact.quantized.zero_insert import QuantizedDepthToSpace, QuantizedZeroInsert

CALIBRATION, SAMPLES = 16, 4


pytestmark = pytest.mark.usefixtures("one_thread")


def _x(shape, n, seed, scale=1.0):
    return torch.randn(n, *shape, generator=torch.Generator().manual_seed(seed)) * scale


def _random_bn(model):
    """BatchNorm statistics that are not the identity, so folding them is tested."""
    g = torch.Generator().manual_seed(5)
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.2)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.bias.data.copy_(torch.randn(m.num_features, generator=g) * 0.1)
    return model.eval()


def _output_scale(converted):
    last = [n.target for n in converted.graph.nodes if n.op == "call_module"][-1]
    return converted.get_submodule(last).in_qparams[0].scale


def both_runtimes(model, shape, tmp_path, backends=("onnxruntime", "litert")):
    """prepare → calibrate → convert → write → verify for each backend: 0 codes differ at every tensor."""
    p = edgeact.prepare(model)
    with torch.no_grad():  # before calibration nothing is fake-quantized: the rewrite is torch's float function
        x0 = _x(shape, 2, 3)
        torch.testing.assert_close(p(x0), model(x0), atol=1e-5, rtol=1e-5)
    edgeact.calibrate(p, _x(shape, CALIBRATION, 0), progress=False)
    x = _x(shape, SAMPLES, 1)
    converted = {}
    for backend in backends:
        write, ext = (to_onnx, "onnx") if backend.startswith("onnxruntime") else (to_tflite, "tflite")
        c = edgeact.convert(p, backend=backend)
        path = tmp_path / f"{backend.replace(':', '_')}.{ext}"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            write(c, path=path)
        report = verify(path, c, x)
        assert report.ok and report.codes_compared > 0 and len(report.tensors) > 1, str(report)
        with torch.no_grad():  # fake quant (what QAT trains) vs the integer model: within one output step
            assert (p(x) - c(x)).abs().max() <= 1.01 * _output_scale(c)
        converted[backend] = (c, path)
    return p, converted, x


class Deconv(nn.Module):
    """conv → ReLU → ConvTranspose2d → BatchNorm → activation."""

    def __init__(self, cin=4, cout=6, k=3, s=2, p=1, op=0, d=1, g=1, bias=True, act=nn.ReLU):
        super().__init__()
        self.conv = nn.Conv2d(3, cin, 3, padding=1)
        self.up = nn.ConvTranspose2d(cin, cout, k, s, p, op, g, bias, d)
        self.bn = nn.BatchNorm2d(cout)
        self.act = act()

    def forward(self, x):
        return self.act(self.bn(self.up(torch.relu(self.conv(x)))))


CASES = {  # name: Deconv kwargs
    "k2s2": dict(k=2, s=2, p=0),
    "k3s2p1op1": dict(k=3, s=2, p=1, op=1, act=nn.Hardswish),
    "k4s2p1_groups2": dict(cin=4, cout=6, k=4, s=2, p=1, g=2),
    "depthwise_k3s3_op2_dil2": dict(cin=6, cout=6, k=3, s=3, p=0, op=2, d=2, g=6),
    "k1s2p1_crop_nobias": dict(k=1, s=2, p=1, bias=False, act=nn.ReLU6),
    "k3s1p1": dict(k=3, s=1, p=1),
    "k3_s2x3_p1": dict(k=3, s=(2, 3), p=1, op=(1, 2)),
    "depthwise_k4s2p1": dict(cin=6, cout=6, k=4, s=2, p=1, g=6),
}


# a stride > 1 and dilation 1: one phase conv + depth-to-space; otherwise zero insertion + conv
SUBPIXEL = {"k2s2", "k3s2p1op1", "k1s2p1_crop_nobias", "k3_s2x3_p1", "k4s2p1_groups2", "depthwise_k4s2p1"}


@pytest.mark.parametrize("case", CASES)
def test_conv_transpose2d_is_exact_in_both_runtimes(case, tmp_path):
    torch.manual_seed(0)
    _, converted, _ = both_runtimes(_random_bn(Deconv(**CASES[case])), (3, 5, 7), tmp_path)
    for c, _ in converted.values():
        kinds = [type(m) for m in c.modules() if isinstance(m, (QuantizedZeroInsert, QuantizedDepthToSpace))]
        assert kinds == [QuantizedDepthToSpace if case in SUBPIXEL else QuantizedZeroInsert]


def test_phase_conv_and_zero_insertion_give_the_same_codes():
    """The two lowerings of one ConvTranspose2d sum the same nonzero products: equal codes (ideal arithmetic)."""
    from edgeact.quantize.prepared import PreparedConv2d
    from edgeact.quantize.transposed import ZeroInsert2d

    torch.manual_seed(0)
    p = edgeact.prepare(_random_bn(Deconv(k=4, s=2, p=1, op=1)))
    edgeact.calibrate(p, _x((3, 5, 7), CALIBRATION, 0), progress=False)
    c = edgeact.convert(p, backend="ideal")
    seen = {}
    phase = next(m for m in c.modules() if isinstance(m, edgeact.quantized.QuantizedConv2d) and m.groups == 1
                 and m.weight_codes.shape[0] == 4 * 6)
    d2s = next(m for m in c.modules() if isinstance(m, QuantizedDepthToSpace))
    phase.register_forward_hook(lambda m, args, out: seen.__setitem__("in", args[0]))  # returns None: no
    d2s.register_forward_hook(lambda m, args, out: seen.__setitem__("out", out))  # change to the outputs
    with torch.no_grad():
        c(_x((3, 5, 7), SAMPLES, 1))
    insert = next(m for m in p.modules() if isinstance(m, ZeroInsert2d))
    conv = next(m for m in p.modules() if isinstance(m, PreparedConv2d) and m.conv.kernel_size == (4, 4))
    in_qp = phase.in_qparams[0]
    inserted = QuantizedZeroInsert(in_qp, "ideal", insert.stride, insert.pads)
    plain = edgeact.quantized.QuantizedConv2d(conv.conv, in_qp, phase.out_qparams, "ideal")
    with torch.no_grad():
        torch.testing.assert_close(plain(inserted(seen["in"])), seen["out"], rtol=0, atol=0)


class Deconv1d(nn.Module):
    """A 1-D decoder step (audio): Conv1d → ConvTranspose1d → BatchNorm1d → ReLU, and a functional one."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv1d(2, 4, 3, padding=1)
        self.up = nn.ConvTranspose1d(4, 6, 4, 2, 1)
        self.bn = nn.BatchNorm1d(6)
        self.w = nn.Parameter(torch.randn(6, 3, 3) * 0.3)
        self.b = nn.Parameter(torch.randn(3) * 0.1)

    def forward(self, x):
        y = torch.relu(self.bn(self.up(torch.relu(self.conv(x)))))
        return F.conv_transpose1d(y, self.w, self.b, stride=3, padding=1, output_padding=1)


def test_conv_transpose1d_and_the_functional_form_are_exact_in_both_runtimes(tmp_path):
    torch.manual_seed(0)
    _, converted, _ = both_runtimes(_random_bn(Deconv1d()), (2, 9), tmp_path)
    for c, _ in converted.values():  # phase conv + depth-to-space by (1, s), no zero insertion
        assert sum(isinstance(m, QuantizedDepthToSpace) for m in c.modules()) == 2
        assert not any(isinstance(m, QuantizedZeroInsert) for m in c.modules())


class Bilinear(nn.Module):
    def __init__(self, factor, functional=False):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 1)
        self.factor, self.functional = factor, functional
        self.up = nn.Upsample(scale_factor=factor, mode="bilinear")

    def forward(self, x):
        y = self.conv(x)
        if self.functional:
            return F.interpolate(y, scale_factor=self.factor, mode="bilinear", align_corners=False)
        return self.up(y)


@pytest.mark.parametrize("factor, functional", [(2, False), (3, True), ((2, 3), False)])
def test_bilinear_upsampling_is_exact_in_both_runtimes_and_torchs_bilinear_within_one_step(factor, functional,
                                                                                           tmp_path):
    torch.manual_seed(0)
    model = Bilinear(factor, functional).eval()
    _, converted, x = both_runtimes(model, (3, 5, 7), tmp_path)
    for c, _ in converted.values():
        # torch's bilinear on the integer model's own input codes (dequantized): within one output step
        names = [n.target for n in c.graph.nodes if n.op == "call_module"]
        conv_out = c.get_submodule(names[1])
        with torch.no_grad():
            q_in = conv_out(c.get_submodule(names[0])(x))
            qp = conv_out.out_qparams
            ref = F.interpolate((q_in.double() - qp.zero_point) * qp.scale, scale_factor=factor, mode="bilinear")
            got = c(x).double()
        assert got.shape == ref.shape
        assert (got - ref).abs().max() <= 1.01 * _output_scale(c)


class CornerAligned(nn.Module):
    """align_corners=True to (H − 1)·f + 1: output o samples o/f exactly, the same blend at every output."""

    def __init__(self, size):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 1)
        self.up = nn.UpsamplingBilinear2d(size=size)

    def forward(self, x):
        return self.up(self.conv(x))


def test_bilinear_with_aligned_corners_to_h_minus_1_times_f_plus_1_is_exact_in_both_runtimes(tmp_path):
    torch.manual_seed(0)
    _, converted, x = both_runtimes(CornerAligned((9, 19)).eval(), (3, 5, 7), tmp_path)  # ×2 and ×3
    for c, _ in converted.values():
        names = [n.target for n in c.graph.nodes if n.op == "call_module"]
        conv_out = c.get_submodule(names[1])
        with torch.no_grad():
            qp = conv_out.out_qparams
            ref = F.interpolate((conv_out(c.get_submodule(names[0])(x)).double() - qp.zero_point) * qp.scale,
                                size=(9, 19), mode="bilinear", align_corners=True)
            assert (c(x).double() - ref).abs().max() <= 1.01 * _output_scale(c)
    p = edgeact.prepare(CornerAligned((10, 14)).eval())  # 2H × 2W with aligned corners: no fixed blend
    edgeact.calibrate(p, _x((3, 5, 7), 4, 0), progress=False)
    with pytest.raises(UnsupportedError, match=r"from 5×7 to 10×14 with align_corners=True.*\(H − 1\)·f \+ 1"):
        edgeact.convert(p, backend="onnxruntime")


class BackToInputSize(nn.Module):
    """torchvision's segmentation heads: a strided encoder, then F.interpolate(size=input.shape[-2:])."""

    def __init__(self, stride):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, stride, stride)

    def forward(self, x):
        return F.interpolate(self.conv(x), size=x.shape[-2:], mode="bilinear", align_corners=False)


def test_bilinear_to_the_input_size_by_8_is_exact_in_both_runtimes_as_two_passes(tmp_path):
    """×8: the 2-D weights n/256 do not fit int8, so rows then columns (weights n/16), rounded once between —
    which the fake-quant model does too: torch's bilinear within one step of the input and one of the output."""
    torch.manual_seed(0)
    _, converted, x = both_runtimes(BackToInputSize(8).eval(), (3, 24, 16), tmp_path)
    c, _ = converted["onnxruntime"]
    # each pass a phase conv (8 outputs per channel) + depth-to-space: no multiplications by inserted zeros
    assert [m.block for m in c.modules() if isinstance(m, QuantizedDepthToSpace)] == [(8, 1), (1, 8)]
    assert all(m.stride == (1, 1) for m in c.modules() if isinstance(m, QuantizedZeroInsert))  # border copies
    names = [n.target for n in c.graph.nodes if n.op == "call_module"]
    conv_out = c.get_submodule(names[1])
    with torch.no_grad():
        qp = conv_out.out_qparams
        ref = F.interpolate((conv_out(c.get_submodule(names[0])(x)).double() - qp.zero_point) * qp.scale,
                            scale_factor=8, mode="bilinear")
        assert (c(x).double() - ref).abs().max() <= 1.01 * _output_scale(c) + 0.5 * qp.scale


class OutputSize(nn.Module):
    def __init__(self):
        super().__init__()
        self.up = nn.ConvTranspose2d(3, 4, 3, 2, 1)

    def forward(self, x):
        return self.up(x, output_size=[2 * x.shape[2], 2 * x.shape[3]])


def test_conv_transpose_called_with_output_size_is_refused_with_the_fix():
    with pytest.raises(UnsupportedError, match="output_size at module 'up'.*output_padding"):
        edgeact.prepare(OutputSize().eval())


def test_bilinear_to_a_size_that_is_no_whole_multiple_is_refused_at_convert():
    p = edgeact.prepare(BackToInputSize(2).eval())
    edgeact.calibrate(p, _x((3, 5, 7), 4, 0), progress=False)
    with pytest.raises(UnsupportedError, match=r"from 2×3 to 5×7.*whole multiple"):
        edgeact.convert(p, backend="litert")


@pytest.mark.parametrize("layer, match", [
    (nn.UpsamplingBilinear2d(scale_factor=2), "align_corners=True.*0 LSB"),
    (nn.Upsample(scale_factor=2.5, mode="bilinear"), "scale_factor=2.5.*whole"),
    (nn.Upsample(scale_factor=65, mode="bilinear"), r"×\(65, 65\).*int8"),
    (nn.Upsample(scale_factor=2, mode="bicubic"), "bicubic interpolation.*0 LSB"),
])
def test_resizes_no_single_exact_conv_computes_are_refused_with_the_reason(layer, match):
    model = nn.Sequential(nn.Conv2d(3, 4, 1), layer).eval()
    with pytest.raises(UnsupportedError, match=match):
        edgeact.prepare(model)


class TinySeg(nn.Module):
    """Segmentation-style: encoder convs (stride 2 twice), decoder ConvTranspose2d + BN + ReLU, a skip, bilinear
    ×2 upsampling, a 1×1 head."""

    def __init__(self, classes=3):
        super().__init__()
        self.enc1 = nn.Sequential(nn.Conv2d(3, 8, 3, 2, 1), nn.BatchNorm2d(8), nn.ReLU())
        self.enc2 = nn.Sequential(nn.Conv2d(8, 16, 3, 2, 1), nn.BatchNorm2d(16), nn.Hardswish())
        self.dec = nn.Sequential(nn.ConvTranspose2d(16, 8, 4, 2, 1), nn.BatchNorm2d(8), nn.ReLU())
        self.up = nn.Upsample(scale_factor=2, mode="bilinear")
        self.head = nn.Conv2d(8, classes, 1)

    def forward(self, x):
        e1 = self.enc1(x)
        return self.head(self.up(self.dec(self.enc2(e1)) + e1))


def test_segmentation_net_is_exact_in_both_runtimes_and_in_every_litert_kernel_set(tmp_path):
    from edgeact.export import verify_tflite

    torch.manual_seed(0)
    _, converted, x = both_runtimes(_random_bn(TinySeg()), (3, 12, 12), tmp_path)
    c, path = converted["litert"]
    for mode in ("builtin", "reference"):  # compared with backends 'litert:builtin' and 'litert:reference'
        report = verify_tflite(path, c, x, mode=mode)
        assert report.ok and report.codes_compared > 0, f"{mode}: {report}"
    fast = verify_tflite(path, c, x)
    assert fast.partitions == {"delegated": 1, "outside": []}, fast.partitions  # all inside XNNPACK


class SaturatingDeconv(nn.Module):
    """Weights near full range and positive inputs: pairs of u8·s8 products exceed int16 on AVX2."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 16, 3, padding=1)
        self.up = nn.ConvTranspose2d(16, 16, 3, 2, 1, 1)
        self.dw = nn.ConvTranspose2d(16, 16, 4, 2, 1, groups=16)  # a grouped phase conv (4 outputs per group)

    def forward(self, x):
        return torch.relu(self.dw(torch.relu(self.up(torch.relu(self.conv(x))))))


def _saturating_prepared():
    torch.manual_seed(0)
    m = SaturatingDeconv().eval()
    with torch.no_grad():
        for p in m.parameters():
            if p.dim() > 1:
                p.copy_(torch.sign(torch.randn_like(p)) * (0.8 + 0.2 * torch.rand_like(p)) / p[0].numel() ** 0.5)
    p = edgeact.prepare(m, qconfig=edgeact.QConfig(activation_dtype="int8"))
    edgeact.calibrate(p, _x((3, 6, 6), 32, 1), progress=False)
    return p


def _avx2_file(tmp_path):
    p = _saturating_prepared()
    x = _x((3, 6, 6), 8, 2, 1.5)
    models = {b: edgeact.convert(p, backend=b) for b in ("onnxruntime", "onnxruntime:x86-avx2")}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        to_onnx(models["onnxruntime:x86-avx2"], x[:1], tmp_path / "avx2.onnx")
    with torch.no_grad():
        expected = {b: m(x).numpy() for b, m in models.items()}
    return tmp_path / "avx2.onnx", x.numpy(), expected


def _differ(y, ref) -> int:
    return int(np.sum(np.asarray(y, np.float32) != np.asarray(ref, np.float32)))


def test_conv_transpose_for_onnxruntime_x86_avx2_on_this_cpu(tmp_path):
    """The zero-inserted input holds the zero point's code, which MLAS multiplies like any u8 value: the pair
    saturation model covers it. On this CPU the file gives the avx2 model's codes where it saturates, else the
    exact ones."""
    import platform

    from edgeact.targets import get_target
    from edgeact.targets.cpu import SATURATES_U8S8, host_family

    if platform.machine().lower() not in ("x86_64", "amd64"):
        pytest.skip("an x86-64 kernel family")
    path, x, expected = _avx2_file(tmp_path)
    assert _differ(expected["onnxruntime:x86-avx2"], expected["onnxruntime"]) > 20  # the two are told apart
    want = "onnxruntime:x86-avx2" if SATURATES_U8S8[host_family()] else "onnxruntime"
    assert _differ(get_target("host").run(path, [x]).outputs[0], expected[want]) == 0


@pytest.mark.slow
def test_conv_transpose_for_onnxruntime_x86_avx2_under_qemu_haswell(tmp_path, qemu_user):
    import platform

    from edgeact.targets import get_target

    if platform.machine().lower() not in ("x86_64", "amd64"):
        pytest.skip("qemu-x86_64 runs the host's own Python")
    path, x, expected = _avx2_file(tmp_path)
    got = get_target("qemu-x86_64:haswell").run(path, [x]).outputs[0]
    assert _differ(got, expected["onnxruntime:x86-avx2"]) == 0


@pytest.mark.slow
def test_segmentation_net_on_qemu_aarch64_equals_the_converted_model(aarch64_root, tmp_path):
    """LiteRT's and onnxruntime's own aarch64 builds under QEMU give the converted model's output codes."""
    torch.manual_seed(0)
    p = edgeact.prepare(_random_bn(TinySeg()))
    edgeact.calibrate(p, _x((3, 12, 12), CALIBRATION, 0), progress=False)
    assert_aarch64_equals_converted(p, _x((3, 12, 12), 2, 1), tmp_path, "seg")
