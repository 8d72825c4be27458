"""A converted model (edgeact.convert) as a QDQ int8 ONNX graph that onnxruntime runs code for code.

Walks the converted torch.fx graph node by node; every integer tensor becomes a tensor of codes,
every op DequantizeLinear → float op → QuantizeLinear with the module's own frozen parameters
(nothing is re-derived), which ONNX Runtime fuses into its integer kernels (QLinearConv, QGemm,
QLinearSigmoid, …).

Codes travel as uint8 inside the graph, also for an int8 model (code + 128, zero point + 128:
the same real values). ORT on x86-64 does not fuse int8-activation Q/DQ convolutions into
QLinearConv by default and runs them in float, whose summation order nobody reproduces; with
uint8 it runs the exact integer kernel. Graph inputs and outputs keep the model's types.

Weights are written as uint8 with zero point 128 (int8 code + 128: the same real values), so that ORT
runs its U8U8 integer kernels. Its default u8s8 kernels on AVX2 and AVX-512BW without VNNI multiply with
VPMADDUBSW, which saturates pairs of u8·s8 products to int16; U8U8 widens to int16 before multiplying
and is exact on every x86-64 family and on aarch64 (tested under qemu-x86_64 -cpu Haswell / Nehalem).
weights='int8' writes s8 weights with zero point 0 instead (ORT's u8s8 kernels): the default for backend
'onnxruntime:x86-avx2', whose arithmetic models that saturation, for 'onnxruntime:x86-vnni', and for
'onnxruntime:aarch64', where ORT runs its symmetric conv kernels (they pair products in int16: exact for
edgeact's narrow weights, codes in [-127, 127]).

Average pooling becomes a depthwise conv with weights 1 of scale 1/count: ORT's QLinearAveragePool sums
dequantized floats (not a function of the integer window sum the converted model computes); the conv sums
integers and requantizes once, like the semantics says. The global mean is DQ → GlobalAveragePool → Q with
rank-0 parameters, which ORT fuses into QLinearGlobalAveragePool (an integer sum requantized once, the same
code on x86 and aarch64, and faster than the conv), or that conv where the kernel refuses the scales.
"""
from __future__ import annotations

import json

import numpy as np
import onnx
import torch.fx as fx

from edgeact.export.converted import checked_for_export, model_outputs, unexpected_node
from edgeact.errors import ExportError, UnsupportedError
from edgeact.handlers import Handlers
from edgeact.qparams import QuantParams
from edgeact.quantized import modules as Q
from edgeact.quantized.gather import QuantizedChannelGather, QuantizedUpsampleNearest
from edgeact.quantized.pad import QuantizedZeroPad2d
from edgeact.quantized.zero_insert import QuantizedDepthToSpace, QuantizedZeroInsert
from edgeact.export.onnxruntime.arithmetic import ARITHMETIC, average_weight_scale, global_mean_scale
from edgeact.export.onnxruntime.lowering import lower_activation
from edgeact.export.onnxruntime.graph import GraphBuilder, check, save_atomic

F32 = np.float32
IOS = ("float", "int8")
# Model metadata: converted-graph node name → [ONNX tensor of its codes, model dtype, shift (128: int8 as uint8)],
# so that verify() can compare every intermediate tensor, not only the outputs.
TENSOR_MAP_KEY = "edgeact.tensors"
BACKEND_KEY = "edgeact.backend"  # the backend the file was written for
WEIGHTS_KEY = "edgeact.weights"  # 'uint8' (U8U8 kernels) or 'int8' (u8s8 kernels)
WEIGHTS = ("uint8", "int8")
LOWERINGS_KEY = "edgeact.lowerings"  # activation node → the lowering convert decided


def inner(qp: QuantParams) -> QuantParams:
    """The parameters a tensor of codes has inside the graph: uint8 (int8 codes shifted by 128)."""
    if qp.dtype == "int8" and not qp.per_channel:
        return QuantParams(qp.scale, qp.zero_point + 128, "uint8")
    return qp


