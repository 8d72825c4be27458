"""The float32 building blocks of the onnxruntime semantics against independent references:
fused multiply-add against exact rational arithmetic, MLAS's kernels bit for bit against ORT's float ops."""
from __future__ import annotations

from fractions import Fraction

import numpy as np
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

from edgeact.export.onnxruntime.arithmetic import fma32, mlas_logistic, mlas_tanh, quantize_f32
from edgeact.qparams import QuantParams

F32 = np.float32


def _exact_fma(a, b, c) -> np.ndarray:
    """a·b + c with Fractions, rounded once to float32 (ties to even) by bisecting the float32 grid."""
    out = []
    for x, y, z in zip(a, b, c):
        v = Fraction(float(x)) * Fraction(float(y)) + Fraction(float(z))
        r = F32(float(v))  # float(v) rounds to float64 once: then step to the right float32 by hand
        cands = [np.nextafter(r, F32(-np.inf)), r, np.nextafter(r, F32(np.inf))]
        dist = [abs(Fraction(float(t)) - v) for t in cands]
        best = min(dist)
        ties = [t for t, d in zip(cands, dist) if d == best]
        out.append(ties[0] if len(ties) == 1 else [t for t in ties if int(np.array(t).view(np.int32)) % 2 == 0][0])
    return np.array(out, dtype=F32)


def test_fma32_rounds_once_on_random_inputs():
    rng = np.random.default_rng(0)
    a, b, c = ((rng.standard_normal(3000) * 10.0 ** rng.integers(-4, 4, 3000)).astype(F32) for _ in range(3))
    np.testing.assert_array_equal(fma32(a, b, c), _exact_fma(a, b, c))


def test_fma32_double_rounding_trap():
    """a·b is exactly halfway between two float32 and c is tiny: float64 rounding would lose c and
    round to even; one rounding of the exact sum goes the way c points."""
    a = np.full(4, 1 + 2.0**-12, F32)
    b = np.full(4, 1 + 2.0**-12, F32)  # a·b = 1 + 2^-11 + 2^-24: a float32 midpoint
    c = np.array([2.0**-80, -(2.0**-80), 0.0, 2.0**-60], F32)
    got = fma32(a, b, c)
    np.testing.assert_array_equal(got, _exact_fma(a, b, c))
    naive = (a.astype(np.float64) * b + c).astype(F32)
    assert not np.array_equal(got, naive)  # the trap is real


def _ort_float(op: str, x: np.ndarray, **attrs) -> np.ndarray:
    g = helper.make_graph([helper.make_node(op, ["x"], ["y"], **attrs)], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [x.size])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [x.size])])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 21)])
    m.ir_version = 10
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    return ort.InferenceSession(m.SerializeToString(), opts, providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]


@pytest.mark.parametrize("op,fn", [("Sigmoid", mlas_logistic), ("Tanh", mlas_tanh)])
def test_mlas_kernels_bit_exact_against_onnxruntime(op, fn):
    rng = np.random.default_rng(1)
    x = np.concatenate([rng.uniform(-20, 20, 50_001), rng.uniform(-1, 1, 50_000), rng.standard_normal(20_000) * 1e-3,
                        [0.0, -0.0, 9.0, -9.0, 18.0, -18.0]]).astype(F32)
    y = _ort_float(op, x)
    got = fn(x)
    assert np.count_nonzero(y.view(np.int32) != got.view(np.int32)) == 0


@pytest.mark.parametrize("dtype,zp", [("int8", -7), ("uint8", 131)])
def test_quantize_f32_equals_onnxruntime_quantize_linear(dtype, zp):
    """Values at and next to the rounding ties of a scale whose reciprocal is inexact."""
    qp = QuantParams(0.1, zp, dtype)
    k = np.arange(-300, 300, dtype=np.float64)
    ties = ((k + 0.5) * F32(qp.scale)).astype(F32)
    x = np.concatenate([ties, np.nextafter(ties, F32(np.inf)), np.nextafter(ties, F32(-np.inf)),
                        np.random.default_rng(2).uniform(-40, 40, 5000).astype(F32)]).astype(F32)
    g = helper.make_graph(
        [helper.make_node("QuantizeLinear", ["x", "s", "z"], ["y"])], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [x.size])],
        [helper.make_tensor_value_info("y", TensorProto.INT8 if dtype == "int8" else TensorProto.UINT8, [x.size])],
        [helper.make_tensor("s", TensorProto.FLOAT, [], [qp.scale]),
         helper.make_tensor("z", TensorProto.INT8 if dtype == "int8" else TensorProto.UINT8, [], [zp])])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 21)])
    m.ir_version = 10
    y = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    np.testing.assert_array_equal(quantize_f32(x, qp), y.astype(np.int64))
