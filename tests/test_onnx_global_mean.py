"""The global mean as ONNX Runtime's QLinearGlobalAveragePool, code for code, on every CPU.

edgeact writes x.mean((2, 3)) as DQ → GlobalAveragePool → Q with rank-0 parameters, which ORT fuses into its
integer kernel. The reference is written here from the kernel's definition, not taken from edgeact:
the integer sum S of a channel, minus z_in·N, converted to float32, times the float32 scale
f32(s_in) / (f32(s_out) · f32(N)), rounded half to even, plus z_out, saturated. The parameters are searched so
that some sums round differently under the two other float32 expressions a runtime could use (the conv of ones
edgeact wrote before, s_in·f32(1/N)/s_out, and a float mean of dequantized values): a file that ran either, or
a model of either, fails. Real onnxruntime on this CPU, under qemu-x86_64 (Haswell, Nehalem) and qemu-aarch64.
"""
from __future__ import annotations

import platform

import numpy as np
import onnx
import pytest
import torch
import torch.fx as fx
from torch import nn

from edgeact.export import to_onnx
from edgeact.qparams import QuantParams
from edgeact.quantized import modules as Q
from edgeact.targets import get_target

F32 = np.float32
BACKEND = "onnxruntime"


def _codes(acc: np.ndarray, scale: F32, qo: QuantParams) -> np.ndarray:
    v = np.clip(acc.astype(F32) * F32(scale), F32(qo.qmin - qo.zero_point), F32(qo.qmax - qo.zero_point))
    return np.rint(v).astype(np.int64) + qo.zero_point


def kernel_reference(sums: np.ndarray, count: int, qi: QuantParams, qo: QuantParams) -> np.ndarray:
    return _codes(sums - count * qi.zero_point, F32(qi.scale) / (F32(qo.scale) * F32(count)), qo)


def other_roundings(sums, count, qi, qo) -> list[np.ndarray]:
    acc = sums - count * qi.zero_point
    conv = _codes(acc, (F32(qi.scale) * F32(1.0 / count)) / F32(qo.scale), qo)
    mean = (acc.astype(F32) * F32(qi.scale)) / F32(count)
    float_mean = np.rint(np.clip(mean / F32(qo.scale), qo.qmin - qo.zero_point, qo.qmax - qo.zero_point))
    return [conv, float_mean.astype(np.int64) + qo.zero_point]


def _search(dtype: str, count: int, seed: int = 0):
    """Parameters (scales in simple ratios, where float32 expressions round apart) and sums that tell the
    kernel's rounding from both others."""
    rng = np.random.default_rng(seed)
    lo, hi = QuantParams.qrange_of(dtype)
    for _ in range(2000):
        s_in = float(10 ** rng.uniform(-2.5, 0.0))
        qi = QuantParams(s_in, int(rng.integers(lo, hi + 1)), dtype)
        qo = QuantParams(s_in * float(rng.choice([1, 2, 0.5, 3, 1.5, 0.7, 0.3])), int(rng.integers(lo, hi + 1)), dtype)
        sums = np.arange(count * lo, count * hi + 1)
        ref = kernel_reference(sums, count, qi, qo)
        differ = np.ones(len(sums), bool)
        for other in other_roundings(sums, count, qi, qo):
            differ &= other != ref
        if differ.sum() >= 2:
            rest = sums[~differ][rng.permutation(int((~differ).sum()))[:62]]
            return qi, qo, np.concatenate([sums[differ][:2], rest])
    pytest.fail("no parameters found where the three roundings differ")


class _Leaves(fx.Tracer):  # noqa: D101
    def is_leaf_module(self, m, qualname):
        return isinstance(m, Q.QuantizedModule) or super().is_leaf_module(m, qualname)


class _Mean(nn.Module):
    def __init__(self, qi, qo, keepdim=True):
        super().__init__()
        self.q, self.out = Q.Quantize(qi, BACKEND), Q.Dequantize(qo, BACKEND)
        self.mean = Q.QuantizedMean(qi, qo, BACKEND, keepdim=keepdim)

    def forward(self, x):
        return self.out(self.mean(self.q(x)))


