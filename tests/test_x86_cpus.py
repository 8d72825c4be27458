"""Exported files on several x86-64 kernel families on one machine: natively and under qemu-x86_64 -cpu
Haswell (AVX2: onnxruntime's u8s8 kernels saturate pairs of products to int16) and Nehalem (SSE4.2).

Every file must give, code for code, what the converted model of its backend computes in PyTorch:
- the portable ONNX export (backend 'onnxruntime', U8U8 weights): exact on every family;
- the ONNX export for backend 'onnxruntime:x86-vnni' (the same arithmetic, s8 weights): exact on every
  family, with the session option verify and bench set on the families that saturate;
- the ONNX export for backend 'onnxruntime:x86-avx2' (s8 weights): the saturating model on AVX2 and
  AVX-512BW, and on a family that does not saturate (VNNI, SSE4, aarch64) the exact model — the test net
  is built so that thousands of pairs saturate, so the two differ;
- the TFLite export (backend 'litert', LiteRT + XNNPACK).
Real runtimes, real QEMU; no test assumes the host's CPU (its family is read from /proc/cpuinfo).
"""
from __future__ import annotations

import platform
import warnings

import numpy as np
import pytest
import torch
from torch import nn

import edgeact
from edgeact.export import to_onnx, to_tflite
from edgeact.targets import get_target
from edgeact.targets.compat import compatibility
from edgeact.targets.cpu import SATURATES_U8S8, host_family

IS_X86 = platform.machine().lower() in ("x86_64", "amd64")
pytestmark = pytest.mark.skipif(not IS_X86, reason="the x86-64 kernel families need an x86-64 host")
EMULATED = ["qemu-x86_64:haswell", "qemu-x86_64:nehalem"]


class SaturatingNet(nn.Module):
    """Each path MLAS takes for a u8s8 conv: im2col GEMM (3 input channels), the symmetric indirect conv
    (16→16 3×3, 16→24 1×1), a grouped conv (GEMM per group), a depthwise conv (exact) and QGemm (Linear).
    Weights of nearly full range and positive activations make pairs of products exceed int16. TFLite has
    no grouped int8 conv and a batch of 1: its file is written from the net with groups=1 and no head
    (1,024 output codes per input)."""

    def __init__(self, groups: int = 2, head: bool = True):
        super().__init__()
        self.head = head
        self.c1, self.a1 = nn.Conv2d(3, 16, 3, padding=1), nn.ReLU()
        self.c2, self.a2 = nn.Conv2d(16, 16, 3, padding=1), nn.Hardswish()
        self.c3, self.a3 = nn.Conv2d(16, 24, 1), nn.ReLU()
        self.c4 = nn.Conv2d(24, 16, 3, padding=1, groups=groups)
        self.dw, self.a4 = nn.Conv2d(16, 16, 3, padding=1, groups=16), nn.ReLU()
        self.fc = nn.Linear(16 * 8 * 8, 10)

    def forward(self, x):
        x = self.a1(self.c1(x))
        x = self.a2(self.c2(x))
        x = self.a3(self.c3(x))
        x = self.a4(self.dw(self.c4(x)))
        return self.fc(torch.flatten(x, 1)) if self.head else x


def _prepared(groups: int = 2, head: bool = True):
    torch.manual_seed(0)
    m = SaturatingNet(groups, head).eval()
    with torch.no_grad():
        for p in m.parameters():
            if p.dim() > 1:  # |w| in [0.8, 1] of the channel's maximum: most weight codes near ±127
                p.copy_(torch.sign(torch.randn_like(p)) * (0.8 + 0.2 * torch.rand_like(p)) / p[0].numel() ** 0.5)
    p = edgeact.prepare(m, qconfig=edgeact.QConfig(activation_dtype="int8"))
    edgeact.calibrate(p, torch.randn(64, 3, 8, 8, generator=torch.Generator().manual_seed(1)), progress=False)
    return p


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("x86")
    x = torch.randn(16, 3, 8, 8, generator=torch.Generator().manual_seed(2)) * 1.5
    p = _prepared()
    models = {sem: edgeact.convert(p, backend=sem) for sem in ("onnxruntime", "onnxruntime:x86-avx2",
                                                               "onnxruntime:x86-vnni")}
    models["tflite"] = edgeact.convert(_prepared(groups=1, head=False), backend="litert")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        to_onnx(models["onnxruntime"], x[:1], d / "portable.onnx")
        to_onnx(models["onnxruntime:x86-avx2"], x[:1], d / "avx2.onnx")
        # int8 weights for the exact arithmetic: ORT's u8s8 kernels, what other tools write
        to_onnx(models["onnxruntime"], x[:1], d / "u8s8.onnx", weights="int8")
        to_onnx(models["onnxruntime:x86-vnni"], x[:1], d / "vnni.onnx")  # int8 weights by default
        to_tflite(models["tflite"], x[:1], d / "model.tflite")
    with torch.no_grad():
        expected = {sem: m(x).numpy() for sem, m in models.items()}
    expected["tflite"] = expected["tflite"][:1].transpose(0, 2, 3, 1)  # batch 1, NHWC
    return d, x.numpy(), expected


def _run(target: str, path, x):
    feed = x[:1].transpose(0, 2, 3, 1) if str(path).endswith(".tflite") else x  # TFLite: batch 1, NHWC
    return get_target(target).run(path, [np.ascontiguousarray(feed)]).outputs[0]


