"""Rewrites of the traced float graph before quantization: what does nothing at inference goes, functional
forms become the modules prepare() knows, composite modules split into their parts.

Models as libraries ship them carry inference no-ops (dropout variants, torchvision's stochastic_depth,
asserts on `x.ndim`), functional pooling (`F.adaptive_avg_pool2d(x, (1, 1))`, `F.max_pool2d`) and
fused modules (timm's BatchNormAct2d = BatchNorm + drop + act). Each rewrite here keeps the float
model's outputs unchanged in eval mode, so prepare() sees one canonical form per op.
"""
from __future__ import annotations

import copy

import torch
import torch.fx as fx
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from edgeact.quantize.transposed import rewrite_conv_transpose

# Functions that return their (first) input unchanged in eval mode.
DROPOUT_FUNCTIONS = {F.dropout, F.dropout1d, F.dropout2d, F.dropout3d, F.alpha_dropout, F.feature_alpha_dropout,
                     torch.dropout, torch.alpha_dropout, torch.feature_dropout}
NOOP_FUNCTION_NAMES = {"stochastic_depth", "drop_path", "drop_block_2d", "drop_block_fast_2d"}
ASSERTS = {torch._assert}
DROPOUT_MODULES = (nn.modules.dropout._DropoutNd,)


def _is_noop_function(fn) -> bool:
    return fn in DROPOUT_FUNCTIONS or getattr(fn, "__name__", None) in NOOP_FUNCTION_NAMES


def _arg(node: fx.Node, i: int, name: str, default=None):
    return node.args[i] if len(node.args) > i else node.kwargs.get(name, default)


def _add_module(gm: fx.GraphModule, base: str, module: nn.Module) -> str:
    name, i = base.replace(".", "_"), 0
    while hasattr(gm, name):
        i += 1
        name = f"{base.replace('.', '_')}_{i}"
    gm.add_module(name, module)
    return name


def _to_module(gm: fx.GraphModule, node: fx.Node, module: nn.Module, base: str) -> None:
    name = _add_module(gm, base, module)
    with gm.graph.inserting_before(node):
        new = gm.graph.call_module(name, (node.args[0],))
    new.meta = dict(node.meta)
    node.replace_all_uses_with(new)
    gm.graph.erase_node(node)


def _pooling_module(node: fx.Node) -> nn.Module | None:
    fn = node.target
    if fn is F.adaptive_avg_pool2d or fn is torch._C._nn.adaptive_avg_pool2d:
        return nn.AdaptiveAvgPool2d(_arg(node, 1, "output_size"))
    if fn is F.avg_pool2d or fn is torch._C._nn.avg_pool2d:
        return nn.AvgPool2d(_arg(node, 1, "kernel_size"), _arg(node, 2, "stride"), _arg(node, 3, "padding", 0),
                            _arg(node, 4, "ceil_mode", False), _arg(node, 5, "count_include_pad", True),
                            _arg(node, 6, "divisor_override"))
    if fn in (F.max_pool2d, torch.max_pool2d, getattr(F, "max_pool2d_with_indices", None)):
        if _arg(node, 6, "return_indices", False):
            return None
        return nn.MaxPool2d(_arg(node, 1, "kernel_size"), _arg(node, 2, "stride"), _arg(node, 3, "padding", 0),
                            _arg(node, 4, "dilation", 1), _arg(node, 5, "ceil_mode", False))
    if fn is F.pad and _arg(node, 2, "mode", "constant") == "constant" and not _arg(node, 3, "value", None) \
            and isinstance(_arg(node, 1, "pad"), (tuple, list)) and len(_arg(node, 1, "pad")) == 4 \
            and min(_arg(node, 1, "pad")) >= 0:
        return nn.ZeroPad2d(tuple(_arg(node, 1, "pad")))  # Keras-style asymmetric 'same' padding
    if fn is F.adaptive_avg_pool1d or fn is torch.adaptive_avg_pool1d:
        return nn.AdaptiveAvgPool1d(_arg(node, 1, "output_size"))
    return None


def simplify(gm: fx.GraphModule) -> fx.GraphModule:
    """The same float function as `gm` in eval mode, in the forms prepare() handles."""
    graph = gm.graph
    modules = dict(gm.named_modules())
    for node in list(graph.nodes):
        if node.op == "call_function":
            fn = node.target
            if fn in ASSERTS:
                graph.erase_node(node)
            elif _is_noop_function(fn) and node.args and isinstance(node.args[0], fx.Node):
                node.replace_all_uses_with(node.args[0])
                graph.erase_node(node)
            else:
                pool = _pooling_module(node)
                if pool is not None:
                    base = (node.meta.get("nn_module_stack") and list(node.meta["nn_module_stack"].values())[-1])
                    base = base[0] if isinstance(base, tuple) else base
                    _to_module(gm, node, pool, f"{base or ''}.{node.name}".strip("."))
        elif node.op == "call_module":
            mod = modules[node.target]
            if isinstance(mod, nn.ConstantPad2d) and mod.value == 0 and not isinstance(mod, nn.ZeroPad2d):
                _to_module(gm, node, nn.ZeroPad2d(mod.padding), f"{node.target}.zero")
            elif isinstance(mod, DROPOUT_MODULES):
                node.replace_all_uses_with(node.args[0])
                graph.erase_node(node)
            elif isinstance(mod, nn.modules.batchnorm._BatchNorm) and isinstance(getattr(mod, "act", None), nn.Module):
                _split_bn_act(gm, node, mod)
    _functional_conv_transpose_as_module(gm)
    rewrite_conv_transpose(gm, _add_module, _around_2d)
    _conv1d_as_conv2d(gm)
    graph.eliminate_dead_code()
    graph.lint()
    gm.recompile()
    return gm


