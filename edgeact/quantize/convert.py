"""convert(): freeze a prepared model into an integer model of `edgeact.quantized` modules.

The result is a torch.fx.GraphModule: float in, float out, int64 codes in between, every op
computing with the arithmetic of the backend it was converted for. Exporters walk exactly this graph.
"""
from __future__ import annotations

import copy

import numpy as np

import torch
import torch.fx as fx
from torch import nn

from edgeact.errors import QuantizationError, UnsupportedError
from edgeact.fake_quant import FakeQuantize
from edgeact.nn.quant_act import QuantAct
from edgeact.quantize.prepare import quantizers
from edgeact.quantize.prepared import (
    PreparedAdd, PreparedAvgPool2d, PreparedConcat, PreparedConv2d, PreparedLinear, PreparedMean, PreparedMul,
    PreparedResizeBilinear,
)
from edgeact.quantize import transposed
from edgeact.quantize import data_movement as dm
from edgeact.quantized import modules as Q
from edgeact.quantized.gather import QuantizedChannelGather, QuantizedUpsampleNearest
from edgeact.quantized.pad import QuantizedZeroPad2d
from edgeact.quantized.zero_insert import QuantizedDepthToSpace, QuantizedZeroInsert
from edgeact.qparams import QuantParams
from edgeact.backend import Backend, get_backend
from edgeact.handlers import Handlers
from edgeact.tracing import propagate_shapes, tensor_meta


def convert(model: fx.GraphModule, backend=None, example_inputs=None, *, lowering=None) -> fx.GraphModule:
    """The integer model of a calibrated (or QAT-trained) prepared model, for one backend.

    backend: a name ('onnxruntime', 'litert', 'litert:aarch64', 'onnxruntime:host', …) or a Backend —
    the runtime, kernel family and CPU whose integer arithmetic the converted model reproduces code
    for code; default: the backend the model was prepared for (QConfig.backend). Each activation's
    lowering (native kernel or exact table) is decided here and recorded on its module; the writers
    write what it says.
    lowering: None (the backend's exact and fastest choice), 'native', 'table', or a dict
    {activation name: lowering} for some of them.
    example_inputs: a tensor (or tuple) of the input shape; defaults to the first calibration batch.
    """
    if not quantizers(model):
        raise QuantizationError("convert() needs a model returned by edgeact.prepare() and calibrated")
    backend = get_backend(backend if backend is not None else getattr(model, "edgeact_backend", "ideal"))
    if lowering is not None and not isinstance(lowering, (str, dict)):
        raise UnsupportedError(f"lowering must be None, 'native', 'table' or a dict {{activation: lowering}}, "
                               f"got {type(lowering).__name__}")
    example = example_inputs if example_inputs is not None else getattr(model, "edgeact_example", None)
    if example is None:
        raise QuantizationError("convert() needs example_inputs (or a model that went through calibrate())")
    example = example if isinstance(example, tuple) else (example,)
    prepared = copy.deepcopy(model).eval()
    for q in quantizers(prepared):
        if q.axis is None:
            q.freeze()
    with torch.no_grad():
        propagate_shapes(prepared, *example)
    converted = _Converter(prepared, backend, lowering).run()
    converted.edgeact_backend = backend.name
    converted.edgeact_example = example[0]
    return converted


def with_tables(model: fx.GraphModule) -> fx.GraphModule:
    """A copy of a converted model whose activations are all written as their lookup tables: the same
    codes (each table is what the planned lowering computes), only the file's ops change."""
    copied = copy.deepcopy(model)
    for m in copied.modules():
        if isinstance(m, Q.QuantizedActivation) and m.lowering != "none":
            m.lowering = "table"
    copied.edgeact_example = getattr(model, "edgeact_example", None)
    copied.edgeact_backend = getattr(model, "edgeact_backend", "ideal")  # deepcopy keeps no custom attributes
    return copied


# One handler per prepared op: (converter, node, prepared module) → the integer module's output parameters,
# after swapping the node for it (`_Converter.swap`).
CONVERTERS = Handlers("convert")


@CONVERTERS.register(FakeQuantize)
def _graph_input(cv: "_Converter", node, m):
    return cv.swap(node, Q.Quantize(m.qparams(), cv.backend.name))


