"""Exported files on several ARM CPU models: the same file, its backend's codes, on cortex-a53, a72 and a76.

QEMU's CPU model decides which kernels the runtimes dispatch to (dot-product instructions on a76, not on
a53/a72), so a file exact on one ARM CPU is checked on each. Real QEMU, real ARM wheels, no mocks.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import edgeact
from edgeact.targets import get_target
from nets import SmallCNN

CPUS = ("cortex-a53", "cortex-a72", "cortex-a76")
BACKENDS = {"portable.onnx": "onnxruntime", "arm.onnx": "onnxruntime:aarch64", "arm.tflite": "litert:aarch64"}


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A residual CNN with hard-swish (native HARD_SWISH on ARM where exact, XNNPACK's MUL/ADD), converted for
    each ARM-capable backend; the converted model's outputs on 8 inputs (TFLite: batch 1, NHWC)."""
    d = tmp_path_factory.mktemp("arm_cpus")
    torch.manual_seed(0)
    model = SmallCNN(nn.Hardswish, residual=True).eval()
    x = torch.randn(8, 3, 12, 12, generator=torch.Generator().manual_seed(3)) * 1.5
    expected = {}
    for name, backend in BACKENDS.items():
        p = edgeact.prepare(model, qconfig=edgeact.QConfig(backend=backend))
        edgeact.calibrate(p, torch.randn(64, 3, 12, 12, generator=torch.Generator().manual_seed(1)), progress=False)
        c = edgeact.convert(p)
        edgeact.get_backend(backend).write(c, d / name, x[:1])
        with torch.no_grad():
            expected[name] = c(x if name.endswith(".onnx") else x[:1]).numpy()
    return d, x.numpy(), expected


@pytest.mark.slow
@pytest.mark.parametrize("cpu", CPUS)
def test_files_on_arm_cpus_compute_their_backends_codes(cpu, files, aarch64_root):
    d, x, expected = files
    target = get_target(f"qemu-aarch64:{cpu}")
    for name in BACKENDS:
        feed = x if name.endswith(".onnx") else x[:1].transpose(0, 2, 3, 1)
        got = target.run(d / name, [np.ascontiguousarray(feed)]).outputs[0]
        differ = int(np.sum(np.asarray(got, np.float32) != np.asarray(expected[name], np.float32)))
        assert differ == 0, f"{name} ({BACKENDS[name]}) on {cpu}: {differ} of {got.size} outputs differ"