ONNX_OPS = Handlers("ONNX writer")


class _Exporter:
    def __init__(self, gm: fx.GraphModule, io: str, require_exact: bool, planned: bool, weights: str = "uint8",
                 arithmetic=ARITHMETIC):
        self.gm = gm
        self.arithmetic = arithmetic  # decides which Muls are written for QLinearMul
        self.modules = dict(gm.named_modules())
        self.g = GraphBuilder("edgeact")
        self.codes: dict[fx.Node, tuple[str, QuantParams]] = {}  # node → (onnx name of uint8 codes, model qp)
        self.values: dict[fx.Node, str] = {}  # float tensors (graph inputs, dequantized outputs)
        # planned: the model was converted for an onnxruntime backend, so each activation's lowering is
        # the one convert recorded; otherwise every activation is written as its (exact) table.
        self.io, self.require_exact, self.planned = io, require_exact, planned
        self.weights = weights
        self.used_lowerings: dict[str, str] = {}
        self.input_shapes: dict[fx.Node, list] = {}

    # ---- helpers -------------------------------------------------------------------------------
    def qconst(self, qp: QuantParams, fused: bool = False) -> tuple[str, str]:
        """Scale and zero point of a Q/DQ node. `fused`: rank 0, so that ORT fuses the op between its DQs and
        Q into its integer kernel (only for ops whose integer kernel the arithmetic models and that compute
        the same on every CPU: Mul → QLinearMul, GlobalAveragePool → QLinearGlobalAveragePool); otherwise shape
        [1], and ORT runs the op in float32."""
        q = inner(qp)
        return (self.g.constant(F32(q.scale), "scale", rank0=fused),
                self.g.constant(np.asarray(q.zero_point, q.np_dtype), "zero_point", rank0=fused))

    def dq(self, node: fx.Node, hint: str, fused: bool = False) -> str:
        name, qp = self.codes[node]
        return self.g.node("DequantizeLinear", [name, *self.qconst(qp, fused)], f"{hint}_dq")

    def q(self, x: str, qp: QuantParams, hint: str, fused: bool = False) -> str:
        return self.g.node("QuantizeLinear", [x, *self.qconst(qp, fused)], hint)

    def shape(self, node: fx.Node) -> tuple[int, ...]:
        meta = node.meta.get("tensor_meta")
        if meta is None and node.op == "call_module" and isinstance(self.modules.get(node.target), Q.Dequantize):
            return self.shape(node.args[0])  # convert() adds the output Dequantize after shape propagation
        if meta is None or not hasattr(meta, "shape"):
            raise ExportError(f"node {node.name!r} has no traced shape: convert the model with edgeact.convert "
                              "(it records shapes), not by hand")
        return tuple(int(d) for d in meta.shape)

    # ---- walk ----------------------------------------------------------------------------------
    def run(self, example_shapes: list[tuple[int, ...]]):
        placeholders = [n for n in self.gm.graph.nodes if n.op == "placeholder"]
        if len(placeholders) != len(example_shapes):
            raise ExportError(f"the model takes {len(placeholders)} input(s) but {len(example_shapes)} example "
                              "input(s) were given: pass one example tensor per model input")
        for node, shape in zip(placeholders, example_shapes):
            self.placeholder(node, shape)
        for node in self.gm.graph.nodes:
            if node.op == "placeholder":
                continue
            if node.op == "output":
                self.output(node)
            elif node.op == "call_module":
                self.module(node, self.modules[node.target])
            else:
                raise unexpected_node(node, "ONNX")
        return self.g

    def placeholder(self, node: fx.Node, shape):
        # int8 io: the input is created by the Quantize module that reads it (it knows the dtype).
        self.input_shapes[node] = ["batch", *shape[1:]]
        if self.io == "float":
            self.values[node] = self.g.add_input(node.name, "float32", self.input_shapes[node])

    def module(self, node: fx.Node, m):
        ONNX_OPS.require(m, f"node {node.name!r}")(self, node, m)

    # ---- ops -----------------------------------------------------------------------------------
    def _weights(self, m, hint):
        w_qp = m.weight_qparams
        if self.weights == "int8":  # ORT's u8s8 kernels (see the module docstring)
            w = m.weight_codes.numpy().astype(np.int8)
            if w.size and w.min() < -127:
                raise ExportError(
                    f"{hint!r} has weight code -128: int8 weights must lie in [-127, 127] (ORT's aarch64 "
                    "symmetric kernels add pairs of products in int16, which -128 can overflow) — quantize the "
                    "weights narrow, as edgeact.prepare does, or export with weights='uint8'")
            zeros = np.zeros(w.shape[0], np.int8)
        else:
            w = (m.weight_codes.numpy().astype(np.int16) + 128).astype(np.uint8)
            zeros = np.full(w.shape[0], 128, np.uint8)
        wf = self.g.node("DequantizeLinear", [self.g.constant(w, f"{hint}_weight"),
                                              self.g.constant(w_qp.scale_array().astype(F32), f"{hint}_weight_scale"),
                                              self.g.constant(zeros, f"{hint}_weight_zero_point")],
                         f"{hint}_weight_dq", axis=0)
        b = m.bias_codes.numpy().astype(np.int32)
        bf = self.g.node("DequantizeLinear", [self.g.constant(b, f"{hint}_bias"),
                                              self.g.constant(np.asarray(m.bias_scale, F32), f"{hint}_bias_scale"),
                                              self.g.constant(np.zeros(b.shape[0], np.int32), f"{hint}_bias_zero_point")],
                         f"{hint}_bias_dq", axis=0)
        return wf, bf

    def pool(self, node, m, kernel, stride, keepdim: bool):
        hint = node.name
        shape = self.shape(node.args[0])
        channels, count = shape[1], int(np.prod(kernel))
        w = np.ones((channels, 1, *kernel), np.int8)
        wf = self.g.node("DequantizeLinear", [self.g.constant(w, f"{hint}_ones"),
                                              self.g.constant(average_weight_scale(count), f"{hint}_one_over_count"),
                                              self.g.constant(np.int8(0), "zero_int8")], f"{hint}_weight_dq")
        y = self.g.node("Conv", [self.dq(node.args[0], hint), wf], hint, kernel_shape=list(kernel),
                        strides=list(stride), group=channels)
        codes = self.q(y, m.out_qparams, f"{hint}_q")
        if not keepdim:
            codes = self.g.node("Reshape", [codes, self.g.constant(np.array([0, channels], np.int64), "shape")],
                                f"{hint}_squeeze")
        self.codes[node] = (codes, m.out_qparams)

    def _to_inner(self, x: str, qp: QuantParams, hint: str) -> str:
        if inner(qp) == qp:
            return x
        return self.q(self.g.node("DequantizeLinear", [x, self.g.constant(F32(qp.scale), "scale"),
                                                       self.g.constant(np.asarray(qp.zero_point, qp.np_dtype),
                                                                       "zero_point")], f"{hint}_in"), qp, hint)

    def _from_inner(self, name: str, qp: QuantParams, hint: str) -> str:
        if inner(qp) == qp:
            return name
        f = self.g.node("DequantizeLinear", [name, *self.qconst(qp)], f"{hint}_out")
        return self.g.node("QuantizeLinear", [f, self.g.constant(F32(qp.scale), "scale"),
                                              self.g.constant(np.asarray(qp.zero_point, qp.np_dtype), "zero_point")],
                           f"{hint}_codes")

    def output(self, node: fx.Node):
        outs = model_outputs(node, self.values)
        for i, o in enumerate(outs):
            qp = self.modules[o.target].in_qparams[0] if o.op == "call_module" else None
            dtype = "float32" if self.io == "float" else qp.dtype
            self.g.add_output(self.values[o], f"output{i}" if len(outs) > 1 else "output", dtype,
                              ["batch", *self.shape(o)[1:]])



