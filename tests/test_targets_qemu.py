"""ARM under QEMU user-mode: same int8 outputs as the host, deterministic instruction counts, armv7 LiteRT.

Real QEMU, real ARM roots (built once per session into the cache), real runtimes: no mocks.
"""
from __future__ import annotations

import numpy as np
import pytest

import fixtures_models as F
from edgeact.errors import TargetError
from edgeact.targets import get_target, list_targets
from edgeact.targets import sysroot


def _same(a, b):
    return len(a.outputs) == len(b.outputs) and all(np.array_equal(x, y) for x, y in zip(a.outputs, b.outputs))


def test_onnx_model_on_qemu_aarch64_equals_host(aarch64_root, target_models):
    x = F.sample_input((1, 16, 56, 56), seed=1)
    model = target_models["hardswish_qdq.onnx"]
    host = get_target("host").run(model, {"x": x})
    arm = get_target("qemu-aarch64").run(model, {"x": x}, runs=2)
    assert arm.machine == "aarch64" and arm.runtime == host.runtime
    assert arm.outputs[0].dtype == np.int8
    assert _same(host, arm)
    assert arm.insn_counts and len(arm.insn_counts) == 2 and min(arm.insn_counts) > 10_000


def test_tflite_model_on_qemu_aarch64_equals_host(aarch64_root, target_models):
    x = F.sample_input((1, 56, 56, 16), seed=2)  # float data, quantized by the runner with the input's qparams
    model = target_models["conv_int8.tflite"]
    host = get_target("host").run(model, x)
    arm = get_target("qemu-aarch64:cortex-a53").run(model, x)
    assert arm.cpu == "cortex-a53" and arm.runtime.startswith("ai-edge-litert")
    assert _same(host, arm)


def test_instruction_counts_identical_across_runs(aarch64_root, target_models):
    """The contract: the same model, CPU and inputs give the same count in every process."""
    x = F.sample_input((1, 56, 56, 16), seed=3)
    model = target_models["hardswish_gather.tflite"]
    t = get_target("qemu-aarch64", cpu="cortex-a72")
    first = t.run(model, x, warmup=1, runs=2)
    second = t.run(model, x, warmup=1, runs=2)
    assert first.insn_counts == second.insn_counts
    assert all(c > 0 for c in first.insn_counts)


def test_armv7_litert_equals_host(armv7_root, target_models):
    x = F.sample_input((1, 56, 56, 16), seed=4)
    model = target_models["hardswish_gather.tflite"]
    host = get_target("host").run(model, x)
    arm = get_target("qemu-armv7").run(model, x)
    assert arm.machine.startswith("armv7") and arm.runtime.startswith("tflite-runtime")
    assert _same(host, arm)
    assert arm.insn_counts and arm.insn_counts[0] > 0


def test_armv7_has_no_onnxruntime_and_says_why(armv7_root, target_models):
    t = get_target("qemu-armv7")
    assert t.backends() == ("litert",)
    with pytest.raises(TargetError, match="no onnxruntime backend.*tflite-runtime"):
        t.run(target_models["hardswish_qdq.onnx"], F.sample_input((1, 16, 56, 56)))


def test_setup_is_idempotent(aarch64_root):
    report = sysroot.setup("aarch64", progress=False)
    assert {"debs", "unpack", "wheels", "site", "compile", "views", "verify"} <= set(report.skipped)
    assert report.versions["machine"] == "aarch64" and "onnxruntime" in report.versions


def test_setup_resumes_from_the_first_missing_step(aarch64_root):
    (aarch64_root.stamps / "views").unlink()
    report = sysroot.setup("aarch64", progress=False)
    assert set(report.skipped) == {"debs", "unpack", "wheels", "site", "compile"}
    sysroot.check_root("aarch64")


def test_cpu_views_carry_their_own_cpuinfo(aarch64_root):
    for cpu in aarch64_root.spec.cpus:
        text = (aarch64_root.view(cpu) / "proc" / "cpuinfo").read_text()
        assert f"CPU part\t: {cpu.part}" in text
    with pytest.raises(TargetError, match="cortex-a53"):
        get_target("qemu-aarch64:cortex-x9")


def test_targets_list_names_each_arm_targets_kernel_family_and_backend(aarch64_root, armv7_root):
    details = {s.name: s.detail for s in list_targets()}
    assert "kernels: aarch64" in details["qemu-aarch64"] and "backend litert:aarch64" in details["qemu-aarch64"]
    assert "backend tflite-runtime:armv7" in details["qemu-armv7"]
