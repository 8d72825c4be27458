"""The converted model's modules: integer kernels over int64 code tensors (NCHW).

Each holds its frozen quantization parameters (`in_qparams`, `out_qparams`) and the name of the
backend it was converted for; the arithmetic itself is the backend's (`edgeact.backend`), so the same
module computes what ONNX Runtime, LiteRT or the ideal formula would. Exporters walk a converted
graph and read these attributes; they never re-derive a scale.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from edgeact.activations import BoundActivation
from edgeact.errors import QuantizationError
from edgeact.qparams import QuantParams
from edgeact.backend import get_backend
from edgeact.tables import lookup_torch


class QuantizedModule(nn.Module):
    """Base: frozen parameters + the backend's name; tensors in and out are integer codes."""

    def __init__(self, in_qparams: list[QuantParams], out_qparams: QuantParams, backend: str):
        super().__init__()
        self.in_qparams = list(in_qparams)
        self.out_qparams = out_qparams
        self.backend = backend

    @property
    def arith(self):
        """The integer arithmetic of the backend this module was converted for."""
        return get_backend(self.backend).arithmetic

    def extra_repr(self) -> str:
        ins = ", ".join(str(q) for q in self.in_qparams)
        return f"in=[{ins}], out={self.out_qparams}, backend={self.backend!r}"


class Quantize(QuantizedModule):
    """float → codes at a graph input."""

    def __init__(self, qp: QuantParams, backend: str):
        super().__init__([], qp, backend)

    def forward(self, x):
        return self.arith.quantize(x, self.out_qparams)


class Dequantize(QuantizedModule):
    """codes → float32 at a graph output."""

    def __init__(self, qp: QuantParams, backend: str):
        super().__init__([qp], qp, backend)

    def forward(self, q):
        return self.arith.dequantize(q, self.in_qparams[0])


class _WeightedOp(QuantizedModule):
    """Conv / fully connected: int8 per-channel weights, int32 bias of scale s_in·s_w[c]."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None, in_qp: QuantParams, out_qp: QuantParams,
                 backend: str, weight_scale: float | None = None):
        super().__init__([in_qp], out_qp, backend)
        if weight_scale is not None:  # fixed weights known to be exact multiples of it (bilinear upsampling)
            n = weight.shape[0]
            self.weight_qparams = QuantParams((float(weight_scale),) * n, (0,) * n, "int8", axis=0, narrow=True)
        else:
            amax = weight.detach().double().reshape(weight.shape[0], -1).abs().max(1).values.numpy()
            amax = np.where(amax > 0, amax, 1.0)  # an all-zero channel: any scale, codes all 0
            self.weight_qparams = QuantParams.from_range(-amax, amax, "int8", symmetric=True, axis=0, narrow=True)
        self.register_buffer("weight_codes", torch.from_numpy(self.weight_qparams.quantize(weight.detach().double().numpy())).to(torch.int8))
        # Bias scale in float32, as both exporters write it: s_in (f32) · s_w[c] (f32).
        self.bias_scale = (np.float32(in_qp.scale) * self.weight_qparams.scale_array().astype(np.float32)).astype(np.float32)
        b = torch.zeros(weight.shape[0], dtype=torch.float64) if bias is None else bias.detach().double()
        codes = np.rint(b.numpy() / self.bias_scale.astype(np.float64))
        if np.abs(codes).max(initial=0) > 2**31 - 1:
            raise QuantizationError(
                f"the bias does not fit int32 at the scale s_in·s_w (smallest {self.bias_scale.min():.3g}): the input "
                "or weight range is tiny next to the bias (untrained BatchNorm statistics?) — calibrate the trained "
                "model with representative data")
        self.register_buffer("bias_codes", torch.from_numpy(codes.astype(np.int32)))

    op_kind = "conv2d"  # which kernel a runtime runs: 'conv2d', 'depthwise_conv2d' or 'linear'

    def accumulate(self, q: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, q):
        acc = self.arith.accumulate(self, q)
        return self.arith.requantize_accumulator(acc, self.in_qparams[0], self.weight_qparams,
                                               self.out_qparams, channel_axis=1, op=self.op_kind,
                                               depth=self.weight_codes[0].numel())


class QuantizedConv2d(_WeightedOp):
    def __init__(self, conv: nn.Conv2d, in_qp, out_qp, backend, weight_scale: float | None = None):
        super().__init__(conv.weight, conv.bias, in_qp, out_qp, backend, weight_scale)
        if isinstance(conv.padding, str):
            raise ValueError("string padding is resolved by prepare")
        self.stride, self.padding, self.dilation, self.groups = conv.stride, conv.padding, conv.dilation, conv.groups
        self.kernel_size = conv.kernel_size

    @property
    def depthwise(self) -> bool:
        return self.groups > 1 and self.groups == self.weight_codes.shape[0] and self.weight_codes.shape[1] == 1

    @property
    def op_kind(self) -> str:
        return "depthwise_conv2d" if self.depthwise else "grouped_conv2d" if self.groups > 1 else "conv2d"

    def accumulate(self, x):
        return F.conv2d(x, self.weight_codes.double(), self.bias_codes.double(), self.stride, self.padding,
                        self.dilation, self.groups)


class QuantizedLinear(_WeightedOp):
    op_kind = "linear"
    def __init__(self, linear: nn.Linear, in_qp, out_qp, backend):
        super().__init__(linear.weight, linear.bias, in_qp, out_qp, backend)

    def accumulate(self, x):
        return F.linear(x, self.weight_codes.double(), self.bias_codes.double())


class QuantizedActivation(QuantizedModule):
    """An activation as its int8 table (one per channel for a per-channel PReLU slope).

    `lowering`: how the backend runs it, decided at convert ('native', 'table' or 'none'); the table
    holds exactly the codes that lowering computes.
    """

    def __init__(self, bound: BoundActivation, table: torch.Tensor, in_qp, out_qp, backend, lowering: str = "table"):
        super().__init__([in_qp], out_qp, backend)
        self.bound = bound
        self.lowering = lowering
        self.register_buffer("table", table.long())

    @property
    def activation_name(self) -> str:
        return self.bound.name

    def forward(self, q):
        return lookup_torch(self.table, q, self.in_qparams[0].qmin, channel_axis=1)

    def extra_repr(self) -> str:
        return f"{self.bound.name} ({self.lowering}), " + super().extra_repr()


class QuantizedAdd(QuantizedModule):
    def forward(self, a, b):
        return self.arith.add(a, self.in_qparams[0], b, self.in_qparams[1], self.out_qparams)


class QuantizedMul(QuantizedModule):
    def forward(self, a, b):
        return self.arith.mul(a, self.in_qparams[0], b, self.in_qparams[1], self.out_qparams)


class QuantizedConcat(QuantizedModule):
    """Inputs requantized to the output's parameters, then concatenated."""

    def __init__(self, in_qps, out_qp, backend, dim: int):
        super().__init__(in_qps, out_qp, backend)
        self.dim = dim

    def forward(self, *qs):
        parts = [self.arith.requantize(q, qp, self.out_qparams) for q, qp in zip(qs, self.in_qparams)]
        return torch.cat(parts, dim=self.dim)