# ---- one handler per integer op: (exporter, node, module) → the node's codes in the graph ------------

@ONNX_OPS.register(Q.Quantize)
def _quantize(ex, node, m):
    src = node.args[0]
    if ex.io == "float":
        ex.codes[node] = (ex.q(ex.values[src], m.out_qparams, node.name), m.out_qparams)
    else:
        x = ex.g.add_input(src.name, m.out_qparams.dtype, ex.input_shapes[src])
        ex.codes[node] = (ex._to_inner(x, m.out_qparams, node.name), m.out_qparams)


@ONNX_OPS.register(Q.Dequantize)
def _dequantize(ex, node, m):
    name, qp = ex.codes[node.args[0]]
    if ex.io == "float":
        ex.values[node] = ex.g.node("DequantizeLinear", [name, *ex.qconst(qp)], node.name)
    else:
        ex.values[node] = ex._from_inner(name, qp, node.name)


@ONNX_OPS.register(Q.QuantizedAdd, Q.QuantizedMul)
def _binary(ex, node, m):
    a, b = node.args
    # Mul and Add run as QLinearMul / QLinearAdd where their codes are the same on every CPU (the arithmetic
    # decides, and computes them); elsewhere in float32.
    if isinstance(m, Q.QuantizedMul):
        op, fused = "Mul", ex.arithmetic.mul_is_fused(*m.in_qparams, m.out_qparams)
    else:  # QLinearAdd's kernels differ on broadcast operands: only an add of two tensors of one shape
        op, fused = "Add", ex.shape(a) == ex.shape(b) and ex.arithmetic.add_is_fused(*m.in_qparams, m.out_qparams)
    y = ex.g.node(op, [ex.dq(a, f"{node.name}_a", fused), ex.dq(b, f"{node.name}_b", fused)], node.name)
    ex.codes[node] = (ex.q(y, m.out_qparams, f"{node.name}_q", fused), m.out_qparams)


