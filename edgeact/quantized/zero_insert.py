"""The data movement of transposed convs and bilinear upsampling (`edgeact.quantize.transposed`): zero insertion
in front of a conv, or depth-to-space behind the phase conv that replaces it. Inserted and padded elements are
the zero point's code (0.0 exactly), replicated border elements and rearranged ones are copies: no arithmetic,
so every runtime gives the same codes."""
from __future__ import annotations

from edgeact.quantize.transposed import depth_to_space, insert_zeros
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


class QuantizedDepthToSpace(QuantizedModule):
    """Depth-to-space by (bh, bw) of channels (gi, rh, rw, o_g) (for groups 1: DCR), then crop (left, right, top,
    bottom): the phase conv of a transposed conv interleaved into its output. Output parameters equal the
    input's."""

    def __init__(self, in_qp, backend, block: tuple[int, int], crop: tuple[int, int, int, int], groups: int = 1):
        super().__init__([in_qp], in_qp, backend)
        self.block = tuple(int(b) for b in block)
        self.crop = tuple(int(c) for c in crop)
        self.groups = int(groups)

    def forward(self, q):
        return depth_to_space(q, self.block, self.crop, self.groups)

    def extra_repr(self) -> str:
        return f"block={self.block}, crop={self.crop}, groups={self.groups}, " + super().extra_repr()