@CONVERTERS.register(QuantAct)
def _activation(cv: "_Converter", node, m):
    bound, in_qp, out_qp = m.act.bound(), m.in_qparams(), m.out_qparams()
    plan = cv.backend.plan_activation(bound, in_qp, out_qp, cv.requested_lowering(bound.name))
    table = torch.from_numpy(np.asarray(plan.table, dtype=np.int64))
    return cv.swap(node, Q.QuantizedActivation(bound, table, in_qp, out_qp, cv.backend.name, plan.lowering))


@CONVERTERS.register(PreparedConv2d)
def _conv(cv, node, m):
    return cv.swap(node, Q.QuantizedConv2d(m.conv, m.in_qparams()[0], m.output_quant.qparams(), cv.backend.name))


@CONVERTERS.register(PreparedLinear)
def _linear(cv, node, m):
    return cv.swap(node, Q.QuantizedLinear(m.linear, m.in_qparams()[0], m.output_quant.qparams(), cv.backend.name))


@CONVERTERS.register(PreparedAdd)
def _add(cv, node, m):
    return cv.swap(node, Q.QuantizedAdd(m.in_qparams(), m.output_quant.qparams(), cv.backend.name))


@CONVERTERS.register(PreparedMul)
def _mul(cv, node, m):
    return cv.swap(node, Q.QuantizedMul(m.in_qparams(), m.output_quant.qparams(), cv.backend.name))


@CONVERTERS.register(PreparedConcat)
def _concat(cv, node, m):
    return cv.swap(node, Q.QuantizedConcat(m.in_qparams(), m.output_quant.qparams(), cv.backend.name, m.dim))


@CONVERTERS.register(PreparedMean)
def _mean(cv, node, m):
    return cv.swap(node, Q.QuantizedMean(m.in_qparams()[0], m.output_quant.qparams(), cv.backend.name, m.keepdim))


@CONVERTERS.register(PreparedAvgPool2d)
def _avg_pool(cv, node, m):
    return cv.swap(node, Q.QuantizedAvgPool2d(m.in_qparams()[0], cv.backend.name, m.kernel_size, m.stride,
                                              m.padding))


@CONVERTERS.register(nn.MaxPool2d)
def _max_pool(cv, node, m):
    return cv.swap(node, Q.QuantizedMaxPool2d(cv.input_qp(node), cv.backend.name, m.kernel_size,
                                              m.stride or m.kernel_size, m.padding, m.dilation, m.ceil_mode))


@CONVERTERS.register(nn.ZeroPad2d)
def _zero_pad(cv, node, m):
    return cv.swap(node, QuantizedZeroPad2d(cv.input_qp(node), cv.backend.name, m.padding))


@CONVERTERS.register(transposed.ZeroInsert2d)
def _zero_insert(cv, node, m):
    """A ConvTranspose's zero insertion; with its conv as one phase conv + depth-to-space where a stride is > 1
    and the dilation 1 (with dilation, a phase's taps are no longer every s-th of the kernel)."""
    users = list(node.users)
    conv = cv.module_of(users[0]) if len(users) == 1 else None
    if isinstance(conv, PreparedConv2d) and max(m.stride) > 1 and tuple(conv.conv.dilation) == (1, 1):
        return _subpixel(cv, node, m, users[0], conv)
    return cv.swap(node, QuantizedZeroInsert(cv.input_qp(node), cv.backend.name, m.stride, m.pads))


