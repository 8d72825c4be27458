"""prepare(): turn a float torch.nn.Module into a fake-quantized one ready for calibration or QAT.

The model is traced with torch.fx; activations are swapped as asked and wrapped in QuantAct;
BatchNorm is folded into the conv before it; every op that produces a new int8 tensor gets a
FakeQuantize on its output, and its consumers read their input parameters from it.
"""
from __future__ import annotations

import copy
import operator
from typing import Any, Mapping

import torch
import torch.fx as fx
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval, fuse_linear_bn_eval

from edgeact.activations import TORCH_FUNCTIONS, canonical_name
from edgeact.errors import QuantizationError, UnsupportedError
from edgeact.fake_quant import FakeQuantize
from edgeact.nn.activations import Activation, from_torch, make_activation
from edgeact.nn.quant_act import QuantAct, SharedQuant
from edgeact.quantize.prepared import (
    PreparedAvgPool2d, PreparedConcat, PreparedConv2d, PreparedLinear, PreparedMean, PreparedMul,
    PreparedAdd, PreparedResizeBilinear,
)
from edgeact.qparams import QuantParams
from edgeact.quantize.qconfig import DEFAULT_QCONFIG, QConfig
from edgeact.quantize.float_graph import simplify
from edgeact.quantize.transposed import ZeroInsert2d, bilinear_steps, whole_factors
from edgeact.tracing import describe, trace

# Functional activations and the registry names they stand for (with their positional params), from the
# specs (`ActivationDef.torch_functions`); the same dict, kept up to date by edgeact.activations.register.
FUNCTIONAL_ACTIVATIONS: dict[Any, tuple[str, tuple[str, ...]]] = TORCH_FUNCTIONS
METHOD_ACTIVATIONS = {"relu": "relu", "sigmoid": "sigmoid", "tanh": "tanh"}
ADD_OPS = {operator.add, torch.add, operator.iadd}
MUL_OPS = {operator.mul, torch.mul, operator.imul}
PASSTHROUGH_MODULES = (nn.MaxPool2d, nn.Flatten, nn.Dropout, nn.Identity, nn.Unflatten, nn.ZeroPad2d,
                       ZeroInsert2d)
# Data movement: codes and parameters unchanged (convert() works out which element goes where).
PASSTHROUGH_FUNCTIONS = {torch.flatten, torch.reshape, F.max_pool2d, F.dropout, torch.squeeze, torch.unsqueeze,
                         torch.transpose, torch.permute, torch.chunk, torch.split, operator.getitem}
PASSTHROUGH_METHODS = {"flatten", "view", "reshape", "squeeze", "unsqueeze", "contiguous", "transpose", "permute",
                       "chunk", "split"}
SHAPE_METHODS = {"size", "dim"}
SHAPE_ATTRIBUTES = {"shape", "ndim", "dtype", "device", "is_cuda", "requires_grad"}


def _flat_args_of(value) -> list:
    flat: list = []
    fx.node.map_aggregate(value, flat.append)
    return flat


def _flat_args(node: fx.Node) -> list:
    flat: list = []
    fx.node.map_aggregate((node.args, node.kwargs), flat.append)
    return flat

SUPPORTED = (
    "Conv1d/Conv2d and ConvTranspose1d/2d (incl. depthwise/grouped, any stride, padding, output_padding, dilation) "
    "and Linear (and their subclasses), each optionally followed by "
    "BatchNorm (folded; a BatchNorm2d elsewhere becomes a depthwise 1×1 conv); activations (torch.nn, edgeact.nn, "
    "functional, or any module that computes one: " + ", ".join(sorted({v[0] for v in FUNCTIONAL_ACTIVATIONS.values()}))
    + ", …); tensor + tensor, tensor * tensor; torch.cat; AvgPool2d, AdaptiveAvgPool2d(1), x.mean((2, 3)) and "
    "their functional forms; MaxPool2d / F.max_pool2d; ZeroPad2d / F.pad with zeros; nearest Upsample / "
    "F.interpolate by whole factors, bilinear by whole factors (align_corners=False, or True with output size "
    "(H−1)·f+1); flatten/reshape/view/squeeze/unsqueeze/transpose/permute/"
    "chunk/split/slicing that reshape or select/permute channels; Dropout variants, stochastic depth, Identity"
)