@ONNX_OPS.register(Q.QuantizedConcat)
def _concat(ex, node, m):
    parts = [ex.dq(a, f"{node.name}_{i}") for i, a in enumerate(node.args)]
    y = ex.g.node("Concat", parts, node.name, axis=int(m.dim))
    ex.codes[node] = (ex.q(y, m.out_qparams, f"{node.name}_q"), m.out_qparams)


@ONNX_OPS.register(Q.QuantizedMean)
def _mean(ex, node, m):
    shape = ex.shape(node.args[0])
    if global_mean_scale(m.in_qparams[0], m.out_qparams, shape[2] * shape[3]) is None:
        return ex.pool(node, m, kernel=shape[2:], stride=(1, 1), keepdim=m.keepdim)
    # rank-0 Q/DQ parameters: ORT fuses the three into QLinearGlobalAveragePool (its integer kernel)
    y = ex.g.node("GlobalAveragePool", [ex.dq(node.args[0], node.name, fused=True)], node.name)
    codes = ex.q(y, m.out_qparams, f"{node.name}_q", fused=True)
    if not m.keepdim:
        codes = ex.g.node("Reshape", [codes, ex.g.constant(np.array([0, shape[1]], np.int64), "shape")],
                          f"{node.name}_squeeze")
    ex.codes[node] = (codes, m.out_qparams)


@ONNX_OPS.register(Q.QuantizedAvgPool2d)
def _avg_pool(ex, node, m):
    k = m.kernel_size if isinstance(m.kernel_size, tuple) else (m.kernel_size, m.kernel_size)
    s = m.stride if isinstance(m.stride, tuple) else (m.stride, m.stride)
    ex.pool(node, m, kernel=k, stride=s, keepdim=True)


