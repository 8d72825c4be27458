"""A float32 .tflite of the same network as an edgeact int8 file — the input ai-edge-quantizer needs.

Rewrites edgeact's int8 file instead of converting the PyTorch model again (no litert-torch and its
~1.3 GB of dependencies): constant weights and biases are dequantized, every int8 activation tensor
becomes float32, QUANTIZE/DEQUANTIZE at the edges disappear, and each activation's ops (a GATHER table
or an int8 chain) are replaced by the float builtins a converter writes for it (HARD_SWISH; LOGISTIC →
MUL; ADD → RELU6 → MUL for the gate …). Weights are the int8 ones, dequantized: the float file computes
the converted model's network in float, which is what a float baseline for the int8 files should be.
"""
from __future__ import annotations

import json

import numpy as np
from ai_edge_litert import schema_py_generated as schema

_T = schema.TensorType
_OP = schema.BuiltinOperator


class _Graph:
    def __init__(self, data: bytes):
        self.m = schema.ModelT.InitFromPackedBuf(bytes(data), 0)
        self.g = self.m.subgraphs[0]

    def opname(self, op) -> str:
        code = self.m.operatorCodes[op.opcodeIndex]
        value = max(code.builtinCode, code.deprecatedBuiltinCode)
        return next(k for k, v in vars(_OP).items() if v == value and not k.startswith("_"))

    def opcode(self, name: str) -> int:
        value = getattr(_OP, name)
        for i, c in enumerate(self.m.operatorCodes):
            if max(c.builtinCode, c.deprecatedBuiltinCode) == value:
                return i
        c = schema.OperatorCodeT()
        c.builtinCode, c.deprecatedBuiltinCode, c.version = value, min(value, 127), 1
        self.m.operatorCodes.append(c)
        return len(self.m.operatorCodes) - 1

    def tensor(self, name: str, shape, data: np.ndarray | None = None) -> int:
        t = schema.TensorT()
        t.name, t.shape, t.type = name.encode(), list(shape), _T.FLOAT32
        buf = schema.BufferT()
        if data is not None:
            buf.data = np.frombuffer(np.ascontiguousarray(data, dtype=np.float32).tobytes(), dtype=np.uint8)
        self.m.buffers.append(buf)
        t.buffer = len(self.m.buffers) - 1
        self.g.tensors.append(t)
        return len(self.g.tensors) - 1

    def op(self, name: str, inputs, outputs, options_type=0, options=None):
        o = schema.OperatorT()
        o.opcodeIndex, o.inputs, o.outputs = self.opcode(name), list(inputs), list(outputs)
        o.builtinOptionsType, o.builtinOptions = options_type, options
        return o


def _dequantize_tensors(G: _Graph) -> None:
    for t in G.g.tensors:
        q = t.quantization
        if t.type not in (_T.INT8, _T.INT32) or q is None or q.scale is None or len(q.scale) == 0:
            continue
        buf = G.m.buffers[t.buffer]
        if buf.data is not None and len(buf.data):
            codes = np.frombuffer(bytes(bytearray(buf.data)), dtype=np.int8 if t.type == _T.INT8 else np.int32)
            codes = codes.reshape(t.shape if t.shape is not None and len(t.shape) else (-1,)).astype(np.float64)
            scale, zp = np.asarray(q.scale, np.float64), np.asarray(q.zeroPoint, np.float64)
            if scale.size > 1:
                shape = [1] * codes.ndim
                shape[q.quantizedDimension] = -1
                scale, zp = scale.reshape(shape), zp.reshape(shape)
            buf.data = np.frombuffer(((codes - zp) * scale).astype(np.float32).tobytes(), dtype=np.uint8)
        t.type, t.quantization = _T.FLOAT32, None


