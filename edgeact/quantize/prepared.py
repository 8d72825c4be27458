"""The modules of a prepared (fake-quantized) model, one per kind of quantized op.

Each owns the FakeQuantize of its output tensor (`output_quant`); the quantization parameters of
its inputs belong to whoever produced them, and prepare() hands them over as `SharedQuant`s. That
way every tensor of the model has exactly one set of quantization parameters.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from edgeact.fake_quant import FakeQuantize
from edgeact.nn.quant_act import SharedQuant


class PreparedOp(nn.Module):
    """Base: inputs' quantizers (shared, not owned) and the output's FakeQuantize (owned)."""

    def __init__(self, inputs: list[SharedQuant], output_quant: FakeQuantize | None):
        super().__init__()
        object.__setattr__(self, "input_quants", list(inputs))
        self.output_quant = output_quant

    def in_qparams(self):
        return [q.qparams() for q in self.input_quants]


class PreparedConv2d(PreparedOp):
    """Conv2d (BatchNorm already folded in) with per-channel int8 fake-quantized weights."""

    def __init__(self, conv: nn.Conv2d, inputs, output_quant, weight_quant: FakeQuantize):
        super().__init__(inputs, output_quant)
        self.conv = conv
        self.weight_quant = weight_quant

    def forward(self, x):
        c = self.conv
        w = self.weight_quant(c.weight)
        return self.output_quant(F.conv2d(x, w, c.bias, c.stride, c.padding, c.dilation, c.groups))


class PreparedLinear(PreparedOp):
    def __init__(self, linear: nn.Linear, inputs, output_quant, weight_quant: FakeQuantize):
        super().__init__(inputs, output_quant)
        self.linear = linear
        self.weight_quant = weight_quant

    def forward(self, x):
        return self.output_quant(F.linear(x, self.weight_quant(self.linear.weight), self.linear.bias))


class PreparedAdd(PreparedOp):
    def forward(self, a, b):
        return self.output_quant(a + b)


class PreparedMul(PreparedOp):
    def forward(self, a, b):
        return self.output_quant(a * b)


class PreparedConcat(PreparedOp):
    def __init__(self, inputs, output_quant, dim: int):
        super().__init__(inputs, output_quant)
        self.dim = dim

    def forward(self, *xs):
        return self.output_quant(torch.cat(xs, dim=self.dim))


class PreparedMean(PreparedOp):
    """Global spatial mean (AdaptiveAvgPool2d(1), x.mean((2, 3), keepdim)): requantizes its output."""

    def __init__(self, inputs, output_quant, keepdim: bool = True):
        super().__init__(inputs, output_quant)
        self.keepdim = keepdim

    def forward(self, x):
        return self.output_quant(x.mean(dim=(2, 3), keepdim=self.keepdim))


class PreparedAvgPool2d(PreparedOp):
    """Average pooling; its output keeps the input's parameters (TFLite requires it)."""

    def __init__(self, inputs, kernel_size, stride, padding=0):
        super().__init__(inputs, None)
        self.kernel_size, self.stride, self.padding = kernel_size, stride, padding

    def forward(self, x):
        y = F.avg_pool2d(x, self.kernel_size, self.stride, self.padding, count_include_pad=False)
        # Same qparams as the input: re-fake-quantize with them (the average is not on the grid).
        qp = self.input_quants[0].qparams() if self.input_quants[0].enabled else None
        if qp is None:
            return y
        from edgeact.fake_quant import fake_quantize

        return fake_quantize(y, qp)


class PreparedResizeBilinear(PreparedOp):
    """Bilinear upsampling by whole factors; convert() writes it as zero insertion and fixed depthwise convs
    (edgeact.quantize.transposed), which compute the same blend of neighbours. `factors` (from scale_factor) or
    `size` (constant, or given at run time as the second input); align_corners=True only with a size."""

    def __init__(self, inputs, output_quant, factors: tuple[int, int] | None, size=None,
                 align_corners: bool = False):
        super().__init__(inputs, output_quant)
        self.factors = None if factors is None else tuple(factors)
        self.size, self.align_corners = size, align_corners

    def forward(self, x, size=None):
        from edgeact.quantize.transposed import bilinear_steps, factors_of

        size = size if size is not None else self.size
        al = self.align_corners
        if size is not None:
            size = tuple(int(s) for s in (size if isinstance(size, (tuple, list, torch.Size)) else (size, size)))
            factors = factors_of(tuple(x.shape[2:]), size, al)
            if factors is None:  # convert() refuses it
                return self.output_quant(F.interpolate(x, size=size, mode="bilinear", align_corners=al))
        else:
            factors = self.factors
            size = (x.shape[2] * factors[0], x.shape[3] * factors[1])
        qp = self.input_quants[0].qparams() if self.input_quants[0].enabled else None
        if qp is not None and len(bilinear_steps(*factors, align_corners=al)) == 2:
            # Two 1-D passes in the integer model: the rows' result is rounded to the input's grid in between.
            from edgeact.fake_quant import fake_quantize

            x = fake_quantize(F.interpolate(x, size=(size[0], x.shape[3]), mode="bilinear", align_corners=al), qp)
        return self.output_quant(F.interpolate(x, size=size, mode="bilinear", align_corners=al))
