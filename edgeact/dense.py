"""A dense tensor's elements as one flat view, in the order they lie in memory.

Conv outputs come out channels-last from oneDNN. Elementwise kernels take any dense layout at full
speed, but torch's full reductions (aminmax, sum) over a permuted layout run several times slower
than over the same memory seen as 1-D, and `reshape(-1)` of it copies — QAT does both for every
tensor at every step.
"""
from __future__ import annotations

import torch


def flat_view(x: torch.Tensor) -> torch.Tensor | None:
    """`x`'s elements as a 1-D view in memory order, or None when `x` is not dense (a slice, an expand)."""
    if x.is_contiguous():
        return x.view(-1)
    if x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last):  # the common case, checked first
        return x.permute(0, 2, 3, 1).view(-1)
    order = sorted(range(x.dim()), key=lambda d: -x.stride(d))
    p = x.permute(order)
    return p.view(-1) if p.is_contiguous() else None


def dense_elements(x: torch.Tensor) -> torch.Tensor:
    """`x` for an order-free reduction (min, max, a finiteness test): its flat view, or `x` itself."""
    flat = flat_view(x)
    return x if flat is None else flat
