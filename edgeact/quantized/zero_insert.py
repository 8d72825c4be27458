"""Zero insertion on codes: the data movement in front of the conv a transposed conv or a bilinear upsampling
becomes (`edgeact.quantize.transposed`). The inserted and padded elements are the zero point's code (0.0
exactly), replicated border elements are copies: no arithmetic, so every runtime gives the same codes."""
from __future__ import annotations

from edgeact.quantize.transposed import insert_zeros
from edgeact.quantized.modules import QuantizedModule


class QuantizedZeroInsert(QuantizedModule):
    """Replicate the border (eh, ew) = `edge` times, put stride−1 zero-point codes between neighbours along H
    and W, then pad (left, right, top, bottom) with the zero point (negative: crop). Output parameters equal
    the input's."""

    def __init__(self, in_qp, backend, stride: tuple[int, int], pads: tuple[int, int, int, int],
                 edge: tuple[int, int] = (0, 0)):
        super().__init__([in_qp], in_qp, backend)
        self.stride = tuple(int(s) for s in stride)
        self.pads = tuple(int(p) for p in pads)
        self.edge = tuple(int(e) for e in edge)

    def forward(self, q):
        return insert_zeros(q, self.stride, self.pads, self.in_qparams[0].zero_point, self.edge)

    def extra_repr(self) -> str:
        return f"stride={self.stride}, pads={self.pads}, edge={self.edge}, " + super().extra_repr()