def _subpixel(cv, node, m, conv_node, conv):
    """Zero insertion `node` + `conv_node` → phase conv on the insertion's input + QuantizedDepthToSpace
    (edgeact.quantize.transposed.subpixel): the codes and scales of the conv that would follow the insertion."""
    in_qp, out_qp, src = cv.input_qp(node), conv.output_quant.qparams(), node.args[0]
    eq = Q.QuantizedConv2d(conv.conv, in_qp, out_qp, cv.backend.name)  # the codes of the conv after insertion
    phase, d2s = _phases(eq, m.stride, m.pads, tuple(int(d) for d in src.meta["tensor_meta"].shape[2:]))
    cv.done.add(conv_node)
    new = _insert_node(cv, conv_node, f"{conv_node.target}_phases", phase, src, out_qp)
    act_node = _fused_relu_after(cv, conv_node)
    if act_node is None:
        return cv.swap(conv_node, d2s, args=(new,))
    # conv → ReLU sharing its parameters (fused in the files): the ReLU acts on the phases, depth-to-space
    # follows it (both only move or clamp codes, so they commute), and the writers can still fuse it.
    conv_node.replace_all_uses_with(new)
    cv.gm.graph.erase_node(conv_node)
    act_node.meta["tensor_meta"] = new.meta["tensor_meta"]
    after = list(act_node.users)
    moved = _insert_node(cv, act_node.next, f"{conv_node.target}_int", d2s, act_node, out_qp)
    for user in after:
        user.replace_input_with(act_node, moved)
    return out_qp


def _phases(eq, stride, pads, in_hw):
    """(phase conv, depth-to-space) computing integer conv `eq` after a zero insertion (stride, pads) of an
    input of spatial size `in_hw`: the same codes, scales and groups (edgeact.quantize.transposed.subpixel)."""
    g, backend = eq.groups, eq.backend
    codes, padding, crop = transposed.subpixel(eq.weight_codes.numpy(), stride, pads, in_hw, g)
    cin = eq.weight_codes.shape[1] * g
    phase = Q.QuantizedConv2d(nn.Conv2d(cin, codes.shape[0], codes.shape[2:], padding=padding, groups=g,
                                        bias=False), eq.in_qparams[0], eq.out_qparams, backend, weight_scale=1.0)
    scales = transposed.phase_order(eq.weight_qparams.scale_array(), stride, g)
    phase.weight_qparams = QuantParams(tuple(float(v) for v in scales), (0,) * len(scales), "int8", axis=0,
                                       narrow=True)
    phase.weight_codes = torch.from_numpy(np.ascontiguousarray(codes)).to(torch.int8)
    phase.bias_codes = torch.from_numpy(np.ascontiguousarray(transposed.phase_order(eq.bias_codes.numpy(), stride,
                                                                                    g)))
    phase.bias_scale = np.ascontiguousarray(transposed.phase_order(eq.bias_scale, stride, g)).astype(np.float32)
    return phase, QuantizedDepthToSpace(eq.out_qparams, backend, stride, crop, g)


def _fused_relu_after(cv, conv_node):
    """The ReLU/ReLU6 node right after `conv_node` that prepare fused with it (same parameters), if any."""
    users = list(conv_node.users)
    act = cv.module_of(users[0]) if len(users) == 1 else None
    if isinstance(act, QuantAct) and act.act.bound().name in ("relu", "relu6") and \
            act.in_qparams() == act.out_qparams():
        return users[0]
    return None