# Ops refused on purpose, with the reason: the runtimes do compute them in int8 or around Q/DQ, but not in a way
# edgeact reproduces code for code today (README, "LayerNorm, Softmax and attention").
_SOFTMAX_WHY = (
    "Softmax: each runtime computes int8 softmax its own way (LiteRT's SOFTMAX in fixed point or from an exp table "
    "depending on the kernel set, onnxruntime's QLinearSoftmax from a float exp table with float division) and "
    "edgeact does not model those kernels, so it cannot promise the exported file gives the same codes (0 LSB); "
    "apply the softmax to the float output of the quantized model instead")
_LAYERNORM_WHY = (
    "LayerNorm: it divides by each sample's own standard deviation — TFLite has no int8 layer-norm kernel (a "
    "decomposition into MEAN, SQUARED_DIFFERENCE, RSQRT, MUL rounds at every step) and onnxruntime computes "
    "LayerNormalization in float between DequantizeLinear and QuantizeLinear with its own summation order — "
    "none of which edgeact reproduces code for code (0 LSB); keep the layer in float outside the quantized part, "
    "or use BatchNorm, which folds into the conv exactly")
_ATTENTION_WHY = ("attention (matmul of two activations): the product of two int8 activations, followed by a "
                  "softmax in attention — " + _SOFTMAX_WHY.split(": ", 1)[1])
_RESIZE_WHY = (
    "{mode} interpolation: edgeact computes only 'nearest' (codes repeated) and 2-D 'bilinear' by whole factors (a "
    "fixed int8 conv) exactly; other modes blend neighbours with weights one int8 conv does not hold exactly "
    "(bicubic: products of cubic coefficients) or in ways the runtimes' own resize kernels round each their own "
    "way, which edgeact does not model, so it cannot promise the same codes (0 LSB); use mode='nearest' or "
    "'bilinear' by a whole factor, or resize the float output")
_BILINEAR_WHY = (
    "bilinear interpolation {how}: edgeact computes bilinear upsampling exactly as fixed depthwise convs, which "
    "needs the same blend of neighbours at every output: align_corners=False with an output size a whole multiple "
    "f of the input's (scale_factor=2, 3, …, or size=), or align_corners=True with output size (H − 1)·f + 1 "
    "(size=); otherwise (e.g. nn.UpsamplingBilinear2d(scale_factor=2): output i samples i·(H−1)/(2H−1)) the "
    "blend changes across the image, and only the runtimes' own resize kernels compute that, each rounding its "
    "own way, so neither file would be 0 LSB from the converted model; use nn.Upsample(scale_factor=f, "
    "mode='bilinear'), a size= that is such a multiple, or mode='nearest'")
REFUSED_MODULES = {nn.Softmax: _SOFTMAX_WHY, nn.LayerNorm: _LAYERNORM_WHY, nn.MultiheadAttention: _ATTENTION_WHY,
                   nn.GroupNorm: _LAYERNORM_WHY.replace("LayerNorm:", "GroupNorm:", 1)}
REFUSED_FUNCTIONS = {F.softmax: _SOFTMAX_WHY, torch.softmax: _SOFTMAX_WHY, F.layer_norm: _LAYERNORM_WHY,
                     F.scaled_dot_product_attention: _ATTENTION_WHY, torch.matmul: _ATTENTION_WHY,
                     operator.matmul: _ATTENTION_WHY}
REFUSED_METHODS = {"softmax": _SOFTMAX_WHY}


ActivationChoice = str | Any  # a registry name, 'keep', or a PWL stand-in (anything with .to_module())


def _unsupported(what: str, where: str) -> UnsupportedError:
    return UnsupportedError(
        f"cannot quantize {what} at {where}. edgeact.prepare supports: {SUPPORTED}. "
        "Rewrite that part of the model with supported ops, or keep it outside the quantized model."
    )


