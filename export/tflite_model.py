"""A converted model (edgeact.convert) as a fully int8 .tflite that LiteRT runs code for code.

Walks the converted torch.fx graph node by node and writes each integer module as TFLite ops with
the module's own frozen parameters (nothing is re-derived): int8 tensors between ops, per-channel
int8 weights (CONV_2D OHWI with quantized_dimension 0, DEPTHWISE_CONV_2D 1HWC with 3,
FULLY_CONNECTED with 0), int32 biases, float32 or int8 graph inputs/outputs.

Layout: PyTorch is NCHW, TFLite NHWC. Weights are transposed at export, nothing is inserted at run
time: 4-D tensors are stored NHWC; a flatten feeding a Linear keeps NHWC order and the Linear's
weight columns are permuted instead (a TRANSPOSE is written only when something else reads the
flattened tensor). Graph inputs and outputs of rank 4 are NHWC (`run_tflite` transposes).

Average pooling becomes a DEPTHWISE_CONV_2D with weights 1 whose scale is chosen so that XNNPACK's
requantization scale equals that of MEAN — the same arithmetic the converted model's `average`
computes for both. RELU/RELU6 after a conv or linear are fused into it when the fused clamp gives
exactly the activation's table.
"""
from __future__ import annotations

import json
import warnings

import numpy as np
import torch
import torch.fx as fx
from ai_edge_litert import schema_py_generated as schema
from torch.fx.passes.shape_prop import ShapeProp

from edgeact.errors import ExportError, UnsupportedError
from edgeact.export.data_movement import tflite_channel_gather, tflite_upsample_nearest, tflite_zero_pad
from edgeact.export.tflite_activation import add_activation, add_table
from edgeact.export.tflite_builder import ModelBuilder, TensorRef
from edgeact.fileio import atomic_write
from edgeact.fixedpoint import round_half_away
from edgeact.qparams import QuantParams
from edgeact.quantized import modules as Q
from edgeact.quantized.gather import QuantizedChannelGather, QuantizedUpsampleNearest
from edgeact.quantized.pad import QuantizedZeroPad2d
from edgeact.semantics import get_semantics
from edgeact.semantics.tflite import conv_requantization_scales, mean_scale

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
    """A weight scale w with float32((s_in·w)/s_out) equal to MEAN's s_in/(s_out·count): a depthwise conv
    of weights 1 and this scale then requantizes exactly like MEAN (the semantics' `average`)."""
    target = mean_scale(in_qp, out_qp, count)
    s_in, s_out = np.float32(in_qp.scale), np.float32(out_qp.scale)
    w = np.float32(np.float64(target) * np.float64(s_out) / np.float64(s_in))
    candidates = [w]
    up = down = w
    for _ in range(64):
        up, down = np.nextafter(up, np.float32(np.inf)), np.nextafter(down, np.float32(0))
        candidates += [up, down]
    for c in candidates:
        if conv_requantization_scales(in_qp, QuantParams((float(c),), (0,), axis=0), out_qp)[0] == target:
            return c
    raise ExportError(f"no float32 weight scale reproduces the average-pool scale {target!r}; report this model")