def _attr(gm: fx.GraphModule, target: str) -> torch.Tensor:
    obj = gm
    for part in target.split("."):
        obj = getattr(obj, part)
    return obj


def _functional_conv_transpose_as_module(gm: fx.GraphModule) -> None:
    """F.conv_transpose1d/2d(x, self.weight, self.bias, …) with parameters of the model → the equivalent
    nn.ConvTranspose module (which rewrite_conv_transpose then lowers)."""
    for node in list(gm.graph.nodes):
        if node.op != "call_function" or node.target not in (F.conv_transpose1d, F.conv_transpose2d):
            continue
        names = ("input", "weight", "bias", "stride", "padding", "output_padding", "groups", "dilation")
        a = {k: _arg(node, i, k, d) for i, (k, d) in enumerate(zip(names, (None, None, None, 1, 0, 0, 1, 1)))}
        w, b = a["weight"], a["bias"]
        if not (isinstance(w, fx.Node) and w.op == "get_attr") or (b is not None and not (
                isinstance(b, fx.Node) and b.op == "get_attr")):
            continue  # weights computed at run time: prepare refuses the constant / function
        if any(isinstance(a[k], fx.Node) for k in names[3:]):
            continue
        weight = _attr(gm, w.target)
        one_d = node.target is F.conv_transpose1d
        cls = nn.ConvTranspose1d if one_d else nn.ConvTranspose2d
        groups = int(a["groups"])
        mod = cls(weight.shape[0], weight.shape[1] * groups, tuple(weight.shape[2:]), a["stride"], a["padding"],
                  a["output_padding"], groups, b is not None, a["dilation"])
        with torch.no_grad():
            mod.weight.copy_(weight)
            if b is not None:
                mod.bias.copy_(_attr(gm, b.target))
        _to_module(gm, node, mod.eval(), node.name)


def _conv1d_as_conv2d(gm: fx.GraphModule) -> None:
    """Conv1d (with the BatchNorm1d that follows it folded in) → unsqueeze(2), Conv2d with a 1×k kernel,
    squeeze(2); AdaptiveAvgPool1d(1) likewise. Everything after prepare then handles 1-D signals as
    4-D tensors of height 1, and the reshapes between them are plain data movement."""
    graph = gm.graph
    modules = dict(gm.named_modules())
    for node in list(graph.nodes):
        if node.op != "call_module":
            continue
        mod = modules.get(node.target)
        if isinstance(mod, nn.Conv1d) and isinstance(mod.padding, tuple) and mod.padding_mode == "zeros":
            conv = mod
            users = list(node.users)
            if len(users) == 1 and users[0].op == "call_module" and isinstance(modules.get(users[0].target),
                                                                                  nn.BatchNorm1d):
                conv = fuse_conv_bn_eval(copy.deepcopy(mod).eval(), modules[users[0].target].eval())
                users[0].replace_all_uses_with(node)
                graph.erase_node(users[0])
            as2d = nn.Conv2d(conv.in_channels, conv.out_channels, (1, conv.kernel_size[0]), (1, conv.stride[0]),
                             (0, conv.padding[0]), (1, conv.dilation[0]), conv.groups, bias=conv.bias is not None)
            with torch.no_grad():
                as2d.weight.copy_(conv.weight.unsqueeze(2))
                if conv.bias is not None:
                    as2d.bias.copy_(conv.bias)
            _around_2d(gm, node, _add_module(gm, f"{node.target}.as2d", as2d.eval()))
        elif isinstance(mod, nn.AdaptiveAvgPool1d) and mod.output_size in (1, (1,)):
            _around_2d(gm, node, _add_module(gm, f"{node.target}.as2d", nn.AdaptiveAvgPool2d(1)))


def _around_2d(gm: fx.GraphModule, node: fx.Node, target: str) -> None:
    with gm.graph.inserting_before(node):
        up = gm.graph.call_method("unsqueeze", (node.args[0], 2))
        y = gm.graph.call_module(target, (up,))
        down = gm.graph.call_method("squeeze", (y, 2))
    for n in (up, y, down):
        n.meta = dict(node.meta)
    node.replace_all_uses_with(down)
    gm.graph.erase_node(node)


def _split_bn_act(gm: fx.GraphModule, node: fx.Node, mod: nn.Module) -> None:
    """BatchNorm + drop + act in one module (timm's BatchNormAct2d) → plain BatchNorm, then act."""
    bn = nn.BatchNorm2d(mod.num_features, mod.eps, mod.momentum, mod.affine, mod.track_running_stats)
    bn.load_state_dict({k: v for k, v in mod.state_dict().items() if "." not in k})
    bn.eval()
    name = _add_module(gm, f"{node.target}.bn", bn)
    with gm.graph.inserting_before(node):
        new = gm.graph.call_module(name, (node.args[0],))
        new.meta = dict(node.meta)
        out = new
        drop = getattr(mod, "drop", None)
        if drop is not None and not isinstance(drop, (nn.Identity, *DROPOUT_MODULES)):
            out = gm.graph.call_module(f"{node.target}.drop", (out,))
        if not isinstance(mod.act, nn.Identity):
            out = gm.graph.call_module(f"{node.target}.act", (out,))
            out.meta = dict(node.meta)
    node.replace_all_uses_with(out)
    gm.graph.erase_node(node)


__all__ = ["simplify"]