def _float_activation(G: _Graph, act, x: int, y: int, name: str, shape) -> list:
    """Float ops computing `act` from tensor x into tensor y, as a converter writes them."""
    def const(tag, value):
        return G.tensor(f"{name}/{tag}", [1], np.array([value], np.float32))

    def tmp(tag):
        return G.tensor(f"{name}/{tag}", shape)

    def add(a, b, out, fused=schema.ActivationFunctionType.NONE):
        opts = schema.AddOptionsT()
        opts.fusedActivationFunction = fused
        return G.op("ADD", [a, b], [out], schema.BuiltinOptions.AddOptions, opts)

    def mul(a, b, out):
        return G.op("MUL", [a, b], [out], schema.BuiltinOptions.MulOptions, schema.MulOptionsT())

    n = act.name
    if n in ("hard_swish", "relu", "relu6", "tanh", "elu"):
        return [G.op({"hard_swish": "HARD_SWISH", "relu": "RELU", "relu6": "RELU6", "tanh": "TANH",
                      "elu": "ELU"}[n], [x], [y])]
    if n == "sigmoid":
        return [G.op("LOGISTIC", [x], [y])]
    if n == "swish":
        s = tmp("sigmoid")
        return [G.op("LOGISTIC", [x], [s]), mul(x, s, y)]
    if n == "hard_sigmoid":
        a, b = float(act.params["alpha"]), float(act.params["beta"])
        t = tmp("relu6")
        return [add(x, const("offset", b / a), t, schema.ActivationFunctionType.RELU6), mul(t, const("scale", a), y)]
    if n == "hard_mish":  # x/2 · min(relu(x + 2), 2)
        t, u, v = tmp("relu"), tmp("min"), tmp("prod")
        return [add(x, const("two", 2.0), t, schema.ActivationFunctionType.RELU),
                G.op("MINIMUM", [t, const("cap", 2.0)], [u]), mul(x, u, v), mul(v, const("half", 0.5), y)]
    if n == "mish":  # x · tanh(log(1 + exp(x)))
        e, p, s, h = tmp("exp"), tmp("one_plus"), tmp("softplus"), tmp("tanh")
        return [G.op("EXP", [x], [e]), add(e, const("one", 1.0), p), G.op("LOG", [p], [s]),
                G.op("TANH", [s], [h]), mul(x, h, y)]
    if n == "leaky_relu":
        opts = schema.LeakyReluOptionsT()
        opts.alpha = float(act.params["negative_slope"])
        return [G.op("LEAKY_RELU", [x], [y], schema.BuiltinOptions.LeakyReluOptions, opts)]
    raise NotImplementedError(f"no float ops written for {n}")


def _drop_unused(G: _Graph) -> None:
    """Remove tensors no op reads or writes (the int8 lowerings' tables and indices): a tool that reads
    every tensor of the graph (ai-edge-quantizer's calibration) refuses tensors without data."""
    g = G.g
    used = sorted({i for op in g.operators for i in list(op.inputs) + list(op.outputs) if i >= 0}
                  | set(g.inputs) | set(g.outputs))
    new_index = {old: k for k, old in enumerate(used)}
    g.tensors = [g.tensors[i] for i in used]
    for op in g.operators:
        op.inputs = [new_index[i] if i >= 0 else i for i in op.inputs]
        op.outputs = [new_index[i] for i in op.outputs]
    g.inputs = [new_index[i] for i in g.inputs]
    g.outputs = [new_index[i] for i in g.outputs]
    for sig in G.m.signatureDefs or []:
        for tm in list(sig.inputs or []) + list(sig.outputs or []):
            tm.tensorIndex = new_index[tm.tensorIndex]


def float_tflite(int8_file: bytes, activations: dict) -> bytes:
    """The float32 twin of an edgeact int8 .tflite; `activations`: node name → BoundActivation (the
    converted model's QuantizedActivation.bound, by module name)."""
    G = _Graph(int8_file)
    g = G.g
    meta = next(json.loads(bytes(bytearray(G.m.buffers[md.buffer].data)))
                for md in G.m.metadata if md.name == b"edgeact")
    # activations fused into their conv (ReLU/ReLU6) keep the conv's fused activation, in float too
    activations = {k: v for k, v in activations.items() if not str(meta["lowerings"].get(k, "")).startswith("fused")}
    names = [t.name.decode() for t in g.tensors]
    _dequantize_tensors(G)
    alias: dict[int, int] = {}
    new_ops, done = [], set()
    for op in g.operators:
        kind = G.opname(op)
        ins = [alias.get(i, i) for i in op.inputs]
        out_names = [names[i] for i in op.outputs]
        owner = next((a for a in activations for n in out_names if n == a or n.startswith(a + "/")), None)
        if owner is not None:
            if owner in done:
                continue
            done.add(owner)
            y = names.index(owner)
            x = next(i for i in ins if i >= 0 and not names[i].startswith(owner + "/")
                     and not (G.m.buffers[g.tensors[i].buffer].data is not None
                              and len(G.m.buffers[g.tensors[i].buffer].data)))
            if activations[owner].name == "identity":
                alias[y] = x
                continue
            new_ops += _float_activation(G, activations[owner], x, y, owner, g.tensors[y].shape)
            continue
        if kind in ("QUANTIZE", "DEQUANTIZE"):
            alias[op.outputs[0]] = ins[0]
            continue
        op.inputs = ins
        new_ops.append(op)
    # an activation's chain may read its input after later ops were aliased: resolve every input
    for op in new_ops:
        op.inputs = [alias.get(i, i) for i in op.inputs]
    g.operators = new_ops
    g.inputs = [alias.get(i, i) for i in g.inputs]
    g.outputs = [alias.get(i, i) for i in g.outputs]
    for sig in G.m.signatureDefs or []:
        for tm in list(sig.inputs or []) + list(sig.outputs or []):
            tm.tensorIndex = alias.get(tm.tensorIndex, tm.tensorIndex)
    _drop_unused(G)
    G.m.metadata = None
    G.m.metadataBuffer = None
    builder = __import__("flatbuffers").Builder(1 << 20)
    builder.Finish(G.m.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())