class _Exporter:
    def __init__(self, gm: fx.GraphModule, io: str, lowering: str, prefer: str = "x86"):
        self.gm, self.io, self.lowering, self.prefer = gm, io, lowering, prefer
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
                what = getattr(node.target, "__name__", str(node.target))
                raise UnsupportedError(
                    f"cannot export node {node.name!r} ({node.op} {what}) to TFLite: the converted model should "
                    "contain only edgeact.quantized modules — convert the model with edgeact.convert()")

    def module(self, node: fx.Node, m):
        if isinstance(m, Q.Quantize):
            self.quantize(node, m)
        elif isinstance(m, Q.Dequantize):
            ref, qp, layout = self.get(node.args[0], node.name)
            if self.io == "float":
                y = self.b.tensor(node.name, ref.shape, "float32")
                self.b.op("DEQUANTIZE", [ref], [y])
                self.floats[node] = y
                self.layouts[self.b._tensors[y.index].name] = layout
            else:
                self.floats[node] = ref
        elif isinstance(m, Q.QuantizedConv2d):
            self.conv(node, m)
        elif isinstance(m, Q.QuantizedLinear):
            self.linear(node, m)
        elif isinstance(m, Q.QuantizedActivation):
            self.activation(node, m)
        elif isinstance(m, (Q.QuantizedAdd, Q.QuantizedMul)):
            self.binary(node, m)
        elif isinstance(m, Q.QuantizedConcat):
            self.concat(node, m)
        elif isinstance(m, Q.QuantizedMean):
            self.mean(node, m)
        elif isinstance(m, Q.QuantizedAvgPool2d):
            self.avgpool(node, m)
        elif isinstance(m, Q.QuantizedMaxPool2d):
            self.maxpool(node, m)
        elif isinstance(m, QuantizedChannelGather):
            tflite_channel_gather(self, node, m, schema, NHWC_AXIS)
        elif isinstance(m, QuantizedUpsampleNearest):
            tflite_upsample_nearest(self, node, m, schema)
        elif isinstance(m, QuantizedZeroPad2d):
            tflite_zero_pad(self, node, m, schema)
        elif isinstance(m, Q.QuantizedReshape):
            self.reshape(node, m)
        else:
            raise UnsupportedError(
                f"cannot export node {node.name!r}: module {type(m).__name__} has no TFLite lowering. Supported: "
                "Quantize, Dequantize, QuantizedConv2d, QuantizedLinear, QuantizedActivation, QuantizedAdd, "
                "QuantizedMul, QuantizedConcat, QuantizedMean, QuantizedAvgPool2d, QuantizedMaxPool2d, "
                "QuantizedReshape")

    # ---- ops -----------------------------------------------------------------------------------
    def quantize(self, node, m: Q.Quantize):
        src = node.args[0]
        qp = m.out_qparams
        if qp.dtype != "int8":
            raise UnsupportedError(f"{node.name!r}: TFLite export is full int8 but the input is quantized as "
                                   f"{qp.dtype}; prepare with QConfig(activation_dtype='int8')")
        layout = "nhwc" if len(self.shape(node)) == 4 else "plain"
        if self.io == "float":
            y = self.b.tensor(node.name, self.tflite_shape(node), "int8", qp)
            self.b.op("QUANTIZE", [self.floats[src]], [y], version=1)
        else:
            y = self.b.tensor(src.name, self.tflite_shape(node), "int8", qp)
            self.inputs.append(y)
        self.put(node, y, qp, layout)

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

    def conv(self, node, m: Q.QuantizedConv2d):
        x, in_qp, layout = self.get(node.args[0], node.name)
        name = node.name
        n, c, h, w = self.shape(node.args[0])
        (kh, kw), (sh, sw), (ph, pw), (dh, dw) = (_pair(v) for v in (m.kernel_size, m.stride, m.padding, m.dilation))
        weights = m.weight_codes.numpy().astype(np.int8)
        fused_node, fused = self._fusable(node, m)
        out_node = fused_node or node
        out_qp = self.modules[fused_node.target].out_qparams if fused_node else m.out_qparams
        if same_padding_matches(h, kh, sh, dh, ph) and same_padding_matches(w, kw, sw, dw, pw):
            padding = schema.Padding.SAME
        else:
            padding = schema.Padding.VALID
            if ph or pw:
                pads = self.b.constant(f"{name}/paddings", np.array([[0, 0], [ph, ph], [pw, pw], [0, 0]], np.int32),
                                       "int32")
                padded = self.b.tensor(f"{name}/padded", (n, h + 2 * ph, w + 2 * pw, c), "int8", in_qp)
                self.b.op("PAD", [x, pads], [padded], schema.PadOptionsT(), version=2)
                x = padded
        y = self.b.tensor(out_node.name, self.tflite_shape(node), "int8", out_qp)
        if m.depthwise:
            wq = m.weight_qparams
            wt = self.b.constant(f"{name}/weight", weights.transpose(1, 2, 3, 0), "int8",
                                 QuantParams(wq.scale, wq.zero_point, "int8", axis=3, narrow=True),
                                 quantized_dimension=3)
            opts = schema.DepthwiseConv2DOptionsT()
            opts.depthMultiplier = 1
            op = "DEPTHWISE_CONV_2D"
        elif m.groups >= 1:  # grouped: filters hold in/groups channels; CONV_2D infers the groups from that
            wt = self.b.constant(f"{name}/weight", weights.transpose(0, 2, 3, 1), "int8", m.weight_qparams,
                                 quantized_dimension=0)
            opts = schema.Conv2DOptionsT()
            op = "CONV_2D"
        else:
            raise UnsupportedError(f"{name!r}: grouped convolution (groups={m.groups}, not depthwise) has no int8 "
                                   "TFLite kernel; use groups=1 or a depthwise conv (groups = channels)")
        opts.padding, opts.strideH, opts.strideW = padding, sh, sw
        opts.dilationHFactor, opts.dilationWFactor = dh, dw
        opts.fusedActivationFunction = fused
        self.b.op(op, [x, wt, self._bias(m, name)], [y], opts)
        if fused_node is None:
            self.put(node, y, m.out_qparams, "nhwc")
        else:  # the tensor holds the activation's codes; the conv's own are never materialised
            self.fused.add(fused_node)
            self.put(fused_node, y, out_qp, "nhwc")
            self.lowerings[fused_node.name] = f"fused into {op}"

    def linear(self, node, m: Q.QuantizedLinear):
        x, in_qp, layout = self.get(node.args[0], node.name)
        if len(x.shape) != 2:
            raise UnsupportedError(f"cannot export {node.name!r}: Linear on a rank-{len(x.shape)} tensor; only "
                                   "(batch, features) — flatten the input first")
        weights = m.weight_codes.numpy().astype(np.int8)
        if isinstance(layout, tuple) and layout[0] == "flat":  # NHWC-ordered features: permute the columns
            _, c, h, w = layout
            weights = weights.reshape(-1, c, h, w).transpose(0, 2, 3, 1).reshape(weights.shape[0], -1)
        fused_node, fused = self._fusable(node, m)
        out_node = fused_node or node
        out_qp = self.modules[fused_node.target].out_qparams if fused_node else m.out_qparams
        wt = self.b.constant(f"{node.name}/weight", weights, "int8", m.weight_qparams, quantized_dimension=0)
        y = self.b.tensor(out_node.name, self.shape(node), "int8", out_qp)
        opts = schema.FullyConnectedOptionsT()
        opts.fusedActivationFunction = fused
        self.b.op("FULLY_CONNECTED", [x, wt, self._bias(m, node.name)], [y], opts)
        if fused_node is None:
            self.put(node, y, m.out_qparams, "plain")
        else:
            self.fused.add(fused_node)
            self.put(fused_node, y, out_qp, "plain")
            self.lowerings[fused_node.name] = "fused into FULLY_CONNECTED"

    def activation(self, node, m: Q.QuantizedActivation):
        x, in_qp, layout = self.get(node.args[0], node.name)
        table = m.table.numpy().astype(np.int64)
        if table.ndim == 2 and layout != "nhwc" and not (layout == "plain" and len(x.shape) == 2):
            raise UnsupportedError(f"{node.name!r}: a per-channel activation needs the channels last")
        y, how = add_activation(self.b, x, m.bound, in_qp, m.out_qparams, node.name, lowering=self.lowering,
                                table=table, prefer=self.prefer)
        self.lowerings[node.name] = how
        self.put(node, y, m.out_qparams, layout)

    def binary(self, node, m):
        (a, qa, la), (b_, qb, lb) = (self.get(arg, node.name) for arg in node.args)
        if {la, lb} - {"nhwc", "plain"}:
            raise UnsupportedError(f"{node.name!r}: elementwise op on a flattened NHWC tensor")
        op = "ADD" if isinstance(m, Q.QuantizedAdd) else "MUL"
        y = self.b.tensor(node.name, self.tflite_shape(node), "int8", m.out_qparams)
        self.b.op(op, [a, b_], [y], schema.AddOptionsT() if op == "ADD" else schema.MulOptionsT())
        self.put(node, y, m.out_qparams, "nhwc" if len(self.shape(node)) == 4 else "plain")

    def concat(self, node, m: Q.QuantizedConcat):
        parts = []
        rank = len(self.shape(node))
        sem = get_semantics(m.semantics)
        for i, arg in enumerate(node.args):
            ref, qp, layout = self.get(arg, node.name)
            if layout not in ("nhwc", "plain"):
                raise UnsupportedError(f"{node.name!r}: concatenation of a flattened NHWC tensor")
            if (qp.scale, qp.zero_point) != (m.out_qparams.scale, m.out_qparams.zero_point):
                # TFLite's int8 CONCATENATION needs equal parameters: requantize with the exact table.
                table = sem.requantize(torch.arange(-128, 128), qp, m.out_qparams).numpy()
                ref = add_table(self.b, ref, table, m.out_qparams, f"{node.name}/requantize_{i}")
            parts.append(ref)
        dim = m.dim % rank
        opts = schema.ConcatenationOptionsT()
        opts.axis = NHWC_AXIS[dim] if rank == 4 else dim
        y = self.b.tensor(node.name, self.tflite_shape(node), "int8", m.out_qparams)
        self.b.op("CONCATENATION", parts, [y], opts)
        self.put(node, y, m.out_qparams, "nhwc" if rank == 4 else "plain")

    def mean(self, node, m: Q.QuantizedMean):
        x, in_qp, layout = self.get(node.args[0], node.name)
        if layout != "nhwc":
            raise UnsupportedError(f"{node.name!r}: spatial mean of a tensor that is not (N, C, H, W)")
        axes = self.b.constant(f"{node.name}/axes", np.array([1, 2], np.int32), "int32")
        y = self.b.tensor(node.name, self.tflite_shape(node), "int8", m.out_qparams)
        opts = schema.ReducerOptionsT()
        opts.keepDims = bool(m.keepdim)
        self.b.op("MEAN", [x, axes], [y], opts)
        self.put(node, y, m.out_qparams, "nhwc" if m.keepdim else "plain")

    def avgpool(self, node, m: Q.QuantizedAvgPool2d):
        x, in_qp, layout = self.get(node.args[0], node.name)
        c = self.shape(node.args[0])[1]
        (kh, kw), (sh, sw) = _pair(m.kernel_size), _pair(m.stride if m.stride is not None else m.kernel_size)
        w_scale = float(unit_weight_scale(in_qp, m.out_qparams, kh * kw))
        w_qp = QuantParams(tuple([w_scale] * c), tuple([0] * c), "int8", axis=3, narrow=True)
        wt = self.b.constant(f"{node.name}/ones", np.ones((1, kh, kw, c), np.int8), "int8", w_qp,
                             quantized_dimension=3)
        b_scale = tuple(float(np.float32(in_qp.scale) * np.float32(w_scale)) for _ in range(c))
        bias = self.b.constant(f"{node.name}/bias", np.zeros(c, np.int32), "int32",
                               QuantParams(b_scale, tuple([0] * c), "int32", axis=0), quantized_dimension=0)
        y = self.b.tensor(node.name, self.tflite_shape(node), "int8", m.out_qparams)
        opts = schema.DepthwiseConv2DOptionsT()
        opts.padding, opts.strideH, opts.strideW, opts.depthMultiplier = schema.Padding.VALID, sh, sw, 1
        opts.dilationHFactor = opts.dilationWFactor = 1
        self.b.op("DEPTHWISE_CONV_2D", [x, wt, bias], [y], opts)
        self.put(node, y, m.out_qparams, "nhwc")

    def maxpool(self, node, m: Q.QuantizedMaxPool2d):
        x, qp, layout = self.get(node.args[0], node.name)
        n, c, h, w = self.shape(node.args[0])
        k, s = _pair(m.kernel_size), _pair(m.stride if m.stride is not None else m.kernel_size)
        p, d = _pair(m.padding), _pair(m.dilation)
        if d != (1, 1):
            raise UnsupportedError(f"{node.name!r}: dilated max pooling has no TFLite kernel")
        out_h, out_w = self.shape(node)[2:]
        valid_h, valid_w = (h + 2 * p[0] - k[0]) // s[0] + 1, (w + 2 * p[1] - k[1]) // s[1] + 1
        if (out_h, out_w) != (valid_h, valid_w):
            raise UnsupportedError(f"{node.name!r}: ceil_mode max pooling has no TFLite equivalent; use ceil_mode=False")
        if same_padding_matches(h, k[0], s[0], 1, p[0]) and same_padding_matches(w, k[1], s[1], 1, p[1]):
            padding = schema.Padding.SAME
        else:
            padding = schema.Padding.VALID
            if any(p):
                pads = self.b.constant(f"{node.name}/paddings",
                                       np.array([[0, 0], [p[0], p[0]], [p[1], p[1]], [0, 0]], np.int32), "int32")
                lowest = self.b.constant(f"{node.name}/lowest", np.array(qp.qmin, np.int8), "int8", qp)
                padded = self.b.tensor(f"{node.name}/padded", (n, h + 2 * p[0], w + 2 * p[1], c), "int8", qp)
                self.b.op("PADV2", [x, pads, lowest], [padded], schema.PadV2OptionsT(), version=2)
                x = padded
        y = self.b.tensor(node.name, self.tflite_shape(node), "int8", qp)
        opts = schema.Pool2DOptionsT()
        opts.padding, opts.strideH, opts.strideW, opts.filterHeight, opts.filterWidth = padding, s[0], s[1], k[0], k[1]
        self.b.op("MAX_POOL_2D", [x], [y], opts)
        self.put(node, y, qp, "nhwc")

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

    def reshape(self, node, m: Q.QuantizedReshape):
        """flatten / view / reshape / (un)squeeze. Tensors other than 4-D are in PyTorch's order, so a
        reshape between them is a RESHAPE; to or from 4-D (NHWC in the file) the channel order is kept
        by a RESHAPE alone when H·W = 1, else by a TRANSPOSE — or, for a flatten feeding only Linear
        layers, by permuting their weights instead."""
        x, qp, layout = self.get(node.args[0], node.name)
        src, dst = self.shape(node.args[0]), self.shape(node)
        if src == dst:
            self.put(node, x, qp, layout)
            return
        if isinstance(layout, tuple):
            raise UnsupportedError(f"{node.name!r}: reshape of a flattened NHWC tensor")
        if layout == "nhwc":
            n, c, h, w = src
            if len(dst) == 2 and h * w > 1 and self.users_are(node, Q.QuantizedLinear):
                self.put(node, self._reshape(x, (n, h * w * c), qp, node.name), qp, ("flat", c, h, w))
                return
            if h * w > 1:
                x = self._transpose(x, (0, 3, 1, 2), qp, f"{node.name}/nchw")
            if len(dst) != 4:
                self.put(node, self._reshape(x, dst, qp, node.name), qp, "plain")
                return
        # x now holds PyTorch's order (plain, or a 4-D tensor with H·W = 1 or transposed back to NCHW)
        if len(dst) != 4:
            self.put(node, self._reshape(x, dst, qp, node.name), qp, "plain")
            return
        n, c, h, w = dst
        if h * w == 1:
            self.put(node, self._reshape(x, (n, 1, 1, c), qp, node.name), qp, "nhwc")
        else:
            t = self._reshape(x, dst, qp, f"{node.name}/nchw")
            self.put(node, self._transpose(t, NCHW_TO_NHWC, qp, node.name), qp, "nhwc")

    def output(self, node: fx.Node):
        outs = node.args[0]
        outs = list(outs) if isinstance(outs, (tuple, list)) else [outs]
        for i, o in enumerate(outs):
            if not isinstance(o, fx.Node) or o not in self.floats:
                raise UnsupportedError(f"model output {i} is not a dequantized tensor (got {o!r}); export needs a "
                                       "model whose outputs come from edgeact.convert's Dequantize")
            ref = self.floats[o]
            layout = self.t[o.args[0]][2]
            if isinstance(layout, tuple):
                raise UnsupportedError("a flattened NHWC tensor cannot be a model output")
            self.outputs.append(ref)


