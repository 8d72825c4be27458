"""Which QDQ patterns onnxruntime fuses into its integer kernels, by the shape of the scale/zero point.

Builds DQ → Add/Mul → Q three-node models (uint8 and int8, opset 17 and 21) with the scales and zero
points as scalars (shape []) or one-element tensors (shape [1], what edgeact's ONNX writer emits), lets
onnxruntime optimize them (session option optimized_model_filepath) and prints the optimized ops.
Measured with onnxruntime 1.32 (benchmarks/RESULTS-peers.md): only the scalar form becomes
QLinearAdd / QLinearMul.
Run: .venv/bin/python benchmarks/probe_ort_qdq_fusion.py
"""
from __future__ import annotations

import tempfile
from collections import Counter
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper


def model(op: str, opset: int, shape: list[int], dtype) -> onnx.ModelProto:
    zp = 128 if dtype == np.uint8 else 0
    def arr(v, t):
        return np.full(shape, v, t) if shape else np.array(v, t)
    inits = [numpy_helper.from_array(arr(0.02, np.float32), "s"), numpy_helper.from_array(arr(zp, dtype), "z"),
             numpy_helper.from_array(arr(0.03, np.float32), "so")]
    nodes = [helper.make_node("QuantizeLinear", ["xa", "s", "z"], ["qa"]),
             helper.make_node("QuantizeLinear", ["xb", "s", "z"], ["qb"]),
             helper.make_node("DequantizeLinear", ["qa", "s", "z"], ["da"]),
             helper.make_node("DequantizeLinear", ["qb", "s", "z"], ["db"]),
             helper.make_node(op, ["da", "db"], ["y"]),
             helper.make_node("QuantizeLinear", ["y", "so", "z"], ["qy"]),
             helper.make_node("DequantizeLinear", ["qy", "so", "z"], ["out"])]
    io = [helper.make_tensor_value_info(n, TensorProto.FLOAT, [1, 8, 4, 4]) for n in ("xa", "xb", "out")]
    g = helper.make_graph(nodes, "g", io[:2], io[2:], inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])


def optimized_ops(m: onnx.ModelProto, d: Path) -> Counter:
    src, dst = d / "m.onnx", d / "opt.onnx"
    onnx.save(m, str(src))
    so = ort.SessionOptions()
    so.optimized_model_filepath, so.log_severity_level = str(dst), 3
    ort.InferenceSession(str(src), so, providers=["CPUExecutionProvider"])
    return Counter(n.op_type for n in onnx.load(str(dst)).graph.node)


def main() -> int:
    print(f"onnxruntime {ort.__version__}\n\n| op | opset | scale shape | type | optimized graph |\n|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for op in ("Add", "Mul"):
            for opset in (17, 21):
                for shape in ([], [1]):
                    for dtype in (np.uint8, np.int8):
                        ops = optimized_ops(model(op, opset, shape, dtype), Path(tmp))
                        print(f"| {op} | {opset} | {shape} | {np.dtype(dtype).name} | "
                              + ", ".join(f"{k} ×{v}" for k, v in sorted(ops.items())) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
