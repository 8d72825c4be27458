"""Reshapes, transposes, chunks and slices of quantized tensors, classified by where each element comes from.

Models move data around in many spellings: torchvision's channel shuffle is view → transpose →
contiguous → view, ShuffleNet splits with `x.chunk(2, dim=1)`, GhostNet slices `out[:, :c]`. All keep
the codes and the quantization parameters; what differs is only which input element lands where.
So convert() runs those ops once on an *index tensor* (element i of one sample holds i) and reads off
the result: the identity order is a reshape, a selection or permutation of channels at fixed spatial
position is a channel gather (ONNX Gather, TFLite GATHER), each element repeated over whole factors of H and W
is a nearest-neighbour resize (ONNX Resize, TFLite RESIZE_NEAREST_NEIGHBOR) — exact, no arithmetic —
anything else is refused.
"""
from __future__ import annotations

import torch
import torch.fx as fx

from edgeact.errors import UnsupportedError


def index_tensor(shape) -> torch.Tensor:
    """One sample (batch 1) of a tensor of `shape` whose elements are their own flat positions."""
    per_sample = tuple(int(d) for d in shape[1:])
    n = 1
    for d in per_sample:
        n *= d
    # float64 (exact up to 2**53): nearest-neighbour resizing has no integer kernel in torch
    return torch.arange(n, dtype=torch.float64).reshape(1, *per_sample)


def evaluate(node: fx.Node, value_of, module=None) -> object:
    """`node`'s value with each input node `a` replaced by `value_of(a)` (index tensors, shapes, ints)."""
    args = fx.node.map_aggregate(node.args, lambda a: value_of(a) if isinstance(a, fx.Node) else a)
    kwargs = fx.node.map_aggregate(node.kwargs, lambda a: value_of(a) if isinstance(a, fx.Node) else a)
    if node.op == "call_module":
        return module(*args, **kwargs)  # nn.Flatten, nn.Unflatten
    if node.op == "call_method":
        self_obj, *rest = args
        return getattr(self_obj, node.target)(*rest, **kwargs)
    return node.target(*args, **kwargs)


def root_of(node: fx.Node, is_quantized) -> fx.Node:
    """The quantized tensor `node`'s data comes from (every data-movement op reads its tensor as args[0])."""
    while not is_quantized(node):
        node = node.args[0]
    return node


def classify(name: str, result: torch.Tensor, src_shape) -> tuple[str, object]:
    """('reshape', None), ('gather', channel indices) or ('resize_nearest', (fh, fw)) for index tensor
    `result` taken from a source of `src_shape`; an UnsupportedError naming `name` otherwise."""
    src = tuple(int(d) for d in src_shape)
    if (not isinstance(result, torch.Tensor) or result.dtype != torch.float64 or result.shape[0] != 1
            or not torch.equal(result, result.round())):
        raise UnsupportedError(f"{name}: moves data across the batch dimension or computes new values; only "
                               "reshapes, channel selections/permutations and nearest-neighbour upsampling by "
                               "whole factors of a quantized tensor are supported")
    result = result.long()
    n = 1
    for d in src[1:]:
        n *= d
    flat = result.reshape(-1)
    if flat.numel() == n and torch.equal(flat, torch.arange(n)):
        return "reshape", None
    if result.dim() == len(src) and result.dim() >= 2 and tuple(result.shape[2:]) == src[2:]:
        inner = 1
        for d in src[2:]:
            inner *= d
        channels = result.reshape(result.shape[1], inner)
        perm = channels[:, 0] // inner
        if torch.equal(channels, perm[:, None] * inner + torch.arange(inner)[None, :]):
            return "gather", [int(c) for c in perm]
    if result.dim() == 4 and len(src) == 4 and result.shape[1] == src[1]:
        (c, h, w), (h2, w2) = src[1:], tuple(result.shape[2:])
        if h2 % h == 0 and w2 % w == 0:
            rows = torch.arange(h2) * h // h2  # floor(i·H/H2): PyTorch's, ONNX Resize 'asymmetric'+'floor', TFLite's
            cols = torch.arange(w2) * w // w2
            expected = (torch.arange(c)[:, None, None] * h * w + rows[None, :, None] * w + cols[None, None, :])
            if torch.equal(result[0], expected):
                return "resize_nearest", (h2 // h, w2 // w)
    raise UnsupportedError(
        f"{name}: rearranges a quantized tensor in a way that is neither a reshape nor a selection or permutation "
        f"of channels (source shape {list(src)}, result shape {list(result.shape)}); only those are supported — "
        "move this rearrangement before the first quantized op or after the last")


__all__ = ["index_tensor", "evaluate", "root_of", "classify"]