def tensor_map(exporter: _Exporter) -> dict:
    """The metadata verify() reads: node → [tensor name, dtype, 0], and every tensor's layout."""
    names = {n: exporter.b._tensors[ref.index].name for n, (ref, _, _) in exporter.t.items()}
    return {
        "tensors": {n.name: [names[n], "int8", 0] for n in exporter.t},
        "layouts": {k: (list(v) if isinstance(v, tuple) else v) for k, v in exporter.layouts.items()},
        "inputs": [exporter.b._tensors[r.index].name for r in exporter.inputs],
        "outputs": [exporter.b._tensors[r.index].name for r in exporter.outputs],
    }


def to_tflite(model: fx.GraphModule, example_inputs=None, path=None, *, io: str = "float",
              lowering: str | None = "auto", prefer: str | None = None) -> bytes:
    """The fully int8 .tflite of a converted model (bytes); written atomically to `path` if given.

    example_inputs: a tensor or tuple of tensors (NCHW, as the model takes them; only shapes are used);
    default: the example recorded by convert(). io: 'float' (float32 in and out with QUANTIZE /
    DEQUANTIZE at the edges) or 'int8' (the codes in and out). 4-D inputs and outputs are NHWC.
    lowering: 'auto' or None (per activation the exact and fastest), or 'native' / 'table' to force one.
    prefer: the CPU whose fastest exact lowering 'auto' picks, 'x86' or 'arm' (native HARD_SWISH where its
    codes are the same on both); default 'arm' for a model converted with semantics='tflite-aarch64'.
    """
    if not isinstance(model, fx.GraphModule) or not any(isinstance(m, Q.QuantizedModule) for m in model.modules()):
        raise UnsupportedError(
            f"to_tflite needs a converted model (edgeact.convert(prepared_model)), got {type(model).__name__}; "
            "prepare, calibrate and convert it first")
    if io not in IOS:
        raise UnsupportedError(f"io must be one of {IOS}, got {io!r}")
    lowering = lowering or "auto"
    semantics = getattr(model, "edgeact_semantics", None)
    prefer = prefer or ("arm" if semantics == "tflite-aarch64" else "x86")
    if semantics not in ("tflite", "tflite-builtin", "tflite-reference", "tflite-aarch64"):  # LiteRT's kernel sets
        warnings.warn(f"the model was converted with semantics={semantics!r}: LiteRT rounds differently at some "
                      "ties, so its codes may differ; convert with semantics='tflite' for a bit-exact export",
                      stacklevel=2)
    if example_inputs is None:
        example_inputs = getattr(model, "edgeact_example", None)
        if example_inputs is None:
            raise ExportError("to_tflite needs example_inputs (a tensor of the input shape)")
    examples = example_inputs if isinstance(example_inputs, (tuple, list)) else (example_inputs,)
    examples = tuple(torch.as_tensor(e, dtype=torch.float32)[:1] for e in examples)
    try:
        with torch.no_grad():
            ShapeProp(model).propagate(*examples)
    except (RuntimeError, TypeError, ValueError) as exc:
        raise ExportError(f"the example input(s) of shape {[tuple(e.shape) for e in examples]} do not fit the "
                          f"model ({exc}); pass tensors shaped like the model's input") from exc
    exporter = _Exporter(model, io, lowering, prefer)
    exporter.run([tuple(e.shape) for e in examples])
    meta = tensor_map(exporter)
    meta.update(semantics=str(semantics), io=io, lowerings=exporter.lowerings, prefer=prefer)
    data = exporter.b.finish(exporter.inputs, exporter.outputs,
                             metadata={METADATA_KEY: json.dumps(meta, sort_keys=True).encode()})
    if path is not None:
        try:
            atomic_write(path, data)
        except OSError as exc:
            raise ExportError(f"cannot write {str(path)!r}: {exc.strerror or exc}; choose a writable path") from exc
    return data


__all__ = ["to_tflite", "METADATA_KEY", "same_padding_matches", "unit_weight_scale"]