@ONNX_OPS.register(Q.QuantizedReshape)
def _reshape(ex, node, m):
    name, qp = ex.codes[node.args[0]]
    shape = np.array([0, *m.shape[1:]], dtype=np.int64)
    ex.codes[node] = (ex.g.node("Reshape", [name, ex.g.constant(shape, "shape")], node.name), qp)


@ONNX_OPS.register(Q.QuantizedConv2d)
def _conv(ex, node, m: Q.QuantizedConv2d):
    hint = node.name
    if m.weight_qparams.dtype != "int8":
        raise UnsupportedError(f"{hint!r}: weights must be int8")
    wf, bf = ex._weights(m, hint)
    pad = m.padding if isinstance(m.padding, tuple) else (m.padding, m.padding)
    y = ex.g.node("Conv", [ex.dq(node.args[0], hint), wf, bf], hint,
                    kernel_shape=list(m.kernel_size), strides=list(m.stride), dilations=list(m.dilation),
                    pads=[pad[0], pad[1], pad[0], pad[1]], group=int(m.groups))
    ex.codes[node] = (ex.q(y, m.out_qparams, f"{hint}_q"), m.out_qparams)


@ONNX_OPS.register(Q.QuantizedLinear)
def _linear(ex, node, m: Q.QuantizedLinear):
    hint = node.name
    rank = len(ex.shape(node.args[0]))
    if rank != 2:
        raise UnsupportedError(f"cannot export {hint!r}: Linear on a rank-{rank} tensor (only (batch, features), "
                               "which ORT runs as QGemm); flatten the input first")
    wf, bf = ex._weights(m, hint)
    y = ex.g.node("Gemm", [ex.dq(node.args[0], hint), wf, bf], hint, transB=1)
    ex.codes[node] = (ex.q(y, m.out_qparams, f"{hint}_q"), m.out_qparams)


@ONNX_OPS.register(Q.QuantizedActivation)
def _activation(ex, node, m: Q.QuantizedActivation):
    name, in_qp = ex.codes[node.args[0]]
    out_qp = m.out_qparams
    table = m.table.numpy().astype(np.int64)
    shift = 128 if in_qp.dtype == "int8" else 0
    lowering = m.lowering if ex.planned else "table"
    if lowering == "none":
        lowering = "native"  # identity between equal parameters: DQ → Q, which ORT folds away
    y, used = lower_activation(ex.g, name, m.bound, inner(in_qp), inner(out_qp), table=table + shift,
                               lowering=lowering, rank=len(ex.shape(node)),
                               require_exact=ex.require_exact, where=node.name)
    ex.used_lowerings[node.name] = used
    ex.codes[node] = (y, out_qp)


@ONNX_OPS.register(Q.QuantizedMaxPool2d)
def _maxpool(ex, node, m: Q.QuantizedMaxPool2d):
    # On the codes themselves (ORT has uint8 MaxPool): max commutes with a monotonic quantization,
    # and the output keeps the input's parameters whatever module object the node calls.
    pair = lambda v: tuple(v) if isinstance(v, (tuple, list)) else (v, v)  # noqa: E731
    k, s, p, d = pair(m.kernel_size), pair(m.stride), pair(m.padding), pair(m.dilation)
    name, qp = ex.codes[node.args[0]]
    y = ex.g.node("MaxPool", [name], node.name, kernel_shape=list(k), strides=list(s),
                    pads=[p[0], p[1], p[0], p[1]], dilations=list(d), ceil_mode=int(m.ceil_mode))
    ex.codes[node] = (y, qp)


# Ops that only move codes (edgeact.quantize.data_movement): no arithmetic, exact on every CPU.