def _check_finite_parameters(model: nn.Module) -> None:
    for name, p in list(model.named_parameters()) + list(model.named_buffers()):
        if p.is_floating_point() and not torch.isfinite(p).all():
            raise QuantizationError(
                f"parameter {name!r} contains NaN or Inf: the model cannot be quantized — "
                "retrain or reload the weights (a diverged training step leaves NaN)"
            )


def _swap_activation(act: nn.Module, choice: ActivationChoice | None) -> nn.Module:
    if choice is None or choice == "keep":
        converted = from_torch(act)
        if converted is None:
            raise _unsupported(type(act).__name__, "?")
        return converted
    if isinstance(choice, str):
        return make_activation(choice)
    if hasattr(choice, "to_module"):
        return choice.to_module()
    if isinstance(choice, nn.Module):
        return copy.deepcopy(choice)
    raise UnsupportedError(f"activation replacement must be a name, 'keep' or a PWL stand-in, got {choice!r}")


def _activation_name(module: nn.Module) -> str | None:
    if isinstance(module, Activation):
        return module.bound().name
    converted = from_torch(module)
    return None if converted is None else converted.bound().name


def _bn_as_depthwise_conv(bn: nn.BatchNorm2d) -> nn.Conv2d:
    """The eval-mode BatchNorm2d `bn` as a depthwise 1×1 conv computing the same per-channel affine map."""
    c = bn.num_features
    conv = nn.Conv2d(c, c, 1, groups=c, bias=True)
    with torch.no_grad():
        inv = torch.rsqrt(bn.running_var + bn.eps)
        gamma = bn.weight if bn.affine else torch.ones(c)
        beta = bn.bias if bn.affine else torch.zeros(c)
        conv.weight.copy_((gamma * inv).reshape(c, 1, 1, 1))
        conv.bias.copy_(beta - bn.running_mean * gamma * inv)
    return conv.eval()


