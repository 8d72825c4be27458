"""Zero padding of a quantized tensor (ZeroPad2d, F.pad with value 0): the new elements are the zero point's
code, which is exactly 0.0 (every edgeact range includes 0), so padding needs no arithmetic."""
from __future__ import annotations

import torch.nn.functional as F

from edgeact.quantized.modules import QuantizedModule


class QuantizedZeroPad2d(QuantizedModule):
    """`padding` = (left, right, top, bottom), as nn.ZeroPad2d; output parameters equal the input's."""

    def __init__(self, in_qp, backend, padding: tuple[int, int, int, int]):
        super().__init__([in_qp], in_qp, backend)
        self.padding = tuple(int(p) for p in padding)

    def forward(self, q):
        return F.pad(q, self.padding, value=self.in_qparams[0].zero_point)

    def extra_repr(self) -> str:
        return f"padding={self.padding}, " + super().extra_repr()
