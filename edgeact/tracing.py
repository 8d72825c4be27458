"""torch.fx tracing that keeps the modules prepare() handles whole, and says where a node came from.

fx's default tracer treats only torch.nn's own modules as leaves, so it would trace *into*
edgeact's activation modules (HardMish, Swish, a PWL stand-in…) and leave a clamp or a sigmoid
where prepare() and diagnose() need to see one activation. Outside libraries subclass torch.nn's
layers (timm's Linear, BatchNormAct2d, Conv2dSame-free convs) and ship their own activation classes;
those are leaves too: a subclass of Conv/Linear/BatchNorm by its base class, an activation by what it
computes (`edgeact.nn.recognize`). Inside such a forward, an `x.ndim` assert or a dtype cast on the
float graph would otherwise reach prepare as an op on a quantized tensor.
"""
from __future__ import annotations

import linecache
import re
import sys

import torch
import torch.fx as fx
from torch import nn
from torch.fx.node import map_aggregate
from torch.fx.passes.shape_prop import TensorMetadata, _extract_tensor_metadata

from edgeact.errors import UnsupportedError
from edgeact.nn.activations import TORCH_EQUIVALENTS, Activation
from edgeact.nn.recognize import recognize

LEAF_BASES = (nn.Conv1d, nn.Conv2d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.Linear, nn.modules.batchnorm._BatchNorm)


def is_activation_module(m: nn.Module) -> bool:
    return isinstance(m, Activation) or type(m) in TORCH_EQUIVALENTS or recognize(m) is not None


class ActivationLeafTracer(fx.Tracer):
    """Keeps activation modules and subclasses of Conv/Linear/BatchNorm as single call_module nodes."""

    def create_node(self, *args, **kwargs) -> fx.Node:
        node = super().create_node(*args, **kwargs)
        node.stack_trace = _user_frame()  # the user's forward() line, for errors
        return node

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        return isinstance(m, LEAF_BASES) or is_activation_module(m) or super().is_leaf_module(m, qualname)


def trace(model: nn.Module, purpose: str = "edgeact") -> fx.GraphModule:
    """The GraphModule of `model`, or an UnsupportedError that says why it cannot be traced."""
    try:
        graph = ActivationLeafTracer().trace(model)
    except Exception as exc:  # torch.fx raises many kinds on untraceable Python
        raise UnsupportedError(
            f"the model cannot be traced by torch.fx ({type(exc).__name__}: {exc}); {purpose} needs a "
            "forward without data-dependent Python control flow"
        ) from exc
    return fx.GraphModule(model, graph, model.__class__.__name__)


def tensor_meta(t: torch.Tensor) -> TensorMetadata:
    """fx's TensorMetadata of `t` (what ShapeProp records). For a dense, unquantized tensor it is built here:
    fx's helper decides the memory format through torch's symbolic-shapes code, whose first use imports
    sympy in every fresh process (benchmarks/RESULTS-ray.md, session 7)."""
    if t.is_quantized or t.layout != torch.strided:
        return _extract_tensor_metadata(t)
    fmt = next((f for f in (torch.contiguous_format, torch.channels_last, torch.channels_last_3d)
                if (f is torch.contiguous_format or t.dim() == (4 if f is torch.channels_last else 5))
                and t.is_contiguous(memory_format=f)), None)
    return TensorMetadata(t.shape, t.dtype, t.requires_grad, t.stride(), fmt, False, {})


class _ShapeRecorder(fx.Interpreter):
    def run_node(self, n: fx.Node):
        try:
            result = super().run_node(n)
        except Exception as exc:  # as ShapeProp: one kind, naming the node (callers turn it into their error)
            raise RuntimeError(f"at {n.format_node()}: {type(exc).__name__}: {exc}") from exc
        found = False

        def meta(value):
            nonlocal found
            if isinstance(value, torch.Tensor):
                found = True
                return tensor_meta(value)
            return value

        recorded = map_aggregate(result, meta)
        if found:
            n.meta["tensor_meta"] = recorded
        n.meta["type"] = type(result)
        return result


def propagate_shapes(model: fx.GraphModule, *inputs):
    """Run `model` on `inputs`, recording each node's node.meta["tensor_meta"] as fx's ShapeProp does — without
    ShapeProp's first-use import of torch's symbolic-shapes machinery (see tensor_meta)."""
    return _ShapeRecorder(model).run(*inputs)


def _user_frame() -> str | None:
    """The innermost frame outside torch and this file, in traceback's format. fx's own record_stack_traces
    would do it too, but its first use imports torch._inductor and torch._dynamo in every fresh process."""
    frame = sys._getframe(1)
    while frame is not None and ("/torch/" in frame.f_code.co_filename or frame.f_code.co_filename == __file__):
        frame = frame.f_back
    if frame is None:
        return None
    path, line = frame.f_code.co_filename, frame.f_lineno
    return f'File "{path}", line {line}, in {frame.f_code.co_name}\n    {linecache.getline(path, line).strip()}'


_FRAME = re.compile(r'File "([^"]+)", line (\d+), in (\S+)\n\s*(.*)')


def source_line(node: fx.Node) -> str | None:
    """'path/to/file.py:123 in forward: `code`' of the innermost frame that created `node`, if recorded."""
    frames = [f for f in _FRAME.findall(node.meta.get("stack_trace") or "") if "/torch/" not in f[0]]
    if not frames:
        return None
    path, line, func, code = frames[-1]
    return f"{path}:{line} in {func}(): `{code.strip()}`"


def module_path(node: fx.Node) -> str | None:
    """The dotted path of the user's module whose forward() created `node` ('features.3.conv.1')."""
    if node.op == "call_module":
        return str(node.target)
    stack = node.meta.get("nn_module_stack") or {}
    if not stack:
        return None
    path = list(stack.values())[-1]
    path = path[0] if isinstance(path, tuple) else path
    return str(path) or None


def describe(node: fx.Node) -> str:
    """Where `node` is, for an error message: module path and source line when fx recorded them."""
    parts = []
    path = module_path(node)
    parts.append(f"module {path!r}" if path else f"graph node {node.name!r}")
    line = source_line(node)
    if line:
        parts.append(f"({line})")
    return " ".join(parts)
