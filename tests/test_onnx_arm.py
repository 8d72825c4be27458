"""The ONNX exports on ARM: onnxruntime's aarch64 build (under qemu-aarch64) computes the same codes.

The onnxruntime semantics is read from ORT's x86-64 kernels; these tests run the exported files in
ORT's aarch64 wheel (real QEMU, real runtime, the targets' ARM root) and compare code for code —
including the case that made edgeact write HardSigmoid as separate Mul/Add/Clip ops.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from edgeact import QuantParams
from edgeact.activations import bind
from edgeact.export import to_onnx
from edgeact.export.onnxruntime.lowering import lower_activation
from edgeact.export.onnxruntime.graph import GraphBuilder, save_atomic
from edgeact.export.onnxruntime.arithmetic import ARITHMETIC, default_lowering, dequantize_f32, fma32, quantize_f32
from edgeact.targets import get_target
from test_onnx_activations import random_pairs
from test_onnx_model import OpsNet, SmallCNN, _converted, _float_model

F32 = np.float32
NATIVE = [bind("identity"), bind("relu"), bind("relu6"), bind("hard_tanh", min_val=-2.0, max_val=3.0),
          bind("leaky_relu", negative_slope=0.2), bind("prelu", weight=-0.3), bind("sigmoid"), bind("tanh"),
          bind("hard_sigmoid"), bind("hard_sigmoid", alpha=0.2, beta=0.5), bind("hard_swish")]
TIE = QuantParams(0.1, -28)  # in = out: hard-sigmoid of code −19 is 6.5 steps, exactly on a tie


def _run_arm(path, feeds):
    return get_target("qemu-aarch64").run(path, feeds).outputs


def test_every_native_activation_on_aarch64(aarch64_root, tmp_path):
    assert all(default_lowering(a) == "native" for a in NATIVE)
    g = GraphBuilder("arm")
    x = g.add_input("x", "int8", [1, 256])
    expected = []
    for a_i, act in enumerate(NATIVE):
        for k, (in_qp, out_qp) in enumerate([(TIE, TIE)] + random_pairs("int8", n=30, seed=a_i)):
            y, used = lower_activation(g, x, act, in_qp, out_qp, rank=2, lowering="native")
            assert used == "native"
            g.add_output(y, f"y{a_i}_{k}", "int8", [1, 256])
            expected.append(ARITHMETIC.native_table(act, in_qp, out_qp))
    path = tmp_path / "acts.onnx"
    save_atomic(g.model().SerializeToString(), path)
    got = np.stack([o.reshape(-1) for o in _run_arm(path, {"x": np.arange(-128, 128, dtype=np.int8)[None]})])
    np.testing.assert_array_equal(got.astype(np.int64), np.stack(expected))


def test_the_hardsigmoid_op_itself_fuses_multiply_add_on_aarch64(aarch64_root, tmp_path):
    """Why edgeact does not emit HardSigmoid: on aarch64 its α·x + β is one FMA (code −21 here), on x86-64
    and in edgeact's Mul/Add/Clip two roundings (code −22)."""
    from onnx import helper

    g = GraphBuilder("hs")
    x = g.add_input("x", "int8", [1, 256])
    xf = g.node("DequantizeLinear", [x, g.constant(F32(TIE.scale), "s"), g.constant(np.int8(TIE.zero_point), "z")])
    g.nodes.append(helper.make_node("HardSigmoid", [xf], ["hs"], alpha=1 / 6, beta=0.5))
    y = g.node("QuantizeLinear", ["hs", g.constant(F32(TIE.scale), "s"), g.constant(np.int8(TIE.zero_point), "z")])
    g.add_output(y, "y", "int8", [1, 256])
    path = tmp_path / "hs.onnx"
    save_atomic(g.model().SerializeToString(), path)
    arm = _run_arm(path, {"x": np.arange(-128, 128, dtype=np.int8)[None]})[0].reshape(-1).astype(np.int64)
    x32 = dequantize_f32(TIE.codes(), TIE)
    fused = quantize_f32(np.clip(fma32(x32, F32(1 / 6), F32(0.5)), F32(0), F32(1)), TIE)
    ours = ARITHMETIC.native_table(bind("hard_sigmoid"), TIE, TIE)  # the Mul/Add/Clip lowering
    np.testing.assert_array_equal(arm, fused)
    assert ours[109] == -22 and arm[109] == -21 and np.count_nonzero(ours != arm) == 1


@pytest.mark.parametrize("net,act,size", [(SmallCNN, nn.Hardswish, 12), (SmallCNN, nn.Tanh, 12), (OpsNet, nn.ReLU6, 16)],
                         ids=["small_cnn-hardswish", "small_cnn-tanh", "ops_net-relu6"])
def test_models_on_aarch64_equal_the_converted_model(aarch64_root, tmp_path, net, act, size):
    converted = _converted(_float_model(net, act), "int8", size=size)
    path = tmp_path / "m.onnx"
    to_onnx(converted, path=path)
    x = torch.randn(20, 3, size, size, generator=torch.Generator().manual_seed(5)) * 1.2
    y_arm = _run_arm(path, {"x": x.numpy()})[0]
    qp = converted.dequantize_fc_q_int.in_qparams[0]
    with torch.no_grad():
        y_model = converted(x).numpy()
    codes = lambda y: np.rint(np.asarray(y, F32) / F32(qp.scale)).astype(np.int64)  # noqa: E731
    np.testing.assert_array_equal(codes(y_arm), codes(y_model))
