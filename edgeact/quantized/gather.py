"""A selection or permutation of channels (channel shuffle, chunk, split, slicing): codes move, nothing else."""
from __future__ import annotations

import torch

from edgeact.quantized.modules import QuantizedModule


class QuantizedChannelGather(QuantizedModule):
    """y[:, i] = q[:, indices[i]]; output parameters equal the input's (pure data movement, exact everywhere)."""

    def __init__(self, in_qp, semantics, indices: list[int]):
        super().__init__([in_qp], in_qp, semantics)
        self.register_buffer("indices", torch.tensor(indices, dtype=torch.int64))

    def forward(self, q):
        return q.index_select(1, self.indices)

    def extra_repr(self) -> str:
        return f"{len(self.indices)} channels, " + super().extra_repr()
