"""convert(): freeze a prepared model into an integer model of `edgeact.quantized` modules.

The result is a torch.fx.GraphModule: float in, float out, int64 codes in between, every op
computing with the chosen runtime's integer semantics. Exporters walk exactly this graph.
"""
from __future__ import annotations

import copy

import torch
import torch.fx as fx
from torch import nn
from torch.fx.passes.shape_prop import ShapeProp

from edgeact.errors import QuantizationError, UnsupportedError
from edgeact.fake_quant import FakeQuantize
from edgeact.nn.quant_act import QuantAct
from edgeact.quantize.prepare import quantizers
from edgeact.quantize.prepared import (
    PreparedAdd, PreparedAvgPool2d, PreparedConcat, PreparedConv2d, PreparedLinear, PreparedMean, PreparedMul,
)
from edgeact.quantize import data_movement as dm
from edgeact.quantized import modules as Q
from edgeact.quantized.gather import QuantizedChannelGather, QuantizedUpsampleNearest
from edgeact.quantized.pad import QuantizedZeroPad2d
from edgeact.semantics import get_semantics
from edgeact.tables import int8_table


MOVING_MODULES = (nn.Flatten, nn.Unflatten, nn.Upsample)  # modules that only move codes (see data_movement)


def convert(model: fx.GraphModule, semantics: str = "ideal", example_inputs=None) -> fx.GraphModule:
    """The integer model of a calibrated (or QAT-trained) prepared model.

    semantics: 'ideal', 'onnxruntime' or 'tflite' — the integer arithmetic to reproduce, so that
    the converted model equals the deployed one code for code.
    example_inputs: a tensor (or tuple) of the input shape; defaults to the first calibration batch.
    """
    get_semantics(semantics)  # fail early on an unknown name
    if not quantizers(model):
        raise QuantizationError("convert() needs a model returned by edgeact.prepare() and calibrated")
    example = example_inputs if example_inputs is not None else getattr(model, "edgeact_example", None)
    if example is None:
        raise QuantizationError("convert() needs example_inputs (or a model that went through calibrate())")
    example = example if isinstance(example, tuple) else (example,)
    prepared = copy.deepcopy(model).eval()
    for q in quantizers(prepared):
        if q.axis is None:
            q.freeze()
    with torch.no_grad():
        ShapeProp(prepared).propagate(*example)
    converted = _Converter(prepared, semantics).run()
    converted.edgeact_semantics = semantics
    converted.edgeact_example = example[0]
    return converted


class _Converter:
    def __init__(self, gm: fx.GraphModule, semantics: str):
        self.gm, self.semantics = gm, semantics
        self.modules = dict(gm.named_modules())
        self.qp: dict[fx.Node, object] = {}
        self.current = "?"  # the node being converted, for error messages
        self.moved: dict[fx.Node, object] = {}  # data-movement nodes → their value on index tensors

    def module_of(self, node):
        return self.modules.get(node.target) if node.op == "call_module" else None

    def run(self) -> fx.GraphModule:
        try:
            return self._run()
        except QuantizationError as exc:
            raise QuantizationError(f"{self.current}: {exc}") from None

    def swap(self, node: fx.Node, module: nn.Module, args=None) -> fx.Node:
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
        return new

    def _run(self) -> fx.GraphModule:
        graph, s = self.gm.graph, self.semantics
        for node in list(graph.nodes):
            self.current = node.target if node.op == "call_module" else node.name
            m = self.module_of(node)
            if node.op == "placeholder":
                continue
            if node.op == "output":
                self.outputs(node)
                continue
            if isinstance(m, FakeQuantize):  # a graph input's quantizer
                qp = m.qparams()
                self.qp[self.swap(node, Q.Quantize(qp, s))] = qp
            elif isinstance(m, QuantAct):
                in_qp, out_qp = m.in_qparams(), m.out_qparams()
                table = torch.from_numpy(int8_table(m.act.bound(), in_qp, out_qp, s))
                self.qp[self.swap(node, Q.QuantizedActivation(m.act.bound(), table, in_qp, out_qp, s))] = out_qp
            elif isinstance(m, PreparedConv2d):
                self.qp[self.swap(node, Q.QuantizedConv2d(m.conv, m.in_qparams()[0], m.output_quant.qparams(), s))] = \
                    m.output_quant.qparams()
            elif isinstance(m, PreparedLinear):
                self.qp[self.swap(node, Q.QuantizedLinear(m.linear, m.in_qparams()[0], m.output_quant.qparams(), s))] = \
                    m.output_quant.qparams()
            elif isinstance(m, (PreparedAdd, PreparedMul)):
                cls = Q.QuantizedAdd if isinstance(m, PreparedAdd) else Q.QuantizedMul
                out = m.output_quant.qparams()
                self.qp[self.swap(node, cls(m.in_qparams(), out, s))] = out
            elif isinstance(m, PreparedConcat):
                out = m.output_quant.qparams()
                self.qp[self.swap(node, Q.QuantizedConcat(m.in_qparams(), out, s, m.dim))] = out
            elif isinstance(m, PreparedMean):
                out = m.output_quant.qparams()
                self.qp[self.swap(node, Q.QuantizedMean(m.in_qparams()[0], out, s, m.keepdim))] = out
            elif isinstance(m, PreparedAvgPool2d):
                qp = m.in_qparams()[0]
                self.qp[self.swap(node, Q.QuantizedAvgPool2d(qp, s, m.kernel_size, m.stride, m.padding))] = qp
            elif isinstance(m, nn.MaxPool2d):
                qp = self.input_qp(node)
                self.qp[self.swap(node, Q.QuantizedMaxPool2d(qp, s, m.kernel_size, m.stride or m.kernel_size,
                                                             m.padding, m.dilation, m.ceil_mode))] = qp
            elif isinstance(m, nn.ZeroPad2d):
                qp = self.input_qp(node)
                self.qp[self.swap(node, QuantizedZeroPad2d(qp, s, m.padding))] = qp
            elif isinstance(m, (nn.Dropout, nn.Identity)):
                src = node.args[0]
                node.replace_all_uses_with(src)
                graph.erase_node(node)
            elif node.op == "call_function" and node.target is torch.nn.functional.max_pool2d:
                raise UnsupportedError(f"functional max_pool2d at {node.name!r}: use nn.MaxPool2d")
            elif node.op in ("call_method", "call_function") or isinstance(m, MOVING_MODULES):
                self.data_movement(node, m)
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
            return
        root = dm.root_of(node, lambda n: n in self.qp)
        qp = self.qp[root]
        kind, indices = dm.classify(node.name, value, root.meta["tensor_meta"].shape)
        if kind == "reshape":
            module = Q.QuantizedReshape(qp, self.semantics, tuple(node.meta["tensor_meta"].shape))
        elif kind == "gather":
            module = QuantizedChannelGather(qp, self.semantics, indices)
        else:
            module = QuantizedUpsampleNearest(qp, self.semantics, indices)
        self.qp[self.swap(node, module, args=(root,))] = qp

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
                self.gm.add_module(name, Q.Dequantize(self.qp[arg], self.semantics))
                with self.gm.graph.inserting_before(node):
                    return self.gm.graph.call_module(name, (arg,))
            return arg

        node.args = tuple(torch.fx.node.map_aggregate(node.args, dequant))