class QuantizedMean(QuantizedModule):
    """Global spatial mean over H, W (AdaptiveAvgPool2d(1) / x.mean((2, 3)))."""

    def __init__(self, in_qp, out_qp, backend, keepdim: bool = True):
        super().__init__([in_qp], out_qp, backend)
        self.keepdim = keepdim

    def forward(self, q):
        count = q.shape[2] * q.shape[3]
        total = q.long().sum(dim=(2, 3), keepdim=self.keepdim)
        return self.arith.average(total, count, self.in_qparams[0], self.out_qparams, op="mean")


class QuantizedAvgPool2d(QuantizedModule):
    """Average pooling without padding; output parameters equal the input's."""

    def __init__(self, in_qp, backend, kernel_size, stride, padding=0):
        super().__init__([in_qp], in_qp, backend)
        pad = padding if isinstance(padding, tuple) else (padding, padding)
        if any(pad):
            raise ValueError("padded average pooling is not supported in int8")
        self.kernel_size, self.stride = kernel_size, stride

    def forward(self, q):
        k = self.kernel_size if isinstance(self.kernel_size, tuple) else (self.kernel_size, self.kernel_size)
        total = F.avg_pool2d(q.double(), k, self.stride, divisor_override=1).round().long()
        return self.arith.average(total, k[0] * k[1], self.in_qparams[0], self.out_qparams, op="avg_pool2d")


class QuantizedMaxPool2d(QuantizedModule):
    """Max pooling commutes with a monotonic quantization: codes in, codes out, same parameters."""

    def __init__(self, in_qp, backend, kernel_size, stride, padding=0, dilation=1, ceil_mode=False):
        super().__init__([in_qp], in_qp, backend)
        self.kernel_size, self.stride, self.padding = kernel_size, stride, padding
        self.dilation, self.ceil_mode = dilation, ceil_mode

    def forward(self, q):
        # Pad with the lowest code: the same as padding with −inf before quantization.
        if self.padding:
            p = self.padding if isinstance(self.padding, tuple) else (self.padding, self.padding)
            q = F.pad(q, (p[1], p[1], p[0], p[0]), value=self.in_qparams[0].qmin)
        return F.max_pool2d(q.double(), self.kernel_size, self.stride, 0, self.dilation, self.ceil_mode).long()


class QuantizedReshape(QuantizedModule):
    """flatten / view / reshape / squeeze: codes unchanged, `shape` is the traced output shape (batch first)."""

    def __init__(self, in_qp, backend, shape: tuple[int, ...]):
        super().__init__([in_qp], in_qp, backend)
        self.shape = tuple(shape)

    def forward(self, q):
        return q.reshape((q.shape[0],) + self.shape[1:])