@CONVERTERS.register(PreparedResizeBilinear)
def _resize_bilinear(cv, node, m):
    """Border replicated once → the depthwise transposed conv(s) with the exact tent weights, as phase conv +
    depth-to-space (the codes of zero insertion + depthwise conv, without the products with inserted zeros)."""
    in_qp, out_qp, src = m.in_qparams()[0], m.output_quant.qparams(), node.args[0]
    n, c, h, w = (int(d) for d in src.meta["tensor_meta"].shape)
    h2, w2 = (int(d) for d in node.meta["tensor_meta"].shape[2:])
    factors = transposed.factors_of((h, w), (h2, w2), m.align_corners)
    if factors is None:
        from edgeact.quantize.prepare import _BILINEAR_WHY

        how = f"from {h}×{w} to {h2}×{w2}" + (" with align_corners=True" if m.align_corners else "")
        why = _BILINEAR_WHY.format(how=how)
        raise UnsupportedError(f"cannot quantize {why.split(': ', 1)[0]} at {cv.current!r}: {why.split(': ', 1)[1]}")
    fh, fw = factors
    try:
        steps = transposed.bilinear_steps(fh, fw, m.align_corners)
    except ValueError as exc:
        raise UnsupportedError(f"{cv.current!r}: bilinear interpolation {exc}") from None
    x, phased = src, len(steps) == 2
    for i, (insertion, codes, scale) in enumerate(steps):
        conv = nn.Conv2d(c, c, codes.shape, groups=c, bias=False)
        with torch.no_grad():
            conv.weight.copy_(torch.from_numpy(codes * scale).reshape(1, 1, *codes.shape).expand(c, 1, *codes.shape))
        last = i == len(steps) - 1
        eq = Q.QuantizedConv2d(conv, in_qp, out_qp if last else in_qp, cv.backend.name, weight_scale=scale)
        if not phased:  # ×2 … ×7: zero insertion + depthwise conv (measured faster than phases in both runtimes)
            x = _insert_node(cv, node, f"{node.target}_insert{i}", QuantizedZeroInsert(in_qp, cv.backend.name,
                                                                                        **insertion), x, in_qp)
            return cv.swap(node, eq, args=(x,))
        # beyond ×7, one axis per pass: phase conv + depth-to-space skips the f − 1 of f inserted zeros
        if any(insertion["edge"]):
            x = _insert_node(cv, node, f"{node.target}_edge{i}", QuantizedZeroInsert(
                in_qp, cv.backend.name, (1, 1), (0, 0, 0, 0), insertion["edge"]), x, in_qp)
        phase, d2s = _phases(eq, insertion["stride"], insertion["pads"],
                             tuple(int(d) for d in x.meta["tensor_meta"].shape[2:]))
        x = _insert_node(cv, node, f"{node.target}_phases{i}", phase, x, eq.out_qparams)
        if last:
            return cv.swap(node, d2s, args=(x,))
        x = _insert_node(cv, node, f"{node.target}_pass{i}", d2s, x, in_qp)  # rounded at the input's grid


def _insert_node(cv, before: fx.Node, name: str, module: nn.Module, arg: fx.Node, qp) -> fx.Node:
    """A call of `module` on `arg` before `before`, with its traced shape (the writers read it)."""
    base, i = name.replace(".", "_"), 1
    name = base
    while hasattr(cv.gm, name):
        i += 1
        name = f"{base}_{i}"
    cv.gm.add_module(name, module)
    with cv.gm.graph.inserting_before(before):
        new = cv.gm.graph.call_module(name, (arg,))
    new.meta = dict(before.meta)
    with torch.no_grad():
        probe = module(torch.full(tuple(int(d) for d in arg.meta["tensor_meta"].shape), qp.zero_point,
                                  dtype=torch.long))
    new.meta["tensor_meta"] = tensor_meta(probe)
    cv.qp[new] = qp
    return new


MOVING_MODULES = (nn.Flatten, nn.Unflatten, nn.Upsample)  # modules that only move codes (see data_movement)


@CONVERTERS.register(*MOVING_MODULES)
def _moving(cv, node, m):
    return cv.data_movement(node, m)


@CONVERTERS.register(nn.Dropout, nn.Identity)
def _no_op(cv, node, m):
    node.replace_all_uses_with(node.args[0])
    cv.gm.graph.erase_node(node)
    return None


