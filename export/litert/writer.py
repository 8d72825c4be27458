"""A converted model (edgeact.convert) as a fully int8 .tflite that LiteRT runs code for code.

Walks the converted torch.fx graph node by node and writes each integer module as TFLite ops with
the module's own frozen parameters (nothing is re-derived): int8 tensors between ops, per-channel
int8 weights (CONV_2D OHWI with quantized_dimension 0, DEPTHWISE_CONV_2D 1HWC with 3,
FULLY_CONNECTED with 0), int32 biases, float32 or int8 graph inputs/outputs.

Layout: PyTorch is NCHW, TFLite NHWC. Weights are transposed at export, nothing is inserted at run
time: 4-D tensors are stored NHWC; a flatten feeding a Linear keeps NHWC order and the Linear's
weight columns are permuted instead (a TRANSPOSE is written only when something else reads the
flattened tensor). Graph inputs and outputs of rank 4 are NHWC (`run_tflite` transposes).

Average pooling becomes a DEPTHWISE_CONV_2D with weights 1 (XNNPACK runs it; the XNNPACK in LiteRT
2.3 has no int8 average pooling, so an AVERAGE_POOL_2D would leave the delegate) at the weight scale
`unit_weight_scale`, whose requantization the converted model's `average(op='avg_pool2d')` computes.
RELU/RELU6 after a conv or linear are fused into it when the fused clamp gives exactly the
activation's table.
"""
from __future__ import annotations

import json

import numpy as np
import torch
import torch.fx as fx
from ai_edge_litert import schema_py_generated as schema

from edgeact.errors import ExportError, UnsupportedError
from edgeact.export.litert.lowering import add_activation, add_table
from edgeact.export.litert.builder import ModelBuilder, TensorRef
from edgeact.fileio import atomic_write
from edgeact.fixedpoint import round_half_away
from edgeact.qparams import QuantParams
from edgeact.quantized import modules as Q
from edgeact.quantized.gather import QuantizedChannelGather, QuantizedUpsampleNearest
from edgeact.quantized.pad import QuantizedZeroPad2d
from edgeact.quantized.zero_insert import QuantizedDepthToSpace, QuantizedZeroInsert
from edgeact.export.converted import checked_for_export, model_outputs, unexpected_node
from edgeact.handlers import Handlers
from edgeact.export.litert.arithmetic import average_pool_weight_scale

IOS = ("float", "int8")
METADATA_KEY = "edgeact"  # JSON: tensor map node → [tensor name, dtype, 0] and tensor layouts
NCHW_TO_NHWC = (0, 2, 3, 1)
NHWC_AXIS = {0: 0, 1: 3, 2: 1, 3: 2}


def _pair(v) -> tuple[int, int]:
    return tuple(int(x) for x in v) if isinstance(v, (tuple, list)) else (int(v), int(v))