@ONNX_OPS.register(QuantizedChannelGather)
def _channel_gather(exporter, node, m: QuantizedChannelGather) -> None:
    name, qp = exporter.codes[node.args[0]]
    indices = exporter.g.constant(m.indices.numpy().astype(np.int64), f"{node.name}_indices")
    exporter.codes[node] = (exporter.g.node("Gather", [name, indices], node.name, axis=1), qp)


@ONNX_OPS.register(QuantizedZeroPad2d)
def _zero_pad(exporter, node, m) -> None:
    name, qp = exporter.codes[node.args[0]]
    left, right, top, bottom = m.padding
    pads = exporter.g.constant(np.array([0, 0, top, left, 0, 0, bottom, right], np.int64), f"{node.name}_pads")
    q = inner(qp)
    value = exporter.g.constant(np.asarray(q.zero_point, q.np_dtype), f"{node.name}_value")
    exporter.codes[node] = (exporter.g.node("Pad", [name, pads, value], node.name, mode="constant"), qp)


@ONNX_OPS.register(QuantizedZeroInsert)
def _zero_insert(exporter, node, m: QuantizedZeroInsert) -> None:
    """Pad 'edge' (border copies); nearest Resize by the stride and Where(mask of the original positions, codes,
    zero point) — ~4× faster in ORT than a Pad of unit axes of a 6-D reshape, which it copies element by element;
    then Pad (negative: crop) to the conv's frame: all on the uint8 codes."""
    g, hint = exporter.g, node.name
    name, qp = exporter.codes[node.args[0]]
    zp = exporter.g.constant(np.asarray(inner(qp).zero_point, inner(qp).np_dtype), f"{hint}_value")
    _, c, h, w = exporter.shape(node.args[0])
    if any(m.edge):
        eh, ew = m.edge
        name = g.node("Pad", [name, g.constant(np.array([0, 0, eh, ew, 0, 0, eh, ew], np.int64), f"{hint}_edge")],
                      f"{hint}_edge", mode="edge")
        h, w = h + 2 * eh, w + 2 * ew
    sh, sw = m.stride
    if (sh, sw) != (1, 1):
        scales = g.constant(np.array([1, 1, sh, sw], np.float32), f"{hint}_scales")
        x = g.node("Resize", [name, "", scales], f"{hint}_repeat", mode="nearest",
                   coordinate_transformation_mode="asymmetric", nearest_mode="floor")
        mask = np.zeros((1, 1, h * sh, w * sw), bool)
        mask[:, :, ::sh, ::sw] = True
        name = g.node("Where", [g.constant(mask, f"{hint}_mask"), x, zp], f"{hint}_spread")
    left, right, top, bottom = m.pads
    pads = np.array([0, 0, top, left, 0, 0, bottom - (sh - 1), right - (sw - 1)], np.int64)
    if pads.any():
        name = g.node("Pad", [name, g.constant(pads, f"{hint}_pads"), zp], hint, mode="constant")
    exporter.codes[node] = (name, qp)


@ONNX_OPS.register(QuantizedDepthToSpace)
def _depth_to_space(exporter, node, m: QuantizedDepthToSpace) -> None:
    """DepthToSpace (mode 'DCR') on the uint8 codes — for unequal blocks or groups Reshape → Transpose →
    Reshape — then a Slice for the crop."""
    g, hint = exporter.g, node.name
    name, qp = exporter.codes[node.args[0]]
    _, c, h, w = exporter.shape(node.args[0])
    (bh, bw), groups = m.block, m.groups
    out_c = c // (bh * bw)
    last = f"{hint}_interleave" if any(m.crop) else hint
    if bh == bw and groups == 1:
        y = g.node("DepthToSpace", [name], last, blocksize=bh, mode="DCR")
    else:
        og = out_c // groups
        y = g.node("Reshape", [name, g.constant(np.array([0, groups, bh, bw, og, h, w], np.int64), "shape")],
                   f"{hint}_phases")
        y = g.node("Transpose", [y], f"{hint}_transpose", perm=[0, 1, 4, 5, 2, 6, 3])
        y = g.node("Reshape", [y, g.constant(np.array([0, out_c, h * bh, w * bw], np.int64), "shape")], last)
    if any(m.crop):
        left, right, top, bottom = m.crop
        y = g.node("Slice", [y, g.constant(np.array([top, left], np.int64), f"{hint}_starts"),
                             g.constant(np.array([h * bh - bottom, w * bw - right], np.int64), f"{hint}_ends"),
                             g.constant(np.array([2, 3], np.int64), f"{hint}_axes")], hint)
    exporter.codes[node] = (y, qp)