class _Builder:
    """Rewrites the traced graph node by node; keeps the FakeQuantize that owns each tensor."""

    def __init__(self, gm: fx.GraphModule, activations: Mapping[str, ActivationChoice], qconfig: QConfig):
        self.gm, self.qc = gm, qconfig
        self.activations = {canonical_name(k): v for k, v in activations.items()}
        self.owner: dict[fx.Node, FakeQuantize] = {}  # tensor node → its quantizer
        self.modules = dict(gm.named_modules())
        self.counter = 0
        self.erased: set[fx.Node] = set()  # BatchNorm nodes folded away while iterating
        self.preset_output: dict[fx.Node, FakeQuantize] = {}  # fused ReLU node → quantizer it shares with its conv
        self.node: fx.Node | None = None  # the node being rewritten, for error messages

    # -- helpers --------------------------------------------------------------------------------
    def refused(self, why: str) -> UnsupportedError:
        where = describe(self.node) if self.node is not None else "?"
        return UnsupportedError(f"cannot quantize {why.split(':', 1)[0]} at {where}: {why.split(': ', 1)[1]}. "
                                f"edgeact.prepare supports: {SUPPORTED}")

    def unsupported(self, what: str) -> UnsupportedError:
        """A refusal naming the op and where the user's code introduced it (module path, file:line)."""
        return _unsupported(what, describe(self.node) if self.node is not None else "?")

    def fq(self, where: str, **kw) -> FakeQuantize:
        return FakeQuantize(self.qc.observer, dtype=self.qc.activation_dtype, name=where, **kw)

    def add_module(self, base: str, module: nn.Module) -> str:
        name = base.replace(".", "_")
        while hasattr(self.gm, name):
            self.counter += 1
            name = f"{base.replace('.', '_')}_{self.counter}"
        self.gm.add_module(name, module)
        return name

    def source(self, node: Any, where: str) -> SharedQuant:
        if not isinstance(node, fx.Node) or node not in self.owner:
            raise self.unsupported(f"an input that is not a quantized tensor ({node!r})")
        return SharedQuant(self.owner[node])

    def replace(self, node: fx.Node, target: str, args: tuple) -> fx.Node:
        with self.gm.graph.inserting_before(node):
            new = self.gm.graph.call_module(target, args)
        node.replace_all_uses_with(new)
        self.gm.graph.erase_node(node)
        return new

    # -- the rewrite ----------------------------------------------------------------------------
    def run(self) -> fx.GraphModule:
        graph = self.gm.graph
        for node in list(graph.nodes):
            if node in self.erased:
                continue
            where = node.name
            self.node = node
            if node.op == "placeholder":
                name = self.add_module(f"input_quant_{node.name}", self.fq(f"input {node.name!r}"))
                with graph.inserting_after(node):
                    q = graph.call_module(name, (node,))
                node.replace_all_uses_with(q, delete_user_cb=lambda u: u is not q)
                self.owner[q] = getattr(self.gm, name)
            elif node.op == "output":
                continue
            elif node.op == "call_module":
                self.module_node(node, self.modules[node.target], node.target)
            elif node.op == "call_function":
                self.function_node(node, where)
            elif node.op == "call_method":
                self.method_node(node, where)
            elif node.op == "get_attr":
                raise self.unsupported(f"a constant tensor ({node.target})")
        graph.lint()
        self.gm.recompile()
        return self.gm

    def activation(self, node: fx.Node, act_module: nn.Module, path: str) -> None:
        name = _activation_name(act_module)
        module = _swap_activation(act_module, self.activations.get(name)) if name else None
        if module is None:
            raise self.unsupported(type(act_module).__name__)
        if isinstance(module, Activation) and module.bound().name == "identity":
            # The linear 'activation' changes nothing: its output keeps its input's parameters
            # (a requantization here would only add a rounding step).
            src = node.args[0]
            if src not in self.owner:
                raise self.unsupported("an identity activation on a tensor that is not quantized")
            node.replace_all_uses_with(src)
            self.gm.graph.erase_node(node)
            return
        definition = module.bound().definition if isinstance(module, Activation) else None
        fixed_range = definition.fixed_output_range if definition is not None else None
        output_quant = self.preset_output.pop(node, None) or self.fq(
            f"{path} output", learnable_scale=self.qc.learnable_scale and fixed_range is None)
        if fixed_range is not None and not output_quant.fixed:
            output_quant.fix(QuantParams.spanning(*fixed_range, self.qc.activation_dtype))
        qa = QuantAct(module, input_quant=self.source(node.args[0], path), output_quant=output_quant,
                      backend=self.qc.backend)
        self._defer_to_table(node.args[0], qa)
        target = self.add_module(f"{path}_q", qa)
        new = self.replace(node, target, (node.args[0],))
        self.owner[new] = qa.output_quant

    def _defer_to_table(self, src: fx.Node, qa: QuantAct) -> None:
        """When the activation is the only consumer of its input tensor and a per-tensor table, the input's
        quantizer leaves the quantization in QAT to the table (QuantAct._table_step): one pass over the
        tensor instead of a fake quantization and then the table's positions."""
        fq = self.owner.get(src)
        bound = qa.act.bound()
        if (isinstance(fq, FakeQuantize) and fq is not qa.output_quant and len(src.users) == 1
                and sum(q is fq for q in self.owner.values()) == 1
                and bound.definition is not None and bound.channels is None):
            fq.defers_to_table = True

    def module_node(self, node: fx.Node, mod: nn.Module, path: str) -> None:
        for cls, why in REFUSED_MODULES.items():
            if isinstance(mod, cls):
                raise self.refused(why)
        if isinstance(mod, (nn.Conv2d, nn.Linear)):
            mod = copy.deepcopy(mod)
            bn_user = self._single_bn_user(node)
            if bn_user is not None:
                bn = self.modules[bn_user.target]
                mod = (fuse_conv_bn_eval if isinstance(mod, nn.Conv2d) else fuse_linear_bn_eval)(mod.eval(), bn.eval())
                bn_user.replace_all_uses_with(node)
                self.gm.graph.erase_node(bn_user)
                self.erased.add(bn_user)
            wq = FakeQuantize("minmax", dtype="int8", symmetric=True, axis=0, narrow=True, name=f"{path}.weight")
            cls = PreparedConv2d if isinstance(mod, nn.Conv2d) else PreparedLinear
            relu = self._fusable_relu(node)
            if relu is not None:
                # conv → ReLU/ReLU6: one set of parameters, observed after the activation
                shared = self.fq(f"{relu.name} output", learnable_scale=self.qc.learnable_scale)
                self.preset_output[relu] = shared
                op = cls(mod, [self.source(node.args[0], path)], SharedQuant(shared), wq)
            else:
                shared = None
                op = cls(mod, [self.source(node.args[0], path)], self.fq(f"{path} output"), wq)
            new = self.replace(node, self.add_module(f"{path}_q", op), (node.args[0],))
            self.owner[new] = shared or op.output_quant
        elif isinstance(mod, nn.BatchNorm2d):
            # Not folded (no conv before it, or the conv's output has other users too): the same per-channel
            # affine map as a depthwise 1×1 conv, quantized like any conv.
            self.modules[node.target] = _bn_as_depthwise_conv(mod)
            self.module_node(node, self.modules[node.target], path)
        elif isinstance(mod, nn.BatchNorm1d):
            raise self.unsupported("a BatchNorm1d that does not directly follow a Linear (fold it into the Linear "
                                   "before it, or use BatchNorm2d on 4-D tensors)")
        elif _activation_name(mod) is not None:
            self.activation(node, mod, path)
        elif isinstance(mod, nn.AdaptiveAvgPool2d):
            if mod.output_size not in (1, (1, 1)):
                raise self.unsupported(f"AdaptiveAvgPool2d({mod.output_size}) (only output size 1)")
            self.mean(node, path, keepdim=True)
        elif isinstance(mod, nn.AvgPool2d):
            src = node.args[0]
            op = PreparedAvgPool2d([self.source(src, path)], mod.kernel_size, mod.stride or mod.kernel_size,
                                   mod.padding)
            new = self.replace(node, self.add_module(f"{path}_q", op), (src,))
            self.owner[new] = self.owner[src]  # average pooling keeps its input's parameters
        elif isinstance(mod, nn.Upsample):
            if mod.mode == "nearest":
                self.passthrough(node, path)
            else:
                self.resize(node, path, mod.mode, mod.size, mod.scale_factor, mod.align_corners)
        elif isinstance(mod, PASSTHROUGH_MODULES):
            self.passthrough(node, path)
        else:
            raise self.unsupported(f"module {type(mod).__name__}")

    def _resolved_activation(self, node: fx.Node) -> str | None:
        """The registry name `node` will compute after the swaps, if it is an activation."""
        if node.op == "call_module":
            name = _activation_name(self.modules[node.target])
        elif node.op == "call_function":
            name = FUNCTIONAL_ACTIVATIONS.get(node.target, (None,))[0]
        elif node.op == "call_method":
            name = METHOD_ACTIVATIONS.get(node.target)
        else:
            name = None
        if name is None:
            return None
        choice = self.activations.get(name)
        if choice is None or choice == "keep":
            return name
        return canonical_name(choice) if isinstance(choice, str) else None

    def _fusable_relu(self, node: fx.Node) -> fx.Node | None:
        users = list(node.users)
        if self.qc.fuse_relu and len(users) == 1 and self._resolved_activation(users[0]) in ("relu", "relu6"):
            return users[0]
        return None

    def _single_bn_user(self, node: fx.Node) -> fx.Node | None:
        users = list(node.users)
        if len(users) == 1 and users[0].op == "call_module":
            m = self.modules[users[0].target]
            if isinstance(m, (nn.BatchNorm2d, nn.BatchNorm1d)):
                return users[0]
        return None

    def passthrough(self, node: fx.Node, where: str) -> None:
        src = node.args[0]
        if src not in self.owner:
            raise self.unsupported(f"{node.target} on a tensor that is not quantized")
        self.owner[node] = self.owner[src]

    def resize(self, node: fx.Node, where: str, mode: str, size, scale_factor, align_corners) -> None:
        """Bilinear upsampling by whole factors: a PreparedResizeBilinear; others refused.
        With `size` (torchvision's segmentation heads pass the skip's or the input's shape) the factors are
        known only from the traced shapes: convert() checks they are whole."""
        if mode != "bilinear":
            raise self.refused(_RESIZE_WHY.format(mode=mode))
        if align_corners and size is None:
            raise self.refused(_BILINEAR_WHY.format(how=f"with align_corners=True by scale_factor={scale_factor!r}"))
        factors = whole_factors(scale_factor) if size is None else None
        if size is None and factors is None:
            raise self.refused(_BILINEAR_WHY.format(how=f"by scale_factor={scale_factor!r}"))
        if factors is not None:
            try:
                bilinear_steps(*factors)
            except ValueError as exc:
                raise self.refused(_BILINEAR_WHY.format(how=str(exc))) from None
        src = node.args[0]
        dynamic = size is not None and any(isinstance(a, fx.Node) for a in _flat_args_of(size))
        op = PreparedResizeBilinear([self.source(src, where)], self.fq(f"{where} output"), factors,
                                    None if dynamic or size is None else size, bool(align_corners))
        new = self.replace(node, self.add_module(f"{where}_q", op), (src, size) if dynamic else (src,))
        self.owner[new] = op.output_quant

    def mean(self, node: fx.Node, where: str, keepdim: bool) -> None:
        op = PreparedMean([self.source(node.args[0], where)], self.fq(f"{where} output"), keepdim)
        new = self.replace(node, self.add_module(f"{where}_q", op), (node.args[0],))
        self.owner[new] = op.output_quant

    def binary(self, node: fx.Node, cls, where: str) -> None:
        a, b = node.args[0], node.args[1]
        if not (isinstance(a, fx.Node) and isinstance(b, fx.Node)):
            raise self.unsupported(f"{node.target} with a constant operand")
        op = cls([self.source(a, where), self.source(b, where)], self.fq(f"{where} output"))
        new = self.replace(node, self.add_module(f"{where}_q", op), (a, b))
        self.owner[new] = op.output_quant

    def function_node(self, node: fx.Node, where: str) -> None:
        fn = node.target
        if fn is operator.getitem and not (isinstance(node.args[0], fx.Node) and node.args[0] in self.owner):
            return  # indexing a shape or a Python sequence
        if fn in REFUSED_FUNCTIONS:
            raise self.refused(REFUSED_FUNCTIONS[fn])
        if fn is F.interpolate:
            arg = lambda i, k, d=None: node.args[i] if len(node.args) > i else node.kwargs.get(k, d)  # noqa: E731
            mode = arg(3, "mode", "nearest")
            if mode == "nearest":
                self.passthrough(node, where)
            else:
                if arg(6, "antialias", False):
                    raise self.refused(_BILINEAR_WHY.format(how="with antialias=True"))
                self.resize(node, where, mode, arg(1, "size"), arg(2, "scale_factor"), arg(4, "align_corners"))
            return
        if fn in FUNCTIONAL_ACTIVATIONS:
            name, positional = FUNCTIONAL_ACTIVATIONS[fn]
            params = dict(zip(positional, node.args[1:]))
            params.update({k: v for k, v in node.kwargs.items() if k not in ("inplace",)})
            self.activation(node, make_activation(name, **params), where)
        elif fn in ADD_OPS:
            self.binary(node, PreparedAdd, where)
        elif fn in MUL_OPS:
            self.binary(node, PreparedMul, where)
        elif fn is torch.cat:
            tensors = node.args[0]
            dim = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim", 0)
            op = PreparedConcat([self.source(t, where) for t in tensors], self.fq(f"{where} output"), dim)
            new = self.replace(node, self.add_module(f"{where}_q", op), tuple(tensors))
            self.owner[new] = op.output_quant
        elif fn is torch.mean:
            self._mean_call(node, where)
        elif fn in PASSTHROUGH_FUNCTIONS:
            self.passthrough(node, where)
        elif fn is getattr and node.args[1] in SHAPE_ATTRIBUTES:
            return  # x.shape / x.ndim: read on the float graph, nothing to quantize
        elif fn is getattr:
            if isinstance(node.args[0], fx.Node) and node.args[0] in self.owner:
                raise self.unsupported(f"attribute .{node.args[1]} of a quantized tensor")
        elif not any(isinstance(a, fx.Node) and a in self.owner for a in _flat_args(node)):
            return  # arithmetic on shapes or Python numbers, not on a quantized tensor
        else:
            raise self.unsupported(f"function {getattr(fn, '__name__', fn)}")

    def _mean_call(self, node: fx.Node, where: str) -> None:
        dims = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim")
        keepdim = node.args[2] if len(node.args) > 2 else node.kwargs.get("keepdim", False)
        if tuple(dims or ()) not in ((2, 3), (-2, -1)):
            raise self.unsupported(f"mean over dims {dims} (only the spatial mean over (2, 3))")
        self.mean(node, where, keepdim)

    def method_node(self, node: fx.Node, where: str) -> None:
        m = node.target
        if m in REFUSED_METHODS:
            raise self.refused(REFUSED_METHODS[m])
        if m in METHOD_ACTIVATIONS:
            self.activation(node, make_activation(METHOD_ACTIVATIONS[m]), where)
        elif m == "add":
            self.binary(node, PreparedAdd, where)
        elif m == "mul":
            self.binary(node, PreparedMul, where)
        elif m == "mean":
            self._mean_call(node, where)
        elif m in PASSTHROUGH_METHODS:
            self.passthrough(node, where)
        elif m in SHAPE_METHODS:
            return
        else:
            raise self.unsupported(f"tensor method .{m}()")