def _differ(y, ref) -> int:
    return int(np.sum(np.asarray(y, np.float32) != np.asarray(ref, np.float32)))


def test_the_net_saturates_under_the_avx2_model(files):
    _, _, expected = files
    # Otherwise the avx2 checks below could not tell the two arithmetics apart.
    assert _differ(expected["onnxruntime:x86-avx2"], expected["onnxruntime"]) > 50


def _check_target(target: str, family: str, files):
    d, x, expected = files
    assert _differ(_run(target, d / "portable.onnx", x), expected["onnxruntime"]) == 0
    # the exact sums with int8 weights: as run by verify / bench, which set the session option on AVX2
    options = compatibility(d / "vnni.onnx", family).session_options
    assert bool(options) == SATURATES_U8S8[family]
    vnni = get_target(target).run(d / "vnni.onnx", [x], session_options=options).outputs[0]
    assert _differ(vnni, expected["onnxruntime:x86-vnni"]) == 0
    assert _differ(expected["onnxruntime:x86-vnni"], expected["onnxruntime"]) == 0  # one arithmetic
    want = "onnxruntime:x86-avx2" if SATURATES_U8S8[family] else "onnxruntime"
    assert _differ(_run(target, d / "avx2.onnx", x), expected[want]) == 0, \
        f"{target} ({family}) should compute the {want} arithmetic"
    assert _differ(_run(target, d / "model.tflite", x), expected["tflite"]) == 0


@pytest.mark.slow
@pytest.mark.parametrize("target,family", [("qemu-x86_64:haswell", "x86-avx2"), ("qemu-x86_64:nehalem", "x86-sse4")])
def test_files_on_emulated_x86_cpus(target, family, files, qemu_user):
    assert get_target(target).family == family
    _check_target(target, family, files)


def test_files_on_this_cpu(files):
    _check_target("host", host_family(), files)


@pytest.mark.parametrize("family", ["x86-vnni", "x86-avx512bw"])
def test_families_only_reachable_natively(family, files):
    here = host_family()
    if here != family:
        pytest.skip(f"{family} kernels can be tested only natively (QEMU's TCG emulates no AVX-512/VNNI) and "
                    f"this host runs {here}")
    _check_target("host", family, files)


def test_unknown_x86_cpu_model_is_a_clear_error():
    from edgeact.errors import TargetError

    with pytest.raises(TargetError, match="haswell, nehalem.*AVX-512/VNNI"):
        get_target("qemu-x86_64:icelake")


@pytest.mark.slow
def test_int8_weight_file_on_avx2_gets_the_precise_session_option(files, qemu_user):
    """A u8s8 file written for exact sums, on an AVX2 CPU: compat says so and sets session.x64quantprecision=1,
    with which ORT's codes are exact again; without it they are not (so the option is what fixes them)."""
    d, x, expected = files
    target = get_target("qemu-x86_64:haswell")
    c = compatibility(d / "u8s8.onnx", target.family)
    assert c.file.weights == "int8" and c.file.backend == "onnxruntime"
    assert c.session_options == {"session.x64quantprecision": "1"} and "x64quantprecision" in c.notice
    precise = target.run(d / "u8s8.onnx", [x], session_options=c.session_options).outputs[0]
    assert _differ(precise, expected["onnxruntime"]) == 0
    assert _differ(target.run(d / "u8s8.onnx", [x]).outputs[0], expected["onnxruntime"]) > 0


def test_compatibility_says_when_the_cpu_differs_from_the_file(files):
    d, _, _ = files
    for family in ("x86-vnni", "x86-sse4", "aarch64"):  # no saturation there: the avx2 file's model does not hold
        c = compatibility(d / "avx2.onnx", family)
        assert c.file.backend == "onnxruntime:x86-avx2" and "saturat" in c.notice and not c.session_options
        assert compatibility(d / "u8s8.onnx", family).notice is None
    for family in ("x86-avx2", "x86-avx512bw"):
        assert compatibility(d / "avx2.onnx", family).notice is None
    for family in ("x86-vnni", "x86-avx2", "x86-sse4", "aarch64"):  # U8U8: exact everywhere
        c = compatibility(d / "portable.onnx", family)
        assert c.file.weights == "uint8" and c.notice is None and not c.session_options
    assert "tflite-runtime 2.14" in compatibility(d / "model.tflite", "armv7").notice


def test_verify_reports_the_notice_on_this_cpu(files):
    from edgeact.export import verify

    d, x, _ = files
    p = _prepared()
    model = edgeact.convert(p, backend="onnxruntime:x86-avx2")
    report = verify(d / "avx2.onnx", model, torch.from_numpy(x), intermediate=False)
    assert (report.notice is None) == SATURATES_U8S8[host_family()]


def test_cli_verify_on_an_arm_target_is_a_clear_error(files, capsys):
    from edgeact.cli import main as cli
    from edgeact.export.converted import save_converted

    d, _, _ = files
    save_converted(edgeact.convert(_prepared(), backend="onnxruntime"), d / "portable.pt")
    assert cli(["verify", str(d / "portable.onnx"), "--model", str(d / "portable.pt"), "--target", "qemu-aarch64"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "qemu-x86_64" in err[0] and "edgeact check" in err[0]