class _Converter:
    def __init__(self, gm: fx.GraphModule, backend: Backend, lowering):
        self.gm, self.backend, self.lowering = gm, backend, lowering
        self.modules = dict(gm.named_modules())
        self.qp: dict[fx.Node, object] = {}
        self.current = "?"  # the node being converted, for error messages
        self.moved: dict[fx.Node, object] = {}  # data-movement nodes → their value on index tensors
        self.done: set[fx.Node] = set()  # nodes a handler of an earlier node already replaced

    def requested_lowering(self, activation: str) -> str | None:
        return self.lowering.get(activation) if isinstance(self.lowering, dict) else self.lowering

    def module_of(self, node):
        return self.modules.get(node.target) if node.op == "call_module" else None

    def run(self) -> fx.GraphModule:
        try:
            return self._run()
        except QuantizationError as exc:
            raise QuantizationError(f"{self.current}: {exc}") from None

    def swap(self, node: fx.Node, module: nn.Module, args=None):
        """Replace `node` by a call of the integer `module`; returns its output parameters."""
        base = f"{node.target if node.op == 'call_module' else node.name}".replace(".", "_") + "_int"
        name, i = base, 1
        while hasattr(self.gm, name):  # a module called twice becomes two integer modules
            i += 1
            name = f"{base}_{i}"
        self.gm.add_module(name, module)
        with self.gm.graph.inserting_before(node):
            new = self.gm.graph.call_module(name, tuple(args if args is not None else node.args))
        new.meta = dict(node.meta)
        node.replace_all_uses_with(new)
        self.gm.graph.erase_node(node)
        self.qp[new] = module.out_qparams
        return module.out_qparams

    def _run(self) -> fx.GraphModule:
        graph = self.gm.graph
        for node in list(graph.nodes):
            self.current = node.target if node.op == "call_module" else node.name
            m = self.module_of(node)
            if node.op == "placeholder" or node in self.done:
                continue
            if node.op == "output":
                self.outputs(node)
                continue
            handler = CONVERTERS.lookup(m) if m is not None else None
            if handler is not None:
                handler(self, node, m)
            elif node.op == "call_function" and node.target is torch.nn.functional.max_pool2d:
                raise UnsupportedError(f"functional max_pool2d at {node.name!r}: use nn.MaxPool2d")
            elif node.op in ("call_method", "call_function"):  # view / transpose / chunk / slicing / shapes
                self.data_movement(node)
        graph.eliminate_dead_code()
        graph.lint()
        self.gm.recompile()
        # Drop the prepared modules that no node uses any more.
        used = {n.target for n in graph.nodes if n.op == "call_module"}
        for name, _ in list(self.gm.named_children()):
            if name not in used:
                delattr(self.gm, name)
        return self.gm

    def data_movement(self, node: fx.Node, module: nn.Module | None = None) -> None:
        """Reshape / transpose / chunk / slice (and the shape arithmetic feeding them): evaluated on index
        tensors; where the result leaves for a quantized op or the output, one integer module replaces the chain."""
        def value_of(a: fx.Node):
            if a in self.qp:
                return dm.index_tensor(a.meta["tensor_meta"].shape)
            if a in self.moved:
                return self.moved[a]
            raise UnsupportedError(f"{node.name!r} reads {a.name!r}, which is neither a quantized tensor nor "
                                   "computed from one's shape")

        try:
            value = dm.evaluate(node, value_of, module)
        except (RuntimeError, TypeError, ValueError, IndexError) as exc:
            what = getattr(node.target, "__name__", node.target)
            raise UnsupportedError(f"{node.name!r}: cannot follow which codes {what} moves ({exc}); only reshapes, "
                                   "channel selections/permutations and nearest upsampling are supported") from exc
        self.moved[node] = value
        exits = any(u.op not in ("call_method", "call_function") and not (
            u.op == "call_module" and isinstance(self.modules.get(u.target), MOVING_MODULES))
            for u in node.users)
        if not (exits and isinstance(value, torch.Tensor)):
            return None
        root = dm.root_of(node, lambda n: n in self.qp)
        qp = self.qp[root]
        kind, indices = dm.classify(node.name, value, root.meta["tensor_meta"].shape)
        name = self.backend.name
        if kind == "reshape":
            module = Q.QuantizedReshape(qp, name, tuple(node.meta["tensor_meta"].shape))
        elif kind == "gather":
            module = QuantizedChannelGather(qp, name, indices)
        else:
            module = QuantizedUpsampleNearest(qp, name, indices)
        return self.swap(node, module, args=(root,))

    @staticmethod
    def is_tensor(node: fx.Node) -> bool:
        meta = node.meta.get("tensor_meta")
        return meta is not None and hasattr(meta, "shape")

    def input_qp(self, node: fx.Node):
        src = node.args[0]
        if src not in self.qp:
            raise UnsupportedError(f"{node.name!r} reads a tensor that is not quantized")
        return self.qp[src]

    def outputs(self, node: fx.Node) -> None:
        def dequant(arg):
            if isinstance(arg, fx.Node) and arg in self.qp:
                name = f"dequantize_{arg.name}"
                self.gm.add_module(name, Q.Dequantize(self.qp[arg], self.backend.name))
                with self.gm.graph.inserting_before(node):
                    return self.gm.graph.call_module(name, (arg,))
            return arg

        node.args = tuple(torch.fx.node.map_aggregate(node.args, dequant))