def prepare(model: nn.Module, activations: Mapping[str, ActivationChoice] | None = None,
            qconfig: QConfig | None = None) -> fx.GraphModule:
    """A fake-quantized copy of `model`, ready for `calibrate` (PTQ) or QAT training.

    activations: which activation to use in place of which, by registry name, e.g.
        {"swish": "hard_swish", "mish": "hard_mish", "sigmoid": fit_pwl(...)}; unnamed ones are kept.
    The returned model observes ranges (calibration state); `calibrate()` then fixes them, and a
    training loop on it after `start_qat()` is quantization-aware training.
    """
    qconfig = qconfig or DEFAULT_QCONFIG
    if not isinstance(model, nn.Module):
        raise UnsupportedError(f"prepare() takes a torch.nn.Module (the float model), not a "
                               f"{type(model).__name__}; wrap a function in an nn.Module whose forward calls it")
    if quantizers(model):
        raise UnsupportedError("this model is already prepared (it holds edgeact fake-quantizers); pass the float "
                               "model to prepare(), or go on with calibrate() / convert() on this one")
    _check_finite_parameters(model)
    model = copy.deepcopy(model).eval()
    gm = simplify(trace(model, "edgeact.prepare"))
    gm = _Builder(gm, activations or {}, qconfig).run()
    gm.edgeact_qconfig = qconfig
    gm.edgeact_backend = qconfig.backend
    set_mode(gm, observe=True, fake_quant=False)
    return gm


def quantizers(model: nn.Module):
    """Every FakeQuantize of a prepared model (weights included)."""
    return [m for m in model.modules() if isinstance(m, FakeQuantize)]


def set_mode(model: nn.Module, observe: bool, fake_quant: bool) -> None:
    for q in quantizers(model):
        is_weight = q.axis is not None
        q.observe = False if q.fixed else True if is_weight and fake_quant else observe  # weights follow the weights
        q.enabled = fake_quant