def _windows(sums: np.ndarray, h: int, w: int) -> np.ndarray:
    """One h×w channel per sum: the sum spread over the codes of the window."""
    count = h * w
    base = np.floor_divide(sums, count)
    windows = base[:, None] + (np.arange(count)[None, :] < (sums - base * count)[:, None])
    return windows.reshape(1, len(sums), h, w)


def _file(tmp_path, dtype: str, h: int = 3, w: int = 5, keepdim=True, seed=0):
    qi, qo, sums = _search(dtype, h * w, seed)
    root = _Mean(qi, qo, keepdim)
    gm = fx.GraphModule(root, _Leaves().trace(root))
    gm.edgeact_backend = BACKEND
    codes = _windows(sums, h, w)
    x = torch.from_numpy(((codes - qi.zero_point) * np.float64(F32(qi.scale))).astype(F32))
    path = tmp_path / f"mean_{dtype}.onnx"
    to_onnx(gm, (x,), path)
    expected = kernel_reference(sums, h * w, qi, qo)
    return path, gm, x, expected, qo


def _codes_of(y: np.ndarray, qo: QuantParams) -> np.ndarray:
    return np.rint(np.asarray(y, np.float64).reshape(-1) / F32(qo.scale)).astype(np.int64) + qo.zero_point


@pytest.mark.parametrize("dtype", ["int8", "uint8"])
def test_converted_model_and_file_compute_the_kernel(dtype, tmp_path):
    path, gm, x, expected, qo = _file(tmp_path, dtype, keepdim=dtype == "int8")
    ops = [n.op_type for n in onnx.load(str(path)).graph.node]
    assert "GlobalAveragePool" in ops and "Conv" not in ops
    with torch.no_grad():
        assert np.array_equal(_codes_of(gm(x).numpy(), qo), expected)
    y = get_target("host").run(path, [x.numpy()]).outputs[0]
    assert np.array_equal(_codes_of(y, qo), expected)


@pytest.mark.slow
@pytest.mark.parametrize("target", ["qemu-x86_64:haswell", "qemu-x86_64:nehalem", "qemu-aarch64"])
def test_the_kernel_on_emulated_cpus(target, tmp_path, qemu_user, request):
    if target.startswith("qemu-aarch64"):
        request.getfixturevalue("aarch64_root")
    elif platform.machine().lower() not in ("x86_64", "amd64"):
        pytest.skip("qemu-x86_64 runs this machine's own Python: it needs an x86-64 host")
    path, _, x, expected, qo = _file(tmp_path, "int8", h=7, w=7, seed=1)
    y = get_target(target).run(path, [x.numpy()]).outputs[0]
    assert np.array_equal(_codes_of(y, qo), expected)


def test_parameters_the_kernel_refuses_fall_back_to_a_conv(tmp_path):
    """ORT throws for a scale s_in / (s_out·N) ≥ 256: the writer exports the conv of ones, still exact."""
    qi, qo = QuantParams(0.5, 3, "int8"), QuantParams(0.5 / 300, -10, "int8")
    root = _Mean(qi, qo)
    gm = fx.GraphModule(root, _Leaves().trace(root))
    gm.edgeact_backend = BACKEND
    x = torch.from_numpy(((np.arange(-4, 4).reshape(1, 8, 1, 1) - 3) * 0.5).astype(F32))
    path = tmp_path / "refused.onnx"
    to_onnx(gm, (x,), path)
    ops = [n.op_type for n in onnx.load(str(path)).graph.node]
    assert "Conv" in ops and "GlobalAveragePool" not in ops
    y = get_target("host").run(path, [x.numpy()]).outputs[0]
    acc = np.arange(-4, 4) - qi.zero_point  # N = 1: the sum is the code
    exact = np.clip(np.rint(acc * 300.0), qo.qmin - qo.zero_point, qo.qmax - qo.zero_point) + qo.zero_point
    assert np.array_equal(_codes_of(y, qo), exact.astype(np.int64))
