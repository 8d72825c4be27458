"""torch.fx tracing that keeps activation modules whole.

fx's default tracer treats only torch.nn's own modules as leaves, so it would trace *into*
edgeact's activation modules (HardMish, Swish, a PWL stand-in…) and leave a clamp or a sigmoid
where prepare() and diagnose() need to see one activation.
"""
from __future__ import annotations

import torch.fx as fx
from torch import nn

from edgeact.errors import UnsupportedError
from edgeact.nn.activations import TORCH_EQUIVALENTS, Activation


class ActivationLeafTracer(fx.Tracer):
    """Keeps edgeact and torch.nn activation modules as single call_module nodes."""

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        return isinstance(m, Activation) or type(m) in TORCH_EQUIVALENTS or super().is_leaf_module(m, qualname)


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