@ONNX_OPS.register(QuantizedUpsampleNearest)
def _upsample_nearest(exporter, node, m) -> None:
    """Resize 'nearest' with 'asymmetric' coordinates and 'floor' rounding: source index floor(i/f), PyTorch's."""
    name, qp = exporter.codes[node.args[0]]
    fh, fw = m.factors
    scales = exporter.g.constant(np.array([1, 1, fh, fw], np.float32), f"{node.name}_scales")
    y = exporter.g.node("Resize", [name, "", scales], node.name, mode="nearest",
                        coordinate_transformation_mode="asymmetric", nearest_mode="floor")
    exporter.codes[node] = (y, qp)



def to_onnx(model: fx.GraphModule, example_inputs=None, path=None, *, io: str = "float",
            require_exact: bool = True, weights: str | None = None):
    """The QDQ int8 ONNX model of a converted model; written atomically to `path` if given.

    Each activation is written as convert() planned it for the model's backend (an onnxruntime one);
    a model converted for another backend gets every activation as its exact table, and a warning,
    since its other ops follow another runtime's arithmetic.
    example_inputs: a tensor or tuple of tensors (only their shapes are used; the batch size stays
    free); default: the example recorded by convert(). io: 'float' (float in, float out, like the
    converted model) or 'int8' (the model's codes in and out). weights: 'uint8' (zero point 128: ORT's
    U8U8 kernels, exact on every CPU) or 'int8' (zero point 0: its u8s8 kernels, which saturate pairs of
    products on AVX2); default: the backend's ('int8' for 'onnxruntime:aarch64' and the x86-vnni/-avx2
    backends, else 'uint8').
    """
    backend, planned, examples = checked_for_export(
        model, example_inputs, io, IOS, writer="to_onnx", fmt="onnx", runtime="ONNX Runtime",
        exact_backend="onnxruntime")
    shapes = [tuple(e.shape) for e in examples]
    weights = weights or getattr(backend, "weights", "uint8")
    if weights not in WEIGHTS:
        raise UnsupportedError(f"weights must be one of {WEIGHTS}, got {weights!r}")
    arithmetic = backend.arithmetic if planned else ARITHMETIC
    exporter = _Exporter(model, io, require_exact, planned, weights, arithmetic)
    g = exporter.run(shapes)
    lowered = ", ".join(f"{k}: {v}" for k, v in exporter.used_lowerings.items()) or "none"
    onnx_model = g.model(doc=f"edgeact QDQ int8 export (backend={backend.name}); activations: {lowered}")
    tensors = {n.name: [name, qp.dtype, 128 if inner(qp) != qp else 0] for n, (name, qp) in exporter.codes.items()}
    onnx.helper.set_model_props(onnx_model, {TENSOR_MAP_KEY: json.dumps(tensors, sort_keys=True),
                                             BACKEND_KEY: backend.name, WEIGHTS_KEY: weights,
                                             LOWERINGS_KEY: json.dumps(exporter.used_lowerings, sort_keys=True)})
    check(onnx_model)
    if path is not None:
        save_atomic(onnx_model.SerializeToString(), path)
    return onnx_model


__all__ = ["to_onnx", "inner", "TENSOR_MAP_KEY", "BACKEND_KEY", "LOWERINGS_KEY", "WEIGHTS_KEY"]
