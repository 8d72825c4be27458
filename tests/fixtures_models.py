"""Small hand-made int8 models for the target and measurement tests and the emulation benchmark.

Written here (not in the package) because the real exporters live in `export/`: these only need to be valid
int8 files that the runtimes run, with known scales, so that host and ARM outputs can be compared.
ONNX: QDQ graphs with onnx.helper. TFLite: the object API of the schema that ships with LiteRT.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

ONNX_OPSET = 20


def _save_atomic(data: bytes, path: Path) -> Path:
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)
    return path


# ------------------------------------------------------------------------------------------ tables


def hardswish(x: np.ndarray) -> np.ndarray:
    return x * np.clip(x + 3.0, 0.0, 6.0) / 6.0


def int8_table(fn, s_in: float, z_in: int, s_out: float, z_out: int) -> np.ndarray:
    """The 256-entry int8 table of `fn` (index = code + 128), rounding half to even like ONNX."""
    codes = np.arange(-128, 128, dtype=np.float32)
    y = fn((codes - z_in) * np.float32(s_in)).astype(np.float32)
    return np.clip(np.round(y / np.float32(s_out)) + z_out, -128, 127).astype(np.int8)


# -------------------------------------------------------------------------------------------- ONNX


def _onnx_model(nodes, inputs, outputs, inits, path):
    import onnx
    from onnx import helper

    graph = helper.make_graph(nodes, "edgeact_fixture", inputs, outputs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", ONNX_OPSET)],
                              producer_name="edgeact-tests")
    model.ir_version = 9
    onnx.checker.check_model(model)
    return _save_atomic(model.SerializeToString(), path)


def conv_weights(cin: int = 16, cout: int = 16, k: int = 3, seed: int = 0):
    """Per-tensor int8 weights, their scale, and an int32 bias (float weights = w_q * s_w)."""
    rng = np.random.default_rng(seed)
    w_q = rng.integers(-64, 64, size=(cout, cin, k, k), dtype=np.int8)
    s_w = 0.004
    b_q = rng.integers(-500, 500, size=(cout,), dtype=np.int32)
    return w_q, s_w, b_q


def conv_qdq_onnx(path, c: int = 16, hw: int = 56, s_in: float = 0.05, s_out: float = 0.05, seed: int = 0):
    """float x → Q → DQ → Conv 3×3 (int8 weights via DQ) → Relu → Q → int8 y (ORT fuses it to QLinearConv)."""
    from onnx import TensorProto, helper, numpy_helper

    w_q, s_w, b_q = conv_weights(c, c, 3, seed)
    inits = [
        numpy_helper.from_array(np.array(s_in, np.float32), "s_in"),
        numpy_helper.from_array(np.array(0, np.int8), "z_in"),
        numpy_helper.from_array(np.array(s_out, np.float32), "s_out"),
        numpy_helper.from_array(np.array(-128, np.int8), "z_out"),
        numpy_helper.from_array(w_q, "w_q"),
        numpy_helper.from_array(np.array(s_w, np.float32), "s_w"),
        numpy_helper.from_array(np.array(0, np.int8), "z_w"),
        numpy_helper.from_array(b_q, "b_q"),
        numpy_helper.from_array(np.array(s_in * s_w, np.float32), "s_b"),
        numpy_helper.from_array(np.array(0, np.int32), "z_b"),
    ]
    nodes = [
        helper.make_node("QuantizeLinear", ["x", "s_in", "z_in"], ["xq"]),
        helper.make_node("DequantizeLinear", ["xq", "s_in", "z_in"], ["xd"]),
        helper.make_node("DequantizeLinear", ["w_q", "s_w", "z_w"], ["w"]),
        helper.make_node("DequantizeLinear", ["b_q", "s_b", "z_b"], ["b"]),
        helper.make_node("Conv", ["xd", "w", "b"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["r"]),
        helper.make_node("QuantizeLinear", ["r", "s_out", "z_out"], ["y"]),
    ]
    return _onnx_model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, c, hw, hw])],
                       [helper.make_tensor_value_info("y", TensorProto.INT8, [1, c, hw, hw])], inits, path)


def conv_float_onnx(path, c: int = 16, hw: int = 56, s_in: float = 0.05, seed: int = 0):
    """The float reference of `conv_qdq_onnx`: same (dequantized) weights, no quantization."""
    from onnx import TensorProto, helper, numpy_helper

    w_q, s_w, b_q = conv_weights(c, c, 3, seed)
    inits = [numpy_helper.from_array(w_q.astype(np.float32) * np.float32(s_w), "w"),
             numpy_helper.from_array(b_q.astype(np.float32) * np.float32(s_in * s_w), "b")]
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c"], ["y"])]
    return _onnx_model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, c, hw, hw])],
                       [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, c, hw, hw])], inits, path)


def act_qdq_onnx(path, op: str = "HardSwish", shape=(1, 16, 56, 56), s_in: float = 0.05, z_in: int = 0,
                 s_out: float = 0.05, z_out: int = 0, dq_output: bool = False):
    """float x → Q → DQ → op → Q (→ DQ): one activation in the QDQ form the ONNX exporter writes."""
    from onnx import TensorProto, helper, numpy_helper

    inits = [numpy_helper.from_array(np.array(s_in, np.float32), "s_in"),
             numpy_helper.from_array(np.array(z_in, np.int8), "z_in"),
             numpy_helper.from_array(np.array(s_out, np.float32), "s_out"),
             numpy_helper.from_array(np.array(z_out, np.int8), "z_out")]
    nodes = [helper.make_node("QuantizeLinear", ["x", "s_in", "z_in"], ["xq"]),
             helper.make_node("DequantizeLinear", ["xq", "s_in", "z_in"], ["xd"]),
             helper.make_node(op, ["xd"], ["a"]),
             helper.make_node("QuantizeLinear", ["a", "s_out", "z_out"], ["yq" if dq_output else "y"])]
    out_type = TensorProto.INT8
    if dq_output:
        nodes.append(helper.make_node("DequantizeLinear", ["yq", "s_out", "z_out"], ["y"]))
        out_type = TensorProto.FLOAT
    return _onnx_model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(shape))],
                       [helper.make_tensor_value_info("y", out_type, list(shape))], inits, path)


def act_gather_onnx(path, table: np.ndarray, shape=(1, 16, 56, 56), s_in: float = 0.05, z_in: int = 0):
    """float x → Q → Cast(int32) → Add(128) → Gather(256-entry int8 table): the exact table lowering."""
    from onnx import TensorProto, helper, numpy_helper

    inits = [numpy_helper.from_array(np.array(s_in, np.float32), "s_in"),
             numpy_helper.from_array(np.array(z_in, np.int8), "z_in"),
             numpy_helper.from_array(np.array(128, np.int32), "off"),
             numpy_helper.from_array(np.asarray(table, np.int8), "table")]
    nodes = [helper.make_node("QuantizeLinear", ["x", "s_in", "z_in"], ["xq"]),
             helper.make_node("Cast", ["xq"], ["xi"], to=TensorProto.INT32),
             helper.make_node("Add", ["xi", "off"], ["idx"]),
             helper.make_node("Gather", ["table", "idx"], ["y"], axis=0)]
    return _onnx_model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(shape))],
                       [helper.make_tensor_value_info("y", TensorProto.INT8, list(shape))], inits, path)


def act_float_onnx(path, op: str = "HardSwish", shape=(1, 16, 56, 56)):
    from onnx import TensorProto, helper

    return _onnx_model([helper.make_node(op, ["x"], ["y"])],
                       [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(shape))],
                       [helper.make_tensor_value_info("y", TensorProto.FLOAT, list(shape))], [], path)


# ------------------------------------------------------------------------------------------ TFLite


class _TfliteBuilder:
    """Just enough of a TFLite writer for one-subgraph test models."""

    def __init__(self):
        from ai_edge_litert import schema_py_generated as S

        self.S = S
        self.buffers = [S.BufferT()]
        self.tensors = []
        self.ops = []
        self.opcodes: dict[int, int] = {}
        self.codes = []

    def tensor(self, name, shape, ttype, scale=None, zp=None, data: np.ndarray | None = None, qdim=0):
        S = self.S
        t = S.TensorT()
        t.name = name
        t.shape = list(shape)
        t.type = ttype
        t.buffer = 0
        if data is not None:
            b = S.BufferT()
            b.data = list(np.ascontiguousarray(data).tobytes())
            self.buffers.append(b)
            t.buffer = len(self.buffers) - 1
        if scale is not None:
            q = S.QuantizationParametersT()
            q.scale = list(np.atleast_1d(np.asarray(scale, np.float32)).tolist())
            q.zeroPoint = list(np.atleast_1d(np.asarray(zp, np.int64)).tolist())
            q.quantizedDimension = qdim
            t.quantization = q
        self.tensors.append(t)
        return len(self.tensors) - 1

    def op(self, code, inputs, outputs, opt_type=0, opt=None, version=1):
        S = self.S
        if code not in self.opcodes:
            oc = S.OperatorCodeT()
            oc.builtinCode = code
            oc.deprecatedBuiltinCode = min(code, 127)
            oc.version = version
            self.codes.append(oc)
            self.opcodes[code] = len(self.codes) - 1
        o = S.OperatorT()
        o.opcodeIndex = self.opcodes[code]
        o.inputs = list(inputs)
        o.outputs = list(outputs)
        o.builtinOptionsType = opt_type
        o.builtinOptions = opt
        self.ops.append(o)

    def save(self, path, inputs, outputs):
        import flatbuffers

        S = self.S
        sg = S.SubGraphT()
        sg.tensors, sg.inputs, sg.outputs, sg.operators, sg.name = self.tensors, inputs, outputs, self.ops, "main"
        m = S.ModelT()
        m.version = 3
        m.operatorCodes = self.codes
        m.subgraphs = [sg]
        m.buffers = self.buffers
        m.description = "edgeact test fixture"
        b = flatbuffers.Builder(1024)
        b.Finish(m.Pack(b), file_identifier=b"TFL3")
        return _save_atomic(bytes(b.Output()), path)


def act_tflite(path, op: str = "HARD_SWISH", shape=(1, 56, 56, 16), s_in: float = 0.05, z_in: int = 0,
               s_out: float = 0.05, z_out: int = 0):
    """int8 x → one int8 activation op (HARD_SWISH, RELU6, LOGISTIC, TANH, RELU) → int8 y."""
    B = _TfliteBuilder()
    S = B.S
    if op == "LOGISTIC":
        s_out, z_out = 1 / 256, -128
    elif op == "TANH":
        s_out, z_out = 1 / 128, 0
    x = B.tensor("x", shape, S.TensorType.INT8, s_in, z_in)
    y = B.tensor("y", shape, S.TensorType.INT8, s_out, z_out)
    B.op(getattr(S.BuiltinOperator, op), [x], [y], version=2 if op in ("RELU6", "LOGISTIC", "TANH") else 1)
    return B.save(path, [x], [y])


def act_gather_tflite(path, table: np.ndarray, shape=(1, 56, 56, 16), s_in: float = 0.05, z_in: int = 0,
                      s_out: float = 0.05, z_out: int = 0):
    """int8 x → CAST(int32) → ADD(+128) → GATHER(256-entry int8 table) → int8 y: the exact table lowering."""
    B = _TfliteBuilder()
    S = B.S
    x = B.tensor("x", shape, S.TensorType.INT8, s_in, z_in)
    xi = B.tensor("xi", shape, S.TensorType.INT32)
    off = B.tensor("off", [1], S.TensorType.INT32, data=np.array([128], np.int32))
    idx = B.tensor("idx", shape, S.TensorType.INT32)
    tab = B.tensor("table", [256], S.TensorType.INT8, s_out, z_out, data=np.asarray(table, np.int8))
    y = B.tensor("y", shape, S.TensorType.INT8, s_out, z_out)
    B.op(S.BuiltinOperator.CAST, [x], [xi])
    add = S.AddOptionsT()
    B.op(S.BuiltinOperator.ADD, [xi, off], [idx], S.BuiltinOptions.AddOptions, add)
    g = S.GatherOptionsT()
    g.axis = 0
    B.op(S.BuiltinOperator.GATHER, [tab, idx], [y], S.BuiltinOptions.GatherOptions, g)
    return B.save(path, [x], [y])


def conv_tflite(path, c: int = 16, hw: int = 56, s_in: float = 0.05, s_out: float = 0.05, seed: int = 0):
    """int8 x (NHWC) → CONV_2D 3×3 SAME with fused RELU (int8 weights, int32 bias) → int8 y."""
    B = _TfliteBuilder()
    S = B.S
    w_q, s_w, b_q = conv_weights(c, c, 3, seed)
    w_ohwi = np.ascontiguousarray(w_q.transpose(0, 2, 3, 1))
    x = B.tensor("x", [1, hw, hw, c], S.TensorType.INT8, s_in, 0)
    w = B.tensor("w", w_ohwi.shape, S.TensorType.INT8, [s_w] * c, [0] * c, data=w_ohwi, qdim=0)
    b = B.tensor("b", [c], S.TensorType.INT32, [s_in * s_w] * c, [0] * c, data=b_q)
    y = B.tensor("y", [1, hw, hw, c], S.TensorType.INT8, s_out, -128)
    opt = S.Conv2DOptionsT()
    opt.padding = S.Padding.SAME
    opt.strideW = opt.strideH = 1
    opt.dilationWFactor = opt.dilationHFactor = 1
    opt.fusedActivationFunction = S.ActivationFunctionType.RELU
    B.op(S.BuiltinOperator.CONV_2D, [x, w, b], [y], S.BuiltinOptions.Conv2DOptions, opt, version=3)
    return B.save(path, [x], [y])


def float_act_tflite(path, op: str = "HARD_SWISH", shape=(1, 56, 56, 16)):
    """A float TFLite model (a reference for `check`)."""
    B = _TfliteBuilder()
    S = B.S
    x = B.tensor("x", shape, S.TensorType.FLOAT32)
    y = B.tensor("y", shape, S.TensorType.FLOAT32)
    B.op(getattr(S.BuiltinOperator, op), [x], [y])
    return B.save(path, [x], [y])


def sample_input(shape, seed: int = 0, scale: float = 2.0) -> np.ndarray:
    """Float data spanning the int8 range of s_in = 0.05 (about ±6.4) including the saturating ends."""
    rng = np.random.default_rng(seed)
    return (rng.standard_normal(shape) * scale).astype(np.float32)


def make_all(dirpath) -> dict[str, Path]:
    """Every fixture model in `dirpath`, by name (for tests and the emulation benchmark)."""
    d = Path(dirpath)
    d.mkdir(parents=True, exist_ok=True)
    table = int8_table(hardswish, 0.05, 0, 0.05, 0)
    return {
        "conv_qdq.onnx": conv_qdq_onnx(d / "conv_qdq.onnx"),
        "conv_float.onnx": conv_float_onnx(d / "conv_float.onnx"),
        "hardswish_qdq.onnx": act_qdq_onnx(d / "hardswish_qdq.onnx"),
        "hardswish_gather.onnx": act_gather_onnx(d / "hardswish_gather.onnx", table),
        "hardswish_float.onnx": act_float_onnx(d / "hardswish_float.onnx"),
        "conv_int8.tflite": conv_tflite(d / "conv_int8.tflite"),
        "hardswish_int8.tflite": act_tflite(d / "hardswish_int8.tflite", "HARD_SWISH"),
        "hardswish_gather.tflite": act_gather_tflite(d / "hardswish_gather.tflite", table),
        "hardswish_float.tflite": float_act_tflite(d / "hardswish_float.tflite"),
    }
