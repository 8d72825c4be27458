"""Ops that only move codes: a selection or permutation of channels (channel shuffle, chunk, split, slicing)
and nearest-neighbour upsampling by whole factors."""
from __future__ import annotations

import torch

from edgeact.quantized.modules import QuantizedModule


class QuantizedChannelGather(QuantizedModule):
    """y[:, i] = q[:, indices[i]]; output parameters equal the input's (pure data movement, exact everywhere)."""

    def __init__(self, in_qp, backend, indices: list[int]):
        super().__init__([in_qp], in_qp, backend)
        self.register_buffer("indices", torch.tensor(indices, dtype=torch.int64))

    def forward(self, q):
        return q.index_select(1, self.indices)

    def extra_repr(self) -> str:
        return f"{len(self.indices)} channels, " + super().extra_repr()


class QuantizedUpsampleNearest(QuantizedModule):
    """Each code repeated `factors` = (fh, fw) times along H and W; output parameters equal the input's."""

    def __init__(self, in_qp, backend, factors: tuple[int, int]):
        super().__init__([in_qp], in_qp, backend)
        self.factors = (int(factors[0]), int(factors[1]))

    def forward(self, q):
        return q.repeat_interleave(self.factors[0], dim=2).repeat_interleave(self.factors[1], dim=3)

    def extra_repr(self) -> str:
        return f"factors={self.factors}, " + super().extra_repr()