def same_padding_matches(size: int, kernel: int, stride: int, dilation: int, pad: int) -> bool:
    """Whether TFLite's SAME padding reads the same windows as PyTorch's symmetric `pad`."""
    k_eff = dilation * (kernel - 1) + 1
    out_torch = (size + 2 * pad - k_eff) // stride + 1
    out_same = -(-size // stride)
    total = max((out_same - 1) * stride + k_eff - size, 0)
    return out_same == out_torch and total // 2 == pad


def unit_weight_scale(in_qp: QuantParams, out_qp: QuantParams, count: int) -> np.float32:
    """The weight scale of the DEPTHWISE_CONV_2D of ones that average pooling becomes; the arithmetic's
    `average(op='avg_pool2d')` computes that conv's requantization at this scale, so it always exists
    (`edgeact.export.litert.arithmetic.average_pool_weight_scale`)."""
    return average_pool_weight_scale(in_qp, out_qp, count)


TFLITE_OPS = Handlers("TFLite writer")


class _Exporter:
    def __init__(self, gm: fx.GraphModule, io: str, planned: bool):
        # planned: the model was converted for a LiteRT backend, so each activation's lowering is the one
        # convert recorded; otherwise every activation is written as its (exact) table.
        self.gm, self.io, self.planned = gm, io, planned
        self.modules = dict(gm.named_modules())
        self.b = ModelBuilder(description="edgeact int8 export")
        self.t: dict[fx.Node, tuple[TensorRef, QuantParams, object]] = {}  # node → (tensor, qp, layout)
        self.floats: dict[fx.Node, TensorRef] = {}  # float tensors: graph inputs, dequantized outputs
        self.inputs: list[TensorRef] = []
        self.outputs: list[TensorRef] = []
        self.layouts: dict[str, object] = {}
        self.fused: set[fx.Node] = set()  # activation nodes folded into the preceding op
        self.lowerings: dict[str, str] = {}

    # ---- helpers -------------------------------------------------------------------------------
    def shape(self, node: fx.Node) -> tuple[int, ...]:
        meta = node.meta.get("tensor_meta")
        if meta is None and node.op == "call_module" and isinstance(self.modules.get(node.target), Q.Dequantize):
            return self.shape(node.args[0])
        if meta is None or not hasattr(meta, "shape"):
            raise ExportError(f"node {node.name!r} has no traced shape: convert the model with edgeact.convert")
        return tuple(int(d) for d in meta.shape)

    def tflite_shape(self, node: fx.Node) -> tuple[int, ...]:
        s = self.shape(node)
        return tuple(s[i] for i in NCHW_TO_NHWC) if len(s) == 4 else s

    def put(self, node: fx.Node, ref: TensorRef, qp: QuantParams, layout) -> None:
        self.t[node] = (ref, qp, layout)
        self.layouts[self.b._tensors[ref.index].name] = layout

    def get(self, node: fx.Node, where: str):
        if node not in self.t:
            raise UnsupportedError(f"{where!r} reads {node.name!r}, which is not an int8 tensor of the model")
        return self.t[node]

    def users_are(self, node: fx.Node, kinds) -> bool:
        return all(u.op == "call_module" and isinstance(self.modules.get(u.target), kinds) for u in node.users)

    # ---- walk ----------------------------------------------------------------------------------
    def run(self, example_shapes):
        placeholders = [n for n in self.gm.graph.nodes if n.op == "placeholder"]
        shapes = dict(zip(placeholders, example_shapes))
        for node in self.gm.graph.nodes:
            if node.op == "placeholder":
                s = shapes[node]
                if self.io == "float":
                    ts = tuple(s[i] for i in NCHW_TO_NHWC) if len(s) == 4 else tuple(s)
                    ref = self.b.tensor(node.name, ts, "float32")
                    self.floats[node] = ref
                    self.inputs.append(ref)
                    self.layouts[node.name] = "nhwc" if len(s) == 4 else "plain"
            elif node.op == "output":
                self.output(node)
            elif node.op == "call_module" and isinstance(self.modules.get(node.target), Q.QuantizedModule):
                if node not in self.fused:
                    self.module(node, self.modules[node.target])
            else:
                raise unexpected_node(node, "TFLite")

    def module(self, node: fx.Node, m):
        TFLITE_OPS.require(m, f"node {node.name!r}")(self, node, m)

    # ---- ops -----------------------------------------------------------------------------------
    def _bias(self, m, name):
        scale = tuple(float(s) for s in np.asarray(m.bias_scale, np.float32))
        qp = QuantParams(scale, tuple([0] * len(scale)), "int32", axis=0)
        return self.b.constant(f"{name}/bias", m.bias_codes.numpy().astype(np.int32), "int32", qp)

    def _fusable(self, node, m) -> tuple[fx.Node | None, int]:
        """The RELU/RELU6 node that can be fused into `node`'s op, and its fused-activation code."""
        users = list(node.users)
        if len(users) != 1 or users[0].op != "call_module":
            return None, schema.ActivationFunctionType.NONE
        act_node = users[0]
        act = self.modules.get(act_node.target)
        if not isinstance(act, Q.QuantizedActivation) or act.bound.name not in ("relu", "relu6"):
            return None, schema.ActivationFunctionType.NONE
        in_qp, out_qp = act.in_qparams[0], act.out_qparams
        if (in_qp.scale, in_qp.zero_point) != (out_qp.scale, out_qp.zero_point):
            return None, schema.ActivationFunctionType.NONE
        # XNNPACK's fused clamp in codes: round-half-even(bound/s + z), clamped to int8 (TFLite's own
        # CalculateActivationRangeQuantized rounds half away; the two agree unless bound/s is a tie).
        codes = np.arange(-128, 128)
        lo = out_qp.zero_point
        hi = 127 if act.bound.name == "relu" else int(np.clip(np.rint(np.float32(np.float32(6.0) / np.float32(
            out_qp.scale) + np.float32(out_qp.zero_point))), -128, 127))
        hi_tflite = 127 if act.bound.name == "relu" else min(127, out_qp.zero_point + int(
            round_half_away(np.float32(6.0) / np.float32(out_qp.scale))))
        if hi != hi_tflite or not np.array_equal(act.table.numpy(), np.clip(codes, lo, hi)):
            return None, schema.ActivationFunctionType.NONE
        code = schema.ActivationFunctionType.RELU if act.bound.name == "relu" else schema.ActivationFunctionType.RELU6
        return act_node, code

    def _reshape(self, x: TensorRef, shape, qp, name) -> TensorRef:
        new = self.b.constant(f"{name}/shape", np.array([-1, *shape[1:]], np.int32), "int32")
        y = self.b.tensor(name, shape, "int8", qp)
        opts = schema.ReshapeOptionsT()
        opts.newShape = [-1, *shape[1:]]
        self.b.op("RESHAPE", [x, new], [y], opts)
        return y

    def _transpose(self, x: TensorRef, perm, qp, name) -> TensorRef:
        shape = tuple(x.shape[i] for i in perm)
        y = self.b.tensor(name, shape, "int8", qp)
        self.b.op("TRANSPOSE", [x, self.b.constant(f"{name}/perm", np.array(perm, np.int32), "int32")], [y],
                  schema.TransposeOptionsT(), version=2)
        return y

    def output(self, node: fx.Node):
        for o in model_outputs(node, self.floats):
            ref = self.floats[o]
            layout = self.t[o.args[0]][2]
            if isinstance(layout, tuple):
                raise UnsupportedError("a flattened NHWC tensor cannot be a model output")
            self.outputs.append(ref)



# ---- one handler per integer op: (exporter, node, module) → the node's tensor in the model ------------

@TFLITE_OPS.register(Q.Dequantize)
def _dequantize(ex, node, m):
    ref, qp, layout = ex.get(node.args[0], node.name)
    if ex.io == "float":
        y = ex.b.tensor(node.name, ref.shape, "float32")
        ex.b.op("DEQUANTIZE", [ref], [y])
        ex.floats[node] = y
        ex.layouts[ex.b._tensors[y.index].name] = layout
    else:
        ex.floats[node] = ref


@TFLITE_OPS.register(Q.Quantize)
def _quantize(ex, node, m: Q.Quantize):
    src = node.args[0]
    qp = m.out_qparams
    if qp.dtype != "int8":
        raise UnsupportedError(f"{node.name!r}: TFLite export is full int8 but the input is quantized as "
                               f"{qp.dtype}; prepare with QConfig(activation_dtype='int8')")
    layout = "nhwc" if len(ex.shape(node)) == 4 else "plain"
    if ex.io == "float":
        y = ex.b.tensor(node.name, ex.tflite_shape(node), "int8", qp)
        ex.b.op("QUANTIZE", [ex.floats[src]], [y], version=1)
    else:
        y = ex.b.tensor(src.name, ex.tflite_shape(node), "int8", qp)
        ex.inputs.append(y)
    ex.put(node, y, qp, layout)


@TFLITE_OPS.register(Q.QuantizedConv2d)
def _conv(ex, node, m: Q.QuantizedConv2d):
    x, in_qp, layout = ex.get(node.args[0], node.name)
    name = node.name
    n, c, h, w = ex.shape(node.args[0])
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = (_pair(v) for v in (m.kernel_size, m.stride, m.padding, m.dilation))
    weights = m.weight_codes.numpy().astype(np.int8)
    fused_node, fused = ex._fusable(node, m)
    out_node = fused_node or node
    out_qp = ex.modules[fused_node.target].out_qparams if fused_node else m.out_qparams
    if same_padding_matches(h, kh, sh, dh, ph) and same_padding_matches(w, kw, sw, dw, pw):
        padding = schema.Padding.SAME
    else:
        padding = schema.Padding.VALID
        if ph or pw:
            pads = ex.b.constant(f"{name}/paddings", np.array([[0, 0], [ph, ph], [pw, pw], [0, 0]], np.int32),
                                   "int32")
            padded = ex.b.tensor(f"{name}/padded", (n, h + 2 * ph, w + 2 * pw, c), "int8", in_qp)
            ex.b.op("PAD", [x, pads], [padded], schema.PadOptionsT(), version=2)
            x = padded
    y = ex.b.tensor(out_node.name, ex.tflite_shape(node), "int8", out_qp)
    if m.depthwise:
        wq = m.weight_qparams
        wt = ex.b.constant(f"{name}/weight", weights.transpose(1, 2, 3, 0), "int8",
                             QuantParams(wq.scale, wq.zero_point, "int8", axis=3, narrow=True),
                             quantized_dimension=3)
        opts = schema.DepthwiseConv2DOptionsT()
        opts.depthMultiplier = 1
        op = "DEPTHWISE_CONV_2D"
    else:  # grouped too: filters hold in/groups channels, and CONV_2D infers the groups from that
        wt = ex.b.constant(f"{name}/weight", weights.transpose(0, 2, 3, 1), "int8", m.weight_qparams,
                             quantized_dimension=0)
        opts = schema.Conv2DOptionsT()
        op = "CONV_2D"
    opts.padding, opts.strideH, opts.strideW = padding, sh, sw
    opts.dilationHFactor, opts.dilationWFactor = dh, dw
    opts.fusedActivationFunction = fused
    ex.b.op(op, [x, wt, ex._bias(m, name)], [y], opts)
    if fused_node is None:
        ex.put(node, y, m.out_qparams, "nhwc")
    else:  # the tensor holds the activation's codes; the conv's own are never materialised
        ex.fused.add(fused_node)
        ex.put(fused_node, y, out_qp, "nhwc")
        ex.lowerings[fused_node.name] = f"fused into {op}"


@TFLITE_OPS.register(Q.QuantizedLinear)
def _linear(ex, node, m: Q.QuantizedLinear):
    x, in_qp, layout = ex.get(node.args[0], node.name)
    if len(x.shape) != 2:
        raise UnsupportedError(f"cannot export {node.name!r}: Linear on a rank-{len(x.shape)} tensor; only "
                               "(batch, features) — flatten the input first")
    weights = m.weight_codes.numpy().astype(np.int8)
    if isinstance(layout, tuple) and layout[0] == "flat":  # NHWC-ordered features: permute the columns
        _, c, h, w = layout
        weights = weights.reshape(-1, c, h, w).transpose(0, 2, 3, 1).reshape(weights.shape[0], -1)
    fused_node, fused = ex._fusable(node, m)
    out_node = fused_node or node
    out_qp = ex.modules[fused_node.target].out_qparams if fused_node else m.out_qparams
    wt = ex.b.constant(f"{node.name}/weight", weights, "int8", m.weight_qparams, quantized_dimension=0)
    y = ex.b.tensor(out_node.name, ex.shape(node), "int8", out_qp)
    opts = schema.FullyConnectedOptionsT()
    opts.fusedActivationFunction = fused
    ex.b.op("FULLY_CONNECTED", [x, wt, ex._bias(m, node.name)], [y], opts)
    if fused_node is None:
        ex.put(node, y, m.out_qparams, "plain")
    else:
        ex.fused.add(fused_node)
        ex.put(fused_node, y, out_qp, "plain")
        ex.lowerings[fused_node.name] = "fused into FULLY_CONNECTED"


@TFLITE_OPS.register(Q.QuantizedActivation)
def _activation(ex, node, m: Q.QuantizedActivation):
    x, in_qp, layout = ex.get(node.args[0], node.name)
    table = m.table.numpy().astype(np.int64)
    if table.ndim == 2 and layout != "nhwc" and not (layout == "plain" and len(x.shape) == 2):
        raise UnsupportedError(f"{node.name!r}: a per-channel activation needs the channels last")
    y, how = add_activation(ex.b, x, m.bound, in_qp, m.out_qparams, node.name,
                            lowering=m.lowering if ex.planned else "table", table=table)
    ex.lowerings[node.name] = how
    ex.put(node, y, m.out_qparams, layout)


@TFLITE_OPS.register(Q.QuantizedAdd, Q.QuantizedMul)
def _binary(ex, node, m):
    (a, qa, la), (b_, qb, lb) = (ex.get(arg, node.name) for arg in node.args)
    if {la, lb} - {"nhwc", "plain"}:
        raise UnsupportedError(f"{node.name!r}: elementwise op on a flattened NHWC tensor")
    op = "ADD" if isinstance(m, Q.QuantizedAdd) else "MUL"
    y = ex.b.tensor(node.name, ex.tflite_shape(node), "int8", m.out_qparams)
    ex.b.op(op, [a, b_], [y], schema.AddOptionsT() if op == "ADD" else schema.MulOptionsT())
    ex.put(node, y, m.out_qparams, "nhwc" if len(ex.shape(node)) == 4 else "plain")


@TFLITE_OPS.register(Q.QuantizedConcat)
def _concat(ex, node, m: Q.QuantizedConcat):
    parts = []
    rank = len(ex.shape(node))
    sem = m.arith
    for i, arg in enumerate(node.args):
        ref, qp, layout = ex.get(arg, node.name)
        if layout not in ("nhwc", "plain"):
            raise UnsupportedError(f"{node.name!r}: concatenation of a flattened NHWC tensor")
        if (qp.scale, qp.zero_point) != (m.out_qparams.scale, m.out_qparams.zero_point):
            # TFLite's int8 CONCATENATION needs equal parameters: requantize with the exact table.
            table = sem.requantize(torch.arange(-128, 128), qp, m.out_qparams).numpy()
            ref = add_table(ex.b, ref, table, m.out_qparams, f"{node.name}/requantize_{i}")
        parts.append(ref)
    dim = m.dim % rank
    opts = schema.ConcatenationOptionsT()
    opts.axis = NHWC_AXIS[dim] if rank == 4 else dim
    y = ex.b.tensor(node.name, ex.tflite_shape(node), "int8", m.out_qparams)
    ex.b.op("CONCATENATION", parts, [y], opts)
    ex.put(node, y, m.out_qparams, "nhwc" if rank == 4 else "plain")


@TFLITE_OPS.register(Q.QuantizedMean)
def _mean(ex, node, m: Q.QuantizedMean):
    x, in_qp, layout = ex.get(node.args[0], node.name)
    if layout != "nhwc":
        raise UnsupportedError(f"{node.name!r}: spatial mean of a tensor that is not (N, C, H, W)")
    axes = ex.b.constant(f"{node.name}/axes", np.array([1, 2], np.int32), "int32")
    y = ex.b.tensor(node.name, ex.tflite_shape(node), "int8", m.out_qparams)
    opts = schema.ReducerOptionsT()
    opts.keepDims = bool(m.keepdim)
    ex.b.op("MEAN", [x, axes], [y], opts)
    ex.put(node, y, m.out_qparams, "nhwc" if m.keepdim else "plain")


@TFLITE_OPS.register(Q.QuantizedAvgPool2d)
def _avgpool(ex, node, m: Q.QuantizedAvgPool2d):
    x, in_qp, layout = ex.get(node.args[0], node.name)
    c = ex.shape(node.args[0])[1]
    (kh, kw), (sh, sw) = _pair(m.kernel_size), _pair(m.stride if m.stride is not None else m.kernel_size)
    w_scale = float(unit_weight_scale(in_qp, m.out_qparams, kh * kw))
    w_qp = QuantParams(tuple([w_scale] * c), tuple([0] * c), "int8", axis=3, narrow=True)
    wt = ex.b.constant(f"{node.name}/ones", np.ones((1, kh, kw, c), np.int8), "int8", w_qp,
                         quantized_dimension=3)
    b_scale = tuple(float(np.float32(in_qp.scale) * np.float32(w_scale)) for _ in range(c))
    bias = ex.b.constant(f"{node.name}/bias", np.zeros(c, np.int32), "int32",
                           QuantParams(b_scale, tuple([0] * c), "int32", axis=0), quantized_dimension=0)
    y = ex.b.tensor(node.name, ex.tflite_shape(node), "int8", m.out_qparams)
    opts = schema.DepthwiseConv2DOptionsT()
    opts.padding, opts.strideH, opts.strideW, opts.depthMultiplier = schema.Padding.VALID, sh, sw, 1
    opts.dilationHFactor = opts.dilationWFactor = 1
    ex.b.op("DEPTHWISE_CONV_2D", [x, wt, bias], [y], opts)
    ex.put(node, y, m.out_qparams, "nhwc")


@TFLITE_OPS.register(Q.QuantizedMaxPool2d)
def _maxpool(ex, node, m: Q.QuantizedMaxPool2d):
    x, qp, layout = ex.get(node.args[0], node.name)
    n, c, h, w = ex.shape(node.args[0])
    k, s = _pair(m.kernel_size), _pair(m.stride if m.stride is not None else m.kernel_size)
    p, d = _pair(m.padding), _pair(m.dilation)
    if d != (1, 1):
        raise UnsupportedError(f"{node.name!r}: dilated max pooling has no TFLite kernel")
    out_h, out_w = ex.shape(node)[2:]
    valid_h, valid_w = (h + 2 * p[0] - k[0]) // s[0] + 1, (w + 2 * p[1] - k[1]) // s[1] + 1
    if (out_h, out_w) != (valid_h, valid_w):
        raise UnsupportedError(f"{node.name!r}: ceil_mode max pooling has no TFLite equivalent; use ceil_mode=False")
    if same_padding_matches(h, k[0], s[0], 1, p[0]) and same_padding_matches(w, k[1], s[1], 1, p[1]):
        padding = schema.Padding.SAME
    else:
        padding = schema.Padding.VALID
        if any(p):
            pads = ex.b.constant(f"{node.name}/paddings",
                                   np.array([[0, 0], [p[0], p[0]], [p[1], p[1]], [0, 0]], np.int32), "int32")
            lowest = ex.b.constant(f"{node.name}/lowest", np.array(qp.qmin, np.int8), "int8", qp)
            padded = ex.b.tensor(f"{node.name}/padded", (n, h + 2 * p[0], w + 2 * p[1], c), "int8", qp)
            ex.b.op("PADV2", [x, pads, lowest], [padded], schema.PadV2OptionsT(), version=2)
            x = padded
    y = ex.b.tensor(node.name, ex.tflite_shape(node), "int8", qp)
    opts = schema.Pool2DOptionsT()
    opts.padding, opts.strideH, opts.strideW, opts.filterHeight, opts.filterWidth = padding, s[0], s[1], k[0], k[1]
    ex.b.op("MAX_POOL_2D", [x], [y], opts)
    ex.put(node, y, qp, "nhwc")


@TFLITE_OPS.register(Q.QuantizedReshape)
def _reshape(ex, node, m: Q.QuantizedReshape):
    """flatten / view / reshape / (un)squeeze. Tensors other than 4-D are in PyTorch's order, so a
    reshape between them is a RESHAPE; to or from 4-D (NHWC in the file) the channel order is kept
    by a RESHAPE alone when H·W = 1, else by a TRANSPOSE — or, for a flatten feeding only Linear
    layers, by permuting their weights instead."""
    x, qp, layout = ex.get(node.args[0], node.name)
    src, dst = ex.shape(node.args[0]), ex.shape(node)
    if src == dst:
        ex.put(node, x, qp, layout)
        return
    if isinstance(layout, tuple):
        raise UnsupportedError(f"{node.name!r}: reshape of a flattened NHWC tensor")
    if layout == "nhwc":
        n, c, h, w = src
        if len(dst) == 2 and h * w > 1 and ex.users_are(node, Q.QuantizedLinear):
            ex.put(node, ex._reshape(x, (n, h * w * c), qp, node.name), qp, ("flat", c, h, w))
            return
        if h * w > 1:
            x = ex._transpose(x, (0, 3, 1, 2), qp, f"{node.name}/nchw")
        if len(dst) != 4:
            ex.put(node, ex._reshape(x, dst, qp, node.name), qp, "plain")
            return
    # x now holds PyTorch's order (plain, or a 4-D tensor with H·W = 1 or transposed back to NCHW)
    if len(dst) != 4:
        ex.put(node, ex._reshape(x, dst, qp, node.name), qp, "plain")
        return
    n, c, h, w = dst
    if h * w == 1:
        ex.put(node, ex._reshape(x, (n, 1, 1, c), qp, node.name), qp, "nhwc")
    else:
        t = ex._reshape(x, dst, qp, f"{node.name}/nchw")
        ex.put(node, ex._transpose(t, NCHW_TO_NHWC, qp, node.name), qp, "nhwc")


# Ops that only move codes (edgeact.quantize.data_movement): no arithmetic, exact in every kernel set.

@TFLITE_OPS.register(QuantizedChannelGather)
def _channel_gather(exporter, node, m: QuantizedChannelGather) -> None:
    x, qp, layout = exporter.get(node.args[0], node.name)
    rank = len(exporter.shape(node))
    if isinstance(layout, tuple):
        raise UnsupportedError(f"{node.name!r}: channel selection of a flattened NHWC tensor")
    indices = exporter.b.constant(f"{node.name}/indices", m.indices.numpy().astype(np.int32), "int32")
    opts = schema.GatherOptionsT()
    opts.axis = NHWC_AXIS[1] if layout == "nhwc" else 1
    y = exporter.b.tensor(node.name, exporter.tflite_shape(node), "int8", qp)
    exporter.b.op("GATHER", [x, indices], [y], opts, version=1)
    exporter.put(node, y, qp, layout if rank == 4 else "plain")


@TFLITE_OPS.register(QuantizedZeroPad2d)
def _zero_pad(exporter, node, m) -> None:
    """TFLite's int8 PAD fills with the tensor's zero point."""
    x, qp, layout = exporter.get(node.args[0], node.name)
    if layout != "nhwc":
        raise UnsupportedError(f"{node.name!r}: zero padding of a tensor that is not (N, C, H, W)")
    left, right, top, bottom = m.padding
    pads = exporter.b.constant(f"{node.name}/paddings", np.array([[0, 0], [top, bottom], [left, right], [0, 0]],
                                                                  np.int32), "int32")
    y = exporter.b.tensor(node.name, exporter.tflite_shape(node), "int8", qp)
    exporter.b.op("PAD", [x, pads], [y], schema.PadOptionsT(), version=2)
    exporter.put(node, y, qp, "nhwc")


@TFLITE_OPS.register(QuantizedZeroInsert)
def _zero_insert(exporter, node, m: QuantizedZeroInsert) -> None:
    """Border copies as STRIDED_SLICEs + CONCATENATION, then per spatial axis RESHAPE to a unit axis after it,
    PAD that axis to the stride (int8 PAD fills with the zero point), RESHAPE back; last PAD / STRIDED_SLICE to
    the conv's frame. All 4-D ops XNNPACK delegates (MIRROR_PAD, the one-op border copy, it does not)."""
    b, hint = exporter.b, node.name
    x, qp, layout = exporter.get(node.args[0], hint)
    if layout != "nhwc":
        raise UnsupportedError(f"{hint!r}: zero insertion into a tensor that is not (N, C, H, W)")
    n, c, h, w = exporter.shape(node.args[0])

    def pad(x, pads, shape, name):
        y = b.tensor(name, shape, "int8", qp)
        consts = b.constant(f"{name}/paddings", np.array(pads, np.int32), "int32")
        b.op("PAD", [x, consts], [y], schema.PadOptionsT(), version=2)
        return y

    def strided_slice(x, begin, end, shape, name):
        y = b.tensor(name, shape, "int8", qp)
        opts = schema.StridedSliceOptionsT()
        opts.beginMask = opts.endMask = sum(1 << i for i in range(4) if end[i] == 0)  # whole axes
        b.op("STRIDED_SLICE", [x, b.constant(f"{name}/begin", np.array(begin, np.int32), "int32"),
                               b.constant(f"{name}/end", np.array(end, np.int32), "int32"),
                               b.constant(f"{name}/strides", np.ones(4, np.int32), "int32")], [y], opts, version=2)
        return y

    for axis, copies in zip((1, 2), m.edge):  # one border copy per side and time: H → H + 2
        for k in range(copies):
            size = (n, h, w, c)
            one = tuple(1 if i == axis else d for i, d in enumerate(size))
            last = size[axis]
            first_end = [0, 0, 0, 0]
            first_end[axis] = 1
            last_begin, last_end = [0, 0, 0, 0], [0, 0, 0, 0]
            last_begin[axis], last_end[axis] = last - 1, last
            parts = [strided_slice(x, [0, 0, 0, 0], first_end, one, f"{hint}/first{axis}_{k}"), x,
                     strided_slice(x, last_begin, last_end, one, f"{hint}/last{axis}_{k}")]
            h, w = (h + 2, w) if axis == 1 else (h, w + 2)
            y = b.tensor(f"{hint}/edge{axis}_{k}", (n, h, w, c), "int8", qp)
            opts = schema.ConcatenationOptionsT()
            opts.axis = axis
            b.op("CONCATENATION", parts, [y], opts)
            x = y
    sh, sw = m.stride
    if sh > 1:
        x = exporter._reshape(x, (n, h, 1, w * c), qp, f"{hint}/rows")
        x = pad(x, [[0, 0], [0, 0], [0, sh - 1], [0, 0]], (n, h, sh, w * c), f"{hint}/rows_spread")
        h *= sh
        x = exporter._reshape(x, (n, h, w, c), qp, f"{hint}/rows_merged")
    if sw > 1:
        x = exporter._reshape(x, (n * h, w, 1, c), qp, f"{hint}/cols")
        x = pad(x, [[0, 0], [0, 0], [0, sw - 1], [0, 0]], (n * h, w, sw, c), f"{hint}/cols_spread")
        w *= sw
        x = exporter._reshape(x, (n, h, w, c), qp, f"{hint}/cols_merged")
    left, right, top, bottom = m.pads
    edges = [top, bottom - (sh - 1), left, right - (sw - 1)]
    if any(p > 0 for p in edges):
        t, bo, le, ri = (max(p, 0) for p in edges)
        h, w = h + t + bo, w + le + ri
        x = pad(x, [[0, 0], [t, bo], [le, ri], [0, 0]], (n, h, w, c), f"{hint}/pad")
    if any(p < 0 for p in edges):
        t, bo, le, ri = (max(-p, 0) for p in edges)
        size = (n, h - t - bo, w - le - ri, c)
        x = strided_slice(x, [0, t, le, 0], [0, h - bo, w - ri, 0], size, f"{hint}/crop")
    exporter.put(node, x, qp, "nhwc")


@TFLITE_OPS.register(QuantizedDepthToSpace)
def _depth_to_space(exporter, node, m: QuantizedDepthToSpace) -> None:
    """DEPTH_TO_SPACE (TFLite's order is DCR) — for unequal blocks or groups RESHAPE → TRANSPOSE → RESHAPE (a
    RESHAPE alone when the rows' block is 1) — then STRIDED_SLICE for the crop; all inside XNNPACK."""
    b, hint = exporter.b, node.name
    x, qp, layout = exporter.get(node.args[0], hint)
    if layout != "nhwc":
        raise UnsupportedError(f"{hint!r}: depth-to-space of a tensor that is not (N, C, H, W)")
    n, c, h, w = exporter.shape(node.args[0])
    (bh, bw), groups = m.block, m.groups
    out_c = c // (bh * bw)
    og = out_c // groups
    full = (n, h * bh, w * bw, out_c)
    last = f"{hint}/interleaved" if any(m.crop) else hint
    if bh == bw and groups == 1:
        y = b.tensor(last, full, "int8", qp)
        opts = schema.DepthToSpaceOptionsT()
        opts.blockSize = bh
        b.op("DEPTH_TO_SPACE", [x], [y], opts, version=1)  # v2 (int8) is missing from the reference resolver
    elif groups == 1:  # (N, H, W, bh·bw·C) → (N, H, W, bh, bw·C) → (N, H, bh, W, bw·C) → (N, H·bh, W·bw, C)
        if bh > 1:
            x = exporter._reshape(x, (n, h, w, bh, bw * out_c), qp, f"{hint}/phases")
            x = exporter._transpose(x, (0, 1, 3, 2, 4), qp, f"{hint}/transposed")
        y = exporter._reshape(x, full, qp, last)
    else:  # (N·H, W, g, bh, bw, O_g) → (N·H, bh, W, bw, g, O_g) → (N, H·bh, W·bw, g·O_g); 5-D when O_g = 1
        dims, perm = ((n * h, w, groups, bh, bw, og), (0, 3, 1, 4, 2, 5)) if og > 1 else \
            ((n * h, w, groups, bh, bw), (0, 3, 1, 4, 2))
        x = exporter._reshape(x, dims, qp, f"{hint}/phases")
        x = exporter._transpose(x, perm, qp, f"{hint}/transposed")
        y = exporter._reshape(x, full, qp, last)
    if any(m.crop):
        left, right, top, bottom = m.crop
        out = b.tensor(hint, exporter.tflite_shape(node), "int8", qp)
        o = schema.StridedSliceOptionsT()
        o.beginMask = o.endMask = 0b1001  # whole batch and channel axes
        b.op("STRIDED_SLICE", [y, b.constant(f"{hint}/begin", np.array([0, top, left, 0], np.int32), "int32"),
                               b.constant(f"{hint}/end", np.array([0, full[1] - bottom, full[2] - right, 0],
                                                                  np.int32), "int32"),
                               b.constant(f"{hint}/strides", np.ones(4, np.int32), "int32")], [out], o, version=2)
        y = out
    exporter.put(node, y, qp, "nhwc")


@TFLITE_OPS.register(QuantizedUpsampleNearest)
def _upsample_nearest(exporter, node, m) -> None:
    """RESIZE_NEAREST_NEIGHBOR without align_corners / half-pixel centres: source index floor(i·in/out)."""
    x, qp, layout = exporter.get(node.args[0], node.name)
    if layout != "nhwc":
        raise UnsupportedError(f"{node.name!r}: upsampling of a tensor that is not (N, C, H, W)")
    _, _, h2, w2 = exporter.shape(node)
    size = exporter.b.constant(f"{node.name}/size", np.array([h2, w2], np.int32), "int32")
    opts = schema.ResizeNearestNeighborOptionsT()
    opts.alignCorners, opts.halfPixelCenters = False, False
    y = exporter.b.tensor(node.name, exporter.tflite_shape(node), "int8", qp)
    exporter.b.op("RESIZE_NEAREST_NEIGHBOR", [x, size], [y], opts, version=2)
    exporter.put(node, y, qp, "nhwc")



def tensor_map(exporter: _Exporter) -> dict:
    """The metadata verify() reads: node → [tensor name, dtype, 0], and every tensor's layout."""
    names = {n: exporter.b._tensors[ref.index].name for n, (ref, _, _) in exporter.t.items()}
    return {
        "tensors": {n.name: [names[n], "int8", 0] for n in exporter.t},
        "layouts": {k: (list(v) if isinstance(v, tuple) else v) for k, v in exporter.layouts.items()},
        "inputs": [exporter.b._tensors[r.index].name for r in exporter.inputs],
        "outputs": [exporter.b._tensors[r.index].name for r in exporter.outputs],
    }


def to_tflite(model: fx.GraphModule, example_inputs=None, path=None, *, io: str = "float") -> bytes:
    """The fully int8 .tflite of a converted model (bytes); written atomically to `path` if given.

    Each activation is written as convert() planned it for the model's backend (a LiteRT one); a model
    converted for another backend gets every activation as its exact table, and a warning, since its
    other ops follow another runtime's arithmetic.
    example_inputs: a tensor or tuple of tensors (NCHW, as the model takes them; only shapes are used);
    default: the example recorded by convert(). io: 'float' (float32 in and out with QUANTIZE /
    DEQUANTIZE at the edges) or 'int8' (the codes in and out). 4-D inputs and outputs are NHWC.
    """
    backend, planned, examples = checked_for_export(
        model, example_inputs, io, IOS, writer="to_tflite", fmt="tflite", runtime="LiteRT", exact_backend="litert",
        batch_one=True)
    exporter = _Exporter(model, io, planned)
    exporter.run([tuple(e.shape) for e in examples])
    meta = tensor_map(exporter)
    meta.update(backend=backend.name, io=io, lowerings=exporter.lowerings)
    data = exporter.b.finish(exporter.inputs, exporter.outputs,
                             metadata={METADATA_KEY: json.dumps(meta, sort_keys=True).encode()})
    if path is not None:
        try:
            atomic_write(path, data, create_dirs=False)  # like to_onnx: an export never creates folders
        except OSError as exc:
            raise ExportError(f"cannot write {str(path)!r}: {exc.strerror or exc}; choose a writable path") from exc
    return data


__all__ = ["to_tflite", "METADATA_KEY", "same_padding_matches", "unit_weight_scale"]
